"""What a run ended with, and the exit code the README's table gives it (``esc-eval run`` and ``esc_eval.run`` alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esc_eval.runs.execution.progress import RunProgress

DONE, FAILED_EPISODES, BAD_INPUT, STOPPED, INTERNAL_ERROR = 0, 1, 2, 3, 4
"""Exit codes, first match wins: bad input (nothing started, nothing written); an internal error; failed episodes or
judge scores, an endpoint refusing its credentials, or a store write failure; stopped before the plan was done
(Ctrl-C, SIGTERM, a budget: ``--resume`` continues); every planned episode done (and scored, with a judge)."""


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
        stopped: the run ended before its plan was done (a signal, a budget); ``not_started`` planned episodes wait for ``--resume``.
        write_failure: ``STORE: OS error`` when a store write failed and the run stopped (the episodes it reported stored are in it).
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
    stopped: bool = False
    not_started: int = 0
    write_failure: str | None = None
    cost_limited: str | None = None
    """``cost limit reached: $X of $Y; ...`` when the cost limit stopped admitting episodes (``stopped`` is set too)."""

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return BAD_INPUT
        if self.progress.failed or self.auth_failure or self.earlier_failed or self.failed_scores or self.write_failure:
            return FAILED_EPISODES  # a resumed run exits as a fresh one would with these episodes failed
        if self.stopped:
            return STOPPED
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
