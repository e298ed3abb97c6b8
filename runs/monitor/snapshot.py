"""What a monitor display shows: the ``Snapshot`` of a run at one moment and its parts.

Sources (``esc_eval.runs.monitor.sources``) build snapshots, displays (``esc_eval.runs.monitor.render``) draw
them; this module knows neither. It also holds the pieces both sides share: rates over a
sliding window, percentiles, the running leaderboard, fault kinds and the seeker-state line.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from esc_eval.agents.judge.profiles import DIMENSIONS

ROLES = ("seeker", "supporter", "judge")
FAULT_KINDS = ("429", "5xx", "timeout", "reset", "parse", "empty", "http")
"""Fault kinds in display order (``BackendError.kind``); others follow alphabetically."""

LATENCY_WINDOW = 512
"""Latest request latencies per endpoint the percentiles are taken over."""

RATE_WINDOW = 10.0
"""Seconds of history behind every rate (turns/s, tokens/s, episodes/s)."""

# -- views ------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointView:
    """One endpoint's health: ``in_flight`` is ``None`` when the source cannot know it (a store)."""

    name: str
    requests: int
    in_flight: int | None
    p50: float | None
    p95: float | None
    retries: int
    faults: Mapping[str, int]
    limit: int | None = None
    """Requests allowed in flight now (it halves while the server throttles); ``None`` when unknown (a store)."""
    limit_min: int | None = None
    throttled_waits: int = 0
    throttled_seconds: float = 0.0
    """Backoff waits the server asked for (429, 503, Retry-After), and their total length."""
    cache_hits: int = 0
    """Requests answered from the response cache: not sent, so not in ``requests`` (docs/cost.md)."""


@dataclass(frozen=True)
class LeaderRow:
    """A supporter's running leaderboard values per dimension: the report's score, the mean over cards of the card's mean label × 25."""

    supporter: str
    scored: int
    values: Mapping[str, float]

    @property
    def mean(self) -> float:
        return sum(self.values.values()) / len(self.values) if self.values else math.nan


@dataclass(frozen=True)
class WorkerView:
    """One Ray worker of a distributed run (``esc_eval.runs.distributed``): where it runs and how far it got."""

    name: str
    state: str
    where: str
    assigned: int
    finished: int
    active: int
    requests: int
    seen_ago: float


@dataclass(frozen=True)
class CostView:
    """USD spent so far (earlier attempts of the store included), the whole plan's projected cost (``None`` until
    something says what an episode costs) and the run's cost limit (docs/cost.md)."""

    spent: float
    projected: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class Line:
    """One turn of the spotlighted episode."""

    index: int
    role: str
    text: str
    state: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything a display shows, at one moment.

    Episode counts: ``total`` is the whole plan, ``skipped`` those an earlier attempt finished
    (a store has no such notion: its ``done``/``failed`` include them), so
    ``skipped + done + failed + active + queued == total``. Rates are per second over the
    last ``RATE_WINDOW`` seconds, or averages since the start while that window is empty.
    ``tokens``/``token_rates`` hold ``None`` for a role the source cannot measure.
    ``judge_pending``/``judge_done`` count final (episode x dimension) scores; ``None``
    when the run has no judge.
    """

    title: str
    state: str
    elapsed: float
    total: int
    skipped: int
    done: int
    failed: int
    active: int
    queued: int
    outcomes: Mapping[str, int]
    turns: int
    tokens: Mapping[str, int | None]
    turn_rate: float
    token_rates: Mapping[str, float | None]
    episode_rate: float
    endpoints: tuple[EndpointView, ...]
    judge_pending: int | None
    judge_done: int | None
    judge_failed: int
    leaderboard: tuple[LeaderRow, ...]
    dimensions: tuple[str, ...]
    spotlight_key: str | None
    spotlight: tuple[Line, ...]
    spotlight_outcome: str | None
    following: bool
    finished: bool = False
    workers: tuple[WorkerView, ...] = ()
    """Per-worker progress of a distributed run; empty otherwise (and from a store)."""
    cost: CostView | None = None
    """Spend and its projection; ``None`` when no endpoint of the run has a price."""

    @property
    def completed(self) -> int:
        return self.skipped + self.done + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.completed)

    @property
    def fraction(self) -> float:
        return self.completed / self.total if self.total else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until every planned episode is finished at the current rate; ``None`` if unknown."""
        if self.remaining == 0:
            return 0.0
        return self.remaining / self.episode_rate if self.episode_rate > 0 else None


