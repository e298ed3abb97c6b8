"""What a run ended with, and the exit code the README's table gives it (``esc-eval run`` and ``esc_eval.run`` alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esc_eval.runs.execution.progress import RunProgress

DONE, FAILED_EPISODES, BAD_INPUT = 0, 1, 2
"""Exit codes: every episode and score in the store is good; the store holds failed episodes or judge scores (or an
endpoint refused its credentials); bad input (nothing was written)."""


@dataclass
class RunResult:
    """A run's outcome.

    Attributes:
        store: the store's path.
        progress: this attempt's counters (``done``, ``failed``, ``skipped``, turns, scores).
        idle: nothing was left to run or score: no backend was started (a resume of a finished store).
        auth_failure: ``endpoint: HTTP 401 ...`` when an endpoint refused the credentials and the run stopped early.
        earlier_failed: failed episodes of an earlier attempt this one skipped (a resume without ``retry_failed``).
        failed_scores: judge scores the store holds as failed when the run ended (this attempt's, and earlier ones
            not scored again).
        error: why nothing ran (bad input: a config, card, persona or store error, options that do not go together).
        scores: group (supporter, or ``seeker / supporter``) -> dimension -> leaderboard value 0-100 (the report's
            ``value``); filled by ``esc_eval.run`` from the store, empty without a judge.
    """

    store: Path
    progress: RunProgress
    idle: bool = False
    auth_failure: str | None = None
    earlier_failed: int = 0
    failed_scores: int = 0
    error: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return BAD_INPUT
        if self.progress.failed or self.auth_failure or self.earlier_failed or self.failed_scores:
            return FAILED_EPISODES  # a resumed run exits as a fresh one would with these episodes failed
        return DONE

    @property
    def done(self) -> int:
        """Episodes this attempt finished."""
        return self.progress.done

    @property
    def failed(self) -> int:
        """Failed episodes left in the store: this attempt's and those an earlier attempt left (``earlier_failed``)."""
        return self.progress.failed + self.earlier_failed

    @property
    def skipped(self) -> int:
        """Planned episodes an earlier attempt had already ended."""
        return self.progress.skipped
