"""The worker's stand-in for the store: every write becomes a record its driver replays (``Batch``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.agent import scored_rounds
from esc_eval.agents.messages import TurnTaken
from esc_eval.runs.store import FINAL_ROUND, NO_TOKENS, PlannedEpisode, Tokens
from esc_eval.runs.store.records import Unscored


@dataclass(frozen=True)
class Rejudge:
    """A finished episode missing some score (a crash came between), to be judged again on a worker."""

    key: str
    language: str
    supporter: str
    transcript: tuple[tuple[str, str], ...]


@dataclass
class Batch:
    """What a worker hands its driver at each poll.

    ``records`` are store calls in the order the worker made them: ``("start", key)``,
    ``("turn", TurnTaken)``, ``("end", key, outcome, reason, at)``,
    ``("score", key, dimension, label, raw, model, latency, status, error, round, sample)``,
    ``("event", kind, detail, endpoint, episode_key)``. ``completed`` lists the keys whose every
    record is in this batch or an earlier one: the driver never hands those out again.
    ``over``: the shard is done and this is the last batch.
    """

    records: list[tuple[Any, ...]]
    completed: list[str]
    active: int
    turns: int
    stats: list[dict[str, Any]]
    over: bool = False
    error: str | None = None


class RecordSink:
    """Stands in for the ``Store`` inside a worker (a ``RunRecorder``): every write becomes a record for the driver.

    It knows when an episode is complete: ended ``failed``, or ended with no judge, or ended and
    holding as many scores as the judge gives it (``dimensions`` final scores, plus one per
    dimension and round with ``score_every_round``).
    """

    path = Path("<ray-worker>")
    on_write_error: Callable[[BaseException], None] | None = None
    """Never called: a worker writes nothing (``RunRecorder``); its driver's store reports write errors."""

    def __init__(self, *, dimensions: int = 0, score_every_round: bool = False, rejudge: Sequence[Rejudge] = ()):
        self.dimensions, self.score_every_round = dimensions, score_every_round
        self.records: list[tuple[Any, ...]] = []
        self.completed: list[str] = []
        self._lines: dict[str, list[tuple[str, str]]] = {}
        self._expected: dict[str, int] = {}
        self._scored: Counter[str] = Counter()
        self._rejudge = {r.key: r for r in rejudge}

    # what the Runner reads
    def plan(self, episodes: Iterable[PlannedEpisode]) -> None:
        for _ in episodes:
            pass

    def statuses(self) -> dict[str, str]:
        return {}

    def unscored(self, dimensions: Sequence[str], *, include_failed: bool = False) -> list[Unscored]:
        """Every re-judging of this shard, whole (the driver re-scores whole episodes)."""
        for r in self._rejudge.values():
            self._expect(r.key, r.transcript)
        return [Unscored(r.key, r.language, r.supporter) for r in self._rejudge.values()]

    def transcript(self, key: str) -> list[tuple[str, str]]:
        return list(self._rejudge[key].transcript)

    async def start_writer(self) -> None:
        pass

    def set_meta(self, **values: Any) -> None:
        """The driver's store keeps the run's meta; a worker's backend choices are not recorded there."""

    def begin_run(self) -> None:
        """The driver records the run (its heartbeat and end) in the real store."""

    def end_run(self, status: str) -> None:
        pass

    async def close(self) -> None:
        pass

    # what the Runner writes
    def start_episode(self, key: str) -> None:
        self.records.append(("start", key))
        self._lines[key] = []
        self._scored.pop(key, None)

    def add_turn(self, turn: TurnTaken) -> None:
        self.records.append(("turn", turn))
        self._lines.setdefault(turn.episode_key, []).append((turn.role, turn.text))

    def end_episode(self, key: str, outcome: str, reason: str, at: float) -> None:
        self.records.append(("end", key, outcome, reason, at))
        lines = self._lines.pop(key, [])
        if outcome == "failed" or not self.dimensions:
            self._complete(key)
        else:
            self._expect(key, lines)

    def add_score(self, key: str, dimension: str, label: int | None, raw: str | None, model: str, latency: float,
                  *, status: str = "ok", error: str | None = None, round: int = FINAL_ROUND, sample: int = 0,
                  tokens: Tokens = NO_TOKENS) -> None:
        self.records.append(("score", key, dimension, label, raw, model, latency, status, error, round, sample, tuple(tokens)))
        self._scored[key] += 1
        self._check(key)

    def add_event(self, kind: str, detail: str = "", *, endpoint: str | None = None, episode_key: str | None = None) -> None:
        self.records.append(("event", kind, detail, endpoint, episode_key))

    def take(self) -> tuple[list[tuple[Any, ...]], list[str]]:
        records, completed = self.records, self.completed
        self.records, self.completed = [], []
        return records, completed

    def _expect(self, key: str, lines: Sequence[tuple[str, str]]) -> None:
        rounds = len(scored_rounds(lines)) if self.score_every_round else 0  # a round closing at the end is the final score
        self._expected[key] = self.dimensions * (1 + rounds)
        self._check(key)

    def _check(self, key: str) -> None:
        expected = self._expected.get(key)
        if expected is not None and self._scored[key] >= expected:
            del self._expected[key]
            self._scored.pop(key, None)
            self._complete(key)

    def _complete(self, key: str) -> None:
        self.completed.append(key)