class Source(Protocol):
    """Something a display watches."""

    def snapshot(self) -> Snapshot: ...


class RateMeter:
    """Rates of growing counters over a sliding time window."""

    def __init__(self, window: float = RATE_WINDOW):
        self.window = window
        self._samples: deque[tuple[float, Mapping[str, float]]] = deque()

    def add(self, at: float, values: Mapping[str, float]) -> None:
        self._samples.append((at, dict(values)))
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window:
            self._samples.popleft()

    def rate(self, name: str) -> float | None:
        """Growth per second of ``name`` over the window; ``None`` until it spans half a second."""
        if len(self._samples) < 2:
            return None
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.5 or name not in first or name not in last:
            return None
        return max(0.0, (last[name] - first[name]) / (t1 - t0))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; ``None`` when empty."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def windowed_rate(meter: RateMeter, name: str, total: float, elapsed: float, *, over: bool = False) -> float:
    """The windowed rate while a run goes on; the average over the whole run once it is over (or no window yet)."""
    windowed = None if over else meter.rate(name)
    if windowed is not None:
        return windowed
    return total / elapsed if elapsed >= 1.0 else 0.0


def ordered_dimensions(found: Iterator[str] | Sequence[str]) -> tuple[str, ...]:
    seen = set(found)
    return tuple(d for d in DIMENSIONS if d in seen) + tuple(sorted(seen - set(DIMENSIONS)))


def running_leaderboard(values: Mapping[str, Mapping[str, float]], counts: Mapping[str, Mapping[str, int]]) -> tuple[LeaderRow, ...]:
    """Rows of the running leaderboard, best overall first: ``values`` are the report's scores (each card counted once),
    ``counts`` the valid labels behind them, per supporter and dimension."""
    rows = [
        LeaderRow(supporter, max(counts[supporter].values(), default=0),
                  {dim: values[supporter][dim] for dim, n in counts[supporter].items() if n and dim in values.get(supporter, {})})
        for supporter in counts
    ]

    def rank(row: LeaderRow) -> tuple[float, str]:
        value = row.values.get("overall", row.mean)
        return (-value if not math.isnan(value) else math.inf, row.supporter)

    return tuple(sorted(rows, key=rank))


def fault_kind(event_kind: str) -> tuple[str, bool] | None:
    """``retry:429`` -> ("429", True); ``fault:http`` -> ("http", False); anything else -> None."""
    prefix, _, kind = event_kind.partition(":")
    if prefix not in ("retry", "fault") or not kind:
        return None
    return kind, prefix == "retry"



_STATE_KEYS = ("persona", "emotion", "distress", "revealed", "unhelpful", "leaving")


def state_summary(state: str | None) -> str:
    """The seeker's hidden state (JSON) as one short line: emotion, distress, facts revealed, ..."""
    if not state:
        return ""
    try:
        data = json.loads(state)
    except ValueError:
        return ""
    parts = []
    for key in _STATE_KEYS:
        value = data.get(key)
        if value in (None, "", False):
            continue
        if isinstance(value, (list, tuple)):
            total = data.get("facts")
            value = f"{len(value)}/{total}" if isinstance(total, int) else len(value)
        parts.append(f"{key} {value}")
    role_break = data.get("role_break")
    if isinstance(role_break, dict) and role_break.get("cue"):
        parts.append("role break" + (" kept" if role_break.get("in_role") is False else " retried"))
    return " · ".join(parts)


def duration(seconds: float | None) -> str:
    """``seconds`` as ``h:mm:ss``; ``--:--`` when unknown."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
