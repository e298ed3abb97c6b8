"""Live view of a run: a rich dashboard in a terminal, plain progress lines elsewhere.

A *source* turns what it watches into a ``Snapshot``; the renderer draws a snapshot
and knows nothing of where it came from, so a run watched in-process and the same
run watched through its store look alike:

* ``LiveSource(progress, stats)`` reads the counters of a run in this process
  (``RunProgress`` and every backend's ``BackendStats``). Both are O(1)-sized, so a
  snapshot costs the same with 10 or 5,000 episodes in flight.
* ``StoreSource(path)`` attaches read-only to a run's SQLite store, running or
  finished, and keeps running totals from a few aggregate queries per refresh:
  episodes by status, turns, scores and events past a rowid watermark.

Displays: ``Dashboard`` (one rich ``Live`` refreshed from the watch loop; logging goes
through its console while it is up) and ``PlainReporter`` (one line every few
seconds and a final summary, without a single control code) for CI and pipes.

Entry points: ``watch`` (the refresh loop), ``run_with_monitor`` (``esc-eval run``:
the runner and its view, with Ctrl-C handling) and ``monitor_command``
(``esc-eval monitor STORE``).

Example::

    source = LiveSource(runner.progress, lambda: [b.stats for b in runner.pool.all()])
    stop = asyncio.Event()
    view = asyncio.create_task(watch(source, live=sys.stdout.isatty(), interval=0.25, stop=stop))
    result = await runner.run()
    stop.set(); await view
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import os
import re
import signal
import sqlite3
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from agents.backends.base import BackendStats
from agents.judge.profiles import DIMENSIONS, PAPER_NAMES
from runs.execution.progress import SPOTLIGHT_LINES, RunProgress
from runs.store import FINAL_ROUND, HEARTBEAT_SECONDS, RunRecord, Store, StoreError

ROLES = ("seeker", "supporter", "judge")
FAULT_KINDS = ("429", "5xx", "timeout", "reset", "parse", "empty", "http")
"""Fault kinds in display order (``BackendError.kind``); others follow alphabetically."""

LATENCY_WINDOW = 512
"""Latest request latencies per endpoint the percentiles are taken over."""

RATE_WINDOW = 10.0
"""Seconds of history behind every rate (turns/s, tokens/s, episodes/s)."""

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


# -- what a display shows ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class LeaderRow:
    """A supporter's running leaderboard values (mean label / 4 * 100) per dimension."""

    supporter: str
    scored: int
    values: Mapping[str, float]

    @property
    def mean(self) -> float:
        return sum(self.values.values()) / len(self.values) if self.values else math.nan


@dataclass(frozen=True)
class WorkerView:
    """One Ray worker of a distributed run (``runs.distributed``): where it runs and how far it got."""

    name: str
    state: str
    where: str
    assigned: int
    finished: int
    active: int
    requests: int
    seen_ago: float


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


def _rate(meter: RateMeter, name: str, total: float, elapsed: float, *, over: bool = False) -> float:
    """The windowed rate while a run goes on; the average over the whole run once it is over (or no window yet)."""
    windowed = None if over else meter.rate(name)
    if windowed is not None:
        return windowed
    return total / elapsed if elapsed >= 1.0 else 0.0


def _ordered_dimensions(found: Iterator[str] | Sequence[str]) -> tuple[str, ...]:
    seen = set(found)
    return tuple(d for d in DIMENSIONS if d in seen) + tuple(sorted(seen - set(DIMENSIONS)))


def _leaderboard(sums: Mapping[str, Mapping[str, float]], counts: Mapping[str, Mapping[str, int]]) -> tuple[LeaderRow, ...]:
    rows = [
        LeaderRow(supporter, max(counts[supporter].values(), default=0),
                  {dim: sums[supporter][dim] / n / 4 * 100 for dim, n in counts[supporter].items() if n})
        for supporter in counts
    ]

    def rank(row: LeaderRow) -> tuple[float, str]:
        value = row.values.get("overall", row.mean)
        return (-value if not math.isnan(value) else math.inf, row.supporter)

    return tuple(sorted(rows, key=rank))


def _fault_kind(event_kind: str) -> tuple[str, bool] | None:
    """``retry:429`` -> ("429", True); ``fault:http`` -> ("http", False); anything else -> None."""
    prefix, _, kind = event_kind.partition(":")
    if prefix not in ("retry", "fault") or not kind:
        return None
    return kind, prefix == "retry"


# -- sources -----------------------------------------------------------------------------------


StatsProvider = Callable[[], Sequence[BackendStats]]


class LiveSource:
    """Snapshots of a run in this process, from its counters only.

    Args:
        progress: the runner's ``RunProgress``.
        stats: every backend's ``BackendStats``, or a function returning them (backends are
            created when the run starts: pass ``lambda: [b.stats for b in runner.pool.all()]``).
        title: shown in the header (run name, store path).
        judge_endpoint: the endpoint whose completion tokens are the judge's, when
            ``progress.tokens_out["judge"]`` is not kept.

    ``state`` is shown in the header; the code running the run sets it (``stopping``, ``finished``).
    """

    def __init__(self, progress: RunProgress, stats: Sequence[BackendStats] | StatsProvider = (), *,
                 title: str = "", judge_endpoint: str = "judge"):
        self.progress = progress
        self._stats: StatsProvider = stats if callable(stats) else (lambda fixed=list(stats): fixed)
        self.title, self.judge_endpoint = title, judge_endpoint
        self.state = "running"
        self.meter = RateMeter()

    def snapshot(self) -> Snapshot:
        p = self.progress
        now = time.monotonic()
        elapsed = p.elapsed()
        stats = list(self._stats())
        tokens: dict[str, int | None] = {role: p.tokens_out.get(role, 0) for role in ROLES}
        if not tokens["judge"]:
            tokens["judge"] = sum(s.completion_tokens for s in stats if s.endpoint == self.judge_endpoint)
        counters = {"turns": p.turns, "finished": p.finished, **{f"tokens:{r}": float(v or 0) for r, v in tokens.items()}}
        self.meter.add(now, counters)
        judged = p.judge_dimensions or p.judge_done or p.judge_pending
        over = self.state in ("finished", "stopped")
        spotlight = tuple(Line(t.index, t.role, t.text, state_summary(t.state)) for t in p.spotlight)
        return Snapshot(
            title=self.title, state=self.state, elapsed=elapsed,
            total=p.planned, skipped=p.skipped, done=p.done, failed=p.failed, active=p.active, queued=p.queued,
            outcomes=dict(p.outcomes), turns=p.turns, tokens=tokens,
            turn_rate=_rate(self.meter, "turns", p.turns, elapsed, over=over),
            token_rates={r: _rate(self.meter, f"tokens:{r}", float(tokens[r] or 0), elapsed, over=over) for r in ROLES},
            episode_rate=_rate(self.meter, "finished", p.finished, elapsed, over=over),
            endpoints=tuple(self._endpoint(s) for s in stats),
            judge_pending=p.judge_pending if judged else None, judge_done=p.judge_done if judged else None,
            judge_failed=p.judge_failed,
            leaderboard=_leaderboard(p.score_sums, p.score_counts),
            dimensions=_ordered_dimensions([d for counts in p.score_counts.values() for d in counts]),
            spotlight_key=p.spotlight_key, spotlight=spotlight, spotlight_outcome=p.spotlight_outcome,
            following=p.spotlight_followed, finished=over,
            workers=tuple(WorkerView(w.name, w.state + (f" ({w.lost} lost)" if w.lost else ""),
                                     f"{w.node}:{w.pid}" if w.pid else "–", w.assigned, w.finished,
                                     w.active, w.requests, now - w.last_seen) for w in p.workers.values()),
        )

    @staticmethod
    def _endpoint(stats: BackendStats) -> EndpointView:
        recent = sorted(stats.latencies[-LATENCY_WINDOW:])
        return EndpointView(stats.endpoint, stats.requests, stats.in_flight, percentile(recent, 0.5), percentile(recent, 0.95),
                            stats.retries, dict(stats.faults), stats.limit or None, stats.limit_min or None,
                            stats.throttled_waits, stats.throttled_seconds)


@dataclass
class _EndpointTally:
    requests: int = 0
    retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class StoreSource:
    """Snapshots of a run read from its store, which another process may be writing.

    Each refresh runs a few aggregate queries: episodes by status (an index scan), turns,
    scores and events past the last rowid seen (running totals; the latest
    ``LATENCY_WINDOW`` latencies per endpoint), and the spotlighted episode's last turns by
    primary key. The leaderboard (final scores by supporter and dimension) is the one full
    aggregate: it is read at most every ``leaderboard_every`` seconds and never more often
    than every 20 times its own cost, so it takes under 5% of the monitor's time on a store
    of any size. Endpoints are named as the run names them: ``seeker``, each supporter,
    ``judge``; in-flight requests and judge tokens are not stored and show as unknown.

    Args:
        path: the store file.
        episode: follow this episode key (or a unique part of one) instead of cycling.
        stale: seconds without a heartbeat after which a run the store says is running is
            shown as crashed (the runner beats every ``HEARTBEAT_SECONDS``).

    The run's state comes from the store's own ``runs`` rows (the runner's heartbeat and
    end marker), never from file times: the read-only open creates nothing beside the store.
    """

    def __init__(self, path: str | Path, *, episode: str | None = None, stale: float = 5 * HEARTBEAT_SECONDS,
                 leaderboard_every: float = 2.0, spotlight_dwell: float = 4.0):
        self.path = Path(path)
        self.store = Store.open(self.path, readonly=True)
        self.stale = stale
        self.leaderboard_every, self.spotlight_dwell = leaderboard_every, spotlight_dwell
        config = self.store.meta("config") or {}
        run = config.get("run") or {}
        self.title = f"{run.get('name', 'run')} · {self.path}"
        self.judge_dimensions = self._judge_dimensions(config.get("judge"))
        self.meter = RateMeter()
        self._turns_seen = self._scores_seen = self._events_seen = 0
        self._turns = Counter[str]()
        self._tokens = Counter[str]()
        supporters = [s.get("name", "") for s in config.get("supporters") or [] if isinstance(s, dict)]
        self._endpoints: dict[str, _EndpointTally] = {
            name: _EndpointTally() for name in ["seeker", *supporters, *(["judge"] if config.get("judge") else [])]}
        self._board: tuple[tuple[LeaderRow, ...], tuple[str, ...], int, int] = ((), (), 0, 0)
        self._board_at, self._board_cost = -math.inf, 0.0
        self._board_counts: dict[str, int] = {}
        self._board_scores_seen = 0
        self._outcome_counts: tuple[int, dict[str, int]] = (-1, {})
        self._last_end: tuple[int, float | None] = (-1, None)
        self._first_start: float | None = None
        self.following = episode is not None
        self.spotlight_key = self._resolve(episode) if episode is not None else None
        self._spotlight_ended: float | None = None

    def close(self) -> None:
        self.store.close_sync()

    # -- one refresh ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        counts = self.store.counts()
        self._read_turns()
        self._read_scores()
        self._read_events()
        over = not (counts.get("running") or counts.get("planned"))
        if now - self._board_at >= max(self.leaderboard_every, 20 * self._board_cost) or (over and self._board_stale(counts)):
            started = time.perf_counter()
            self._board = self._read_leaderboard()
            self._board_at, self._board_cost = now, time.perf_counter() - started
            self._board_counts, self._board_scores_seen = dict(counts), self._scores_seen
        leaderboard, dimensions, final_scores, failed_scores = self._board
        total = sum(counts.values())
        done, failed = counts.get("done", 0), counts.get("failed", 0)
        active, queued = counts.get("running", 0), counts.get("planned", 0)
        elapsed = self._elapsed(over, done + failed)
        judged = bool(self.judge_dimensions or final_scores)
        judge_pending = max(0, done * self.judge_dimensions - final_scores) if judged else None
        state, finished = self._state(self.store.last_run(), active, queued)
        turns = sum(self._turns.values())
        tokens: dict[str, int | None] = {"seeker": self._tokens["seeker"], "supporter": self._tokens["supporter"], "judge": None}
        self.meter.add(now, {"turns": turns, "finished": done + failed, "tokens:seeker": tokens["seeker"] or 0,
                             "tokens:supporter": tokens["supporter"] or 0})
        key, lines, outcome = self._spotlight()
        return Snapshot(
            title=self.title, state=state, elapsed=elapsed,
            total=total, skipped=0, done=done, failed=failed, active=active, queued=queued,
            outcomes=self._outcomes(done + failed), turns=turns, tokens=tokens,
            turn_rate=_rate(self.meter, "turns", turns, elapsed, over=over),
            token_rates={r: (_rate(self.meter, f"tokens:{r}", float(tokens[r] or 0), elapsed, over=over)
                             if tokens[r] is not None else None) for r in ROLES},
            episode_rate=_rate(self.meter, "finished", done + failed, elapsed, over=over),
            endpoints=tuple(self._endpoint_views()),
            judge_pending=judge_pending, judge_done=final_scores if judged else None,
            judge_failed=failed_scores, leaderboard=leaderboard, dimensions=dimensions,
            spotlight_key=key, spotlight=lines, spotlight_outcome=outcome, following=self.following, finished=finished,
        )

    def _tally(self, endpoint: str) -> _EndpointTally:
        if endpoint not in self._endpoints:
            self._endpoints[endpoint] = _EndpointTally()
        return self._endpoints[endpoint]

    def _read_turns(self) -> None:
        high = self._scalar("SELECT MAX(rowid) FROM turns")
        if not high or high <= self._turns_seen:
            return
        low = self._turns_seen
        for role, supporter, n, tokens, requests in self.store.rows(
            "SELECT t.role, e.supporter, COUNT(*), SUM(t.completion_tokens), COUNT(CASE WHEN t.latency > 0 THEN 1 END)"
            " FROM turns t JOIN episodes e ON e.key = t.episode_key"
            " WHERE t.rowid > ? AND t.rowid <= ? GROUP BY t.role, e.supporter", (low, high),
        ):  # a turn with no latency was not generated (the fixed opener): no request behind it
            self._turns[role] += n
            self._tokens[role] += tokens or 0
            if requests:
                self._tally(supporter if role == "supporter" else role).requests += requests
        for role, supporter, latency in self.store.rows(
            "SELECT t.role, e.supporter, t.latency FROM turns t JOIN episodes e ON e.key = t.episode_key"
            " WHERE t.rowid > ? AND t.rowid <= ? AND t.latency > 0 ORDER BY t.rowid", (max(low, high - 4 * LATENCY_WINDOW), high),
        ):
            self._tally(supporter if role == "supporter" else role).latencies.append(latency)
        self._turns_seen = high

    def _read_scores(self) -> None:
        high = self._scalar("SELECT MAX(rowid) FROM scores")
        if not high or high <= self._scores_seen:
            return
        judge = self._tally("judge")
        judge.requests += self._scalar("SELECT COUNT(*) FROM scores WHERE rowid > ? AND rowid <= ? AND status = 'ok'",
                                       (self._scores_seen, high)) or 0
        for (latency,) in self.store.rows(
            "SELECT latency FROM scores WHERE rowid > ? AND rowid <= ? AND status = 'ok' ORDER BY rowid",
            (max(self._scores_seen, high - LATENCY_WINDOW), high),
        ):
            judge.latencies.append(latency or 0.0)
        self._scores_seen = high

    def _read_events(self) -> None:
        high = self._scalar("SELECT MAX(id) FROM events")
        if not high or high <= self._events_seen:
            return
        for endpoint, kind, n in self.store.rows(
            "SELECT endpoint, kind, COUNT(*) FROM events WHERE id > ? AND id <= ? GROUP BY endpoint, kind", (self._events_seen, high),
        ):
            parsed = _fault_kind(kind)
            if parsed is None:
                continue
            tally = self._tally(endpoint or "?")
            tally.faults[parsed[0]] += n
            if parsed[1]:
                tally.retries += n
        self._events_seen = high

    def _read_leaderboard(self) -> tuple[tuple[LeaderRow, ...], tuple[str, ...], int, int]:
        sums: dict[str, dict[str, float]] = {}
        counts: dict[str, dict[str, int]] = {}
        final = failed = 0
        for supporter, dimension, total, valid, n, errors in self.store.rows(
            "SELECT e.supporter, s.dimension,"
            " SUM(CASE WHEN s.status = 'ok' AND s.label BETWEEN 0 AND 4 THEN s.label END),"
            " COUNT(CASE WHEN s.status = 'ok' AND s.label BETWEEN 0 AND 4 THEN 1 END), COUNT(*),"
            " COUNT(CASE WHEN s.status != 'ok' THEN 1 END)"
            " FROM scores s JOIN episodes e ON e.key = s.episode_key WHERE s.round = ? GROUP BY e.supporter, s.dimension",
            (FINAL_ROUND,),
        ):
            final += n
            failed += errors
            if valid:
                sums.setdefault(supporter, {})[dimension] = total
                counts.setdefault(supporter, {})[dimension] = valid
        dims = _ordered_dimensions([d for c in counts.values() for d in c])
        return _leaderboard(sums, counts), dims, final, failed

    def _board_stale(self, counts: Mapping[str, int]) -> bool:
        """Once the run is over, the leaderboard is read again whenever something was written since."""
        return counts != self._board_counts or self._scores_seen != self._board_scores_seen

    def _outcomes(self, finished: int) -> dict[str, int]:
        if self._outcome_counts[0] != finished:  # a table scan: only when an episode ended since
            self._outcome_counts = (finished, {outcome: n for outcome, n in self.store.rows(
                "SELECT outcome, COUNT(*) FROM episodes WHERE status IN ('done', 'failed') GROUP BY outcome") if outcome})
        return dict(self._outcome_counts[1])

    def _endpoint_views(self) -> Iterator[EndpointView]:
        for name, tally in self._endpoints.items():
            recent = sorted(tally.latencies)
            yield EndpointView(name, tally.requests, None, percentile(recent, 0.5), percentile(recent, 0.95),
                               tally.retries, dict(tally.faults))

    # -- the spotlighted episode -------------------------------------------------------------

    def _resolve(self, episode: str) -> str:
        if self.store.rows("SELECT 1 FROM episodes WHERE key = ?", (episode,)):
            return episode
        found = [r[0] for r in self.store.rows("SELECT key FROM episodes WHERE instr(key, ?) > 0 LIMIT 6", (episode,))]
        if len(found) == 1:
            return str(found[0])
        if not found:
            raise StoreError(f"{self.path}: no episode key contains {episode!r}")
        listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise StoreError(f"{self.path}: {episode!r} matches several episodes ({listed}); give more of the key")

    def _spotlight(self) -> tuple[str | None, tuple[Line, ...], str | None]:
        key = self.spotlight_key
        status = outcome = None
        if key is not None:
            row = self.store.rows("SELECT status, outcome FROM episodes WHERE key = ?", (key,))
            status, outcome = (row[0][0], row[0][1]) if row else (None, None)
        if not self.following:
            ended = status in ("done", "failed")
            if ended and self._spotlight_ended is None:
                self._spotlight_ended = time.monotonic()
            if key is None or (ended and time.monotonic() - self._spotlight_ended >= self.spotlight_dwell):  # type: ignore[operator]
                newest = self._newest_episode(exclude=key)
                if newest is not None:
                    key, self._spotlight_ended = newest, None
                    self.spotlight_key = key
                    row = self.store.rows("SELECT status, outcome FROM episodes WHERE key = ?", (key,))
                    status, outcome = (row[0][0], row[0][1]) if row else (None, None)
        if key is None:
            return None, (), None
        lines = tuple(Line(i, role, text, state_summary(state)) for i, role, text, state in reversed(self.store.rows(
            "SELECT idx, role, text, state FROM turns WHERE episode_key = ? ORDER BY idx DESC LIMIT ?", (key, SPOTLIGHT_LINES))))
        return key, lines, outcome if status in ("done", "failed") else None

    def _newest_episode(self, exclude: str | None) -> str | None:
        """The episode that most recently started (its first turn is among the latest), else the latest written."""
        high = self._turns_seen
        for sql in ("SELECT episode_key FROM turns WHERE rowid > ? AND idx = 0 AND episode_key IS NOT ? ORDER BY rowid DESC LIMIT 1",
                    "SELECT episode_key FROM turns WHERE rowid > ? AND episode_key IS NOT ? ORDER BY rowid DESC LIMIT 1"):
            row = self.store.rows(sql, (high - 4 * LATENCY_WINDOW, exclude))
            if row:
                return str(row[0][0])
        return None

    # -- time ---------------------------------------------------------------------------------

    def _elapsed(self, over: bool, finished: int) -> float:
        """Since the first episode started; for a run that is over, until the last one ended."""
        if self._first_start is None:
            self._first_start = self._scalar("SELECT MIN(started_at) FROM episodes")
        if self._first_start is None:
            return 0.0
        end = None
        if over:
            if self._last_end[0] != finished:
                self._last_end = (finished, self._scalar("SELECT MAX(ended_at) FROM episodes"))
            end = self._last_end[1]
        return max(0.0, (end or time.time()) - self._first_start)

    def _state(self, run: RunRecord | None, active: int, queued: int) -> tuple[str, bool]:
        """The header's state and whether the run is over, from the newest ``runs`` row."""
        resume = "continue with esc-eval run --resume"
        if run is not None and run.ended_at is None:
            silent = time.time() - run.heartbeat
            if silent <= self.stale:
                return "running", False
            return f"no heartbeat for {_duration(silent)} (crashed? {resume})", False
        if active:  # ended (or a store older than run records) with episodes marked running: cut off
            return f"interrupted: {active:,} episodes cut off ({resume})", True
        if queued:
            return f"stopped: {queued:,} episodes not started ({resume})", True
        return "finished", True

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.store.rows(sql, params)
        return rows[0][0] if rows else None

    def _judge_dimensions(self, judge: Mapping[str, Any] | None) -> int:
        if not judge:
            return 0
        try:
            from agents.judge.profiles import load_profile

            return len(load_profile(judge.get("profile", "default")).keys)
        except Exception:  # a profile path relative to another directory: ESC-RANK's seven
            return len(DIMENSIONS)


# -- rendering ---------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _per_second(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"


def _throttled(e: EndpointView) -> str:
    """Waits the server asked for and the in-flight limit they drove down: ``12 · 34s · limit 2 (min 1)``."""
    if not e.throttled_waits and e.limit == e.limit_min:
        return "–"
    limit = "" if e.limit is None else f" · limit {e.limit}" + (f" (min {e.limit_min})" if e.limit_min != e.limit else "")
    return f"{e.throttled_waits:,} · {e.throttled_seconds:,.0f}s{limit}"


def _faults(faults: Mapping[str, int]) -> str:
    kinds = [k for k in FAULT_KINDS if faults.get(k)] + sorted(k for k in faults if k not in FAULT_KINDS and faults[k])
    return " ".join(f"{k}:{faults[k]:,}" for k in kinds) or "–"


def _value(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def render(snapshot: Snapshot, *, plain: bool = False) -> Group:
    """The dashboard for ``snapshot``: header, progress, counts, endpoints, leaderboard, one episode.

    ``plain`` draws the progress as text instead of a bar, for displays without colour.
    """
    s = snapshot
    header = Text.assemble(("esc-eval ", "bold"), (s.title, "bold cyan"), "  ·  ",
                           (s.state, "green" if s.state in ("running", "finished") else "yellow"),
                           f"  ·  elapsed {_duration(s.elapsed)}")
    parts: list[RenderableType] = [header, _progress(s, plain), _counts(s), _Endpoints(s), _Board(s), _episode(s)]
    if s.workers:
        parts.insert(4, _workers(s))
    return Group(*parts)


def _progress(s: Snapshot, plain: bool) -> RenderableType:
    rate = f"{s.episode_rate * 60:,.1f} ep/min" if 0 < s.episode_rate < 1 else f"{s.episode_rate:,.1f} ep/s"
    tail = f"{s.completed:,}/{s.total:,}  {s.fraction * 100:5.1f}%  ·  {rate}  ·  ETA {_duration(s.eta)}"
    if plain:
        return Text(f"episodes {tail}")
    bar = Progress(TextColumn("episodes"), BarColumn(bar_width=None), TextColumn("{task.fields[tail]}"),
                   expand=True, auto_refresh=False)
    bar.add_task("episodes", total=max(s.total, 1), completed=s.completed, tail=tail)
    return bar


def _row(table: Table, *cells: str) -> None:
    """Add a row of plain text: names and model output are never read as rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def _counts(s: Snapshot) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    _row(grid, "Episodes", f"active {s.active:,} · queued {s.queued:,} · done {s.done:,} · failed {s.failed:,}"
         + (f" · skipped {s.skipped:,}" if s.skipped else ""))
    _row(grid, "Outcomes", " · ".join(f"{k} {v:,}" for k, v in sorted(s.outcomes.items())) or "–")
    _row(grid, "Turns", f"{_per_second(s.turn_rate)} ({s.turns:,} in all)")
    _row(grid, "Tokens out", " · ".join(f"{role} {_per_second(s.token_rates.get(role))}" for role in ROLES))
    if s.judge_pending is None:
        judge = "no judge in this run"
    else:
        judge = f"backlog {s.judge_pending:,} scores pending · {s.judge_done or 0:,} scored" + (
            f" ({s.judge_failed:,} failed)" if s.judge_failed else "")
    _row(grid, "Judge", judge)
    return grid


class _Endpoints:
    """Per-endpoint health; narrow terminals get short headers and clipped names so errors keep room."""

    def __init__(self, snapshot: Snapshot):
        self.s = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        narrow = options.max_width < 100
        headers = ("endpoint", "req" if narrow else "requests", "active" if narrow else "in flight", "p50", "p95",
                   "retry" if narrow else "retries", "throttled", "errors")
        table = Table(title="Endpoints", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in headers:
            if name == "endpoint":
                table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=16 if narrow else None)
            elif name == "errors":
                table.add_column(name, overflow="fold", min_width=16)
            else:
                table.add_column(name, justify="right", no_wrap=True)
        for e in self.s.endpoints:
            _row(table, e.name, f"{e.requests:,}", "–" if e.in_flight is None else f"{e.in_flight:,}", _latency(e.p50),
                 _latency(e.p95), f"{e.retries:,}", _throttled(e), _faults(e.faults))
        if not self.s.endpoints:
            _row(table, "–", "", "", "", "", "", "", "")
        yield table


class _Board:
    """The leaderboard table, with the paper's dimension names when they fit and short ones when not."""

    def __init__(self, snapshot: Snapshot):
        self.s = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        s = self.s
        names = [PAPER_NAMES.get(dim, dim) for dim in s.dimensions]
        width = max((len(r.supporter) for r in s.leaderboard), default=13) + 9 + sum(len(n) + 3 for n in names)
        if width > options.max_width:
            names = [name[:4] for name in names]
        table = Table(title="Leaderboard (running mean / 4 × 100)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("supporter", no_wrap=True)
        table.add_column("scored", justify="right")
        for name in names:
            table.add_column(name, justify="right")
        for row in s.leaderboard:
            _row(table, row.supporter, f"{row.scored:,}", *(_value(row.values.get(dim)) for dim in s.dimensions))
        if not s.leaderboard:
            _row(table, "no scores yet", "", *("" for _ in s.dimensions))
        yield table


def _workers(s: Snapshot) -> Table:
    """Per-worker rows of a distributed run: state, where, shard progress, requests, last heard."""
    table = Table(title="Workers", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("worker", "state", "where", "finished", "active", "requests", "heard"):
        table.add_column(header, no_wrap=True, justify="left" if header in ("worker", "state", "where") else "right")
    for w in s.workers:
        _row(table, w.name, w.state, w.where, f"{w.finished:,}/{w.assigned:,}", f"{w.active:,}", f"{w.requests:,}",
             f"{w.seen_ago:.1f}s ago")
    return table


def _episode(s: Snapshot) -> RenderableType:
    if s.spotlight_key is None:
        return Text("Episode: no turns yet", style="dim")
    how = "following" if s.following else "latest"
    title = Text.assemble(("Episode ", "bold"), (s.spotlight_key, "cyan"), f"  ({how}"
                          + (f", {s.spotlight_outcome}" if s.spotlight_outcome else "") + ")")
    width = max((len(line.role) for line in s.spotlight), default=0)
    lines: list[RenderableType] = []
    for line in s.spotlight:
        lines.append(Text.assemble((f"{line.index:>3} ", "dim"), (f"{line.role:<{width}}  ", "bold"), " ".join(line.text.split()),
                                   no_wrap=True, overflow="ellipsis"))
        if line.state:
            lines.append(Text(f"    {'':<{width}}  [{line.state}]", style="dim", no_wrap=True, overflow="ellipsis"))
    lines = lines or [Text("    waiting for its first turn", style="dim")]
    return Group(title, *lines)


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


def plain_text(renderable: RenderableType, *, width: int = 120) -> str:
    """``renderable`` as text without any control code, whatever the environment says about colours."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, force_jupyter=False,
                      force_interactive=False, no_color=True, highlight=False, emoji=False, legacy_windows=False, soft_wrap=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in _ANSI.sub("", text).splitlines()) + "\n"


# -- displays ----------------------------------------------------------------------------------


class Dashboard:
    """The live terminal view: one rich ``Live`` showing ``render(snapshot)``.

    While it is up, nothing may write to the terminal but its console: stdout and stderr
    are redirected above the display and the root logger's stream handlers are swapped
    for a ``RichHandler`` on ``console``. Use as a context manager; ``update`` redraws.
    """

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4.0):
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, refresh_per_second=refresh_per_second,
                         transient=False, redirect_stdout=True, redirect_stderr=True)
        self._handlers: list[tuple[logging.Handler, logging.Handler]] = []
        self._started = False

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        terminal = {id(stream) for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
        self.live.start()
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and id(getattr(handler, "stream", None)) in terminal:
                rich = RichHandler(console=self.console, show_path=False, level=handler.level)
                rich.setFormatter(logging.Formatter("%(name)s: %(message)s"))
                root.removeHandler(handler)
                root.addHandler(rich)
                self._handlers.append((handler, rich))

    def update(self, snapshot: Snapshot) -> None:
        if self._started:
            self.live.update(render(snapshot), refresh=True)

    def stop(self) -> None:
        """Leave the last frame on screen and give the terminal back. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        root = logging.getLogger()
        for original, rich in self._handlers:
            root.removeHandler(rich)
            root.addHandler(original)
        self._handlers.clear()
        self.live.stop()


class PlainReporter:
    """For CI logs and pipes: one progress line per update and a final summary, no control codes."""

    def __init__(self, out: TextIO | None = None, *, width: int = 120):
        self.out, self.width = out, width

    def line(self, s: Snapshot) -> str:
        tokens = " ".join(f"{role} {_per_second(s.token_rates.get(role))}" for role in ROLES)
        faults: Counter[str] = Counter()
        for e in s.endpoints:
            faults.update(e.faults)
        judge = "" if s.judge_pending is None else f" | judge pending {s.judge_pending:,} scored {s.judge_done or 0:,}"
        waits = sum(e.throttled_waits for e in s.endpoints)
        throttled = f" | throttled waits {waits:,}" if waits else ""
        workers = "".join(f" | {w.name} {w.state} {w.finished:,}/{w.assigned:,}" for w in s.workers)
        return (
            f"[{_duration(s.elapsed)}] episodes {s.completed:,}/{s.total:,} ({s.fraction * 100:.1f}%)"
            f" active {s.active:,} queued {s.queued:,} done {s.done:,} failed {s.failed:,}"
            f" | {s.episode_rate:,.2f} ep/s ETA {_duration(s.eta)} | turns {_per_second(s.turn_rate)}"
            f" | tokens out {tokens}{judge}{throttled} | errors {_faults(faults)}{workers}"
        )

    def summary(self, s: Snapshot) -> str:
        return plain_text(render(s, plain=True), width=self.width)

    def update(self, s: Snapshot) -> None:
        self._write(_ANSI.sub("", self.line(s)) + "\n")

    def finish(self, s: Snapshot) -> None:
        self._write(self.summary(s))

    def _write(self, text: str) -> None:
        out = self.out or sys.stdout
        out.write(text)
        out.flush()


# -- loops -------------------------------------------------------------------------------------


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout) is a terminal that can host the live dashboard; else plain lines."""
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except ValueError:  # closed
        return False


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def watch(source: Source, *, live: bool, interval: float, stop: asyncio.Event | None = None,
                exit_when_finished: bool = False, dashboard: Dashboard | None = None,
                out: TextIO | None = None) -> Snapshot:
    """Show ``source`` until ``stop`` is set (or, with ``exit_when_finished``, the run is over).

    ``live`` draws the dashboard, refreshed every ``interval`` seconds (0.25 gives rich's
    4 frames a second), and leaves its final frame on screen. Otherwise a ``PlainReporter``
    prints a line every ``interval`` seconds and the summary at the end. Returns the last snapshot.
    """
    stop = stop or asyncio.Event()
    if live:
        display = dashboard or Dashboard()
        with display:
            while True:  # a snapshot is taken after ``stop`` is set, so the last frame is final
                snapshot = await _snapshot(source, stop, interval)
                display.update(snapshot)
                if stop.is_set() or (exit_when_finished and snapshot.finished):
                    return snapshot
                await _pause(stop, interval)
    reporter = PlainReporter(out)
    while True:
        snapshot = await _snapshot(source, stop, interval)
        if stop.is_set() or (exit_when_finished and snapshot.finished):
            reporter.finish(snapshot)
            return snapshot
        reporter.update(snapshot)
        await _pause(stop, interval)


async def _snapshot(source: Source, stop: asyncio.Event, interval: float) -> Snapshot:
    """``source.snapshot()``, trying again next tick while the store is busy (a checkpoint, a lock)."""
    while True:
        try:
            return source.snapshot()
        except sqlite3.OperationalError as exc:
            log.debug("monitor: store busy (%s); trying again", exc)
            await _pause(stop, interval)


class _Runner(Protocol):
    progress: RunProgress
    pool: Any

    def stop_admitting(self) -> None: ...

    async def run(self) -> Any: ...


INTERRUPTED = 130


async def run_with_monitor(runner: _Runner, *, live: bool, interval: float | None = None, title: str = "",
                           console: Console | None = None, out: TextIO | None = None) -> Any:
    """Run ``runner`` with its view (``esc-eval run``) and return ``runner.run()``'s result.

    Ctrl-C once: admit no more episodes, let the active ones (and their scoring) finish, end
    normally. Ctrl-C again: stop the display and leave the process at once with status 130;
    the store keeps every committed turn and ``--resume`` continues the run.
    ``interval`` defaults to 0.25 s live and 5 s for plain lines.
    """
    source = LiveSource(runner.progress, lambda: [backend.stats for backend in runner.pool.all()], title=title)
    dashboard = Dashboard(console) if live else None
    stop = asyncio.Event()
    view = asyncio.create_task(watch(source, live=live, interval=interval or (0.25 if live else 5.0), stop=stop,
                                     dashboard=dashboard, out=out), name="monitor")
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            runner.stop_admitting()
            source.state = f"stopping: finishing {runner.progress.active:,} active episodes (Ctrl-C again quits now)"
            if not live:
                print("esc-eval: stopping: no new episodes; active ones finish (Ctrl-C again quits now)", file=sys.stderr, flush=True)
            return
        if dashboard is not None:
            dashboard.stop()
        sys.stdout.flush()
        print("esc-eval: interrupted; finished episodes are in the store, continue with --resume", file=sys.stderr, flush=True)
        os._exit(INTERRUPTED)

    try:
        loop.add_signal_handler(signal.SIGINT, interrupted)
        handled = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        handled = False
    try:
        result = await runner.run()
        source.state = "finished" if not presses else "stopped"
    finally:
        stop.set()
        try:
            await view
        except Exception:  # the view failing must never cost the run its result
            log.exception("the run monitor failed; the run itself was not affected")
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)
    return result


def monitor_command(store_path: str | Path, episode: str | None = None, once: bool = False,
                    interval: float | None = None, *, out: TextIO | None = None) -> int:
    """``esc-eval monitor STORE``: watch a run through its store until it finishes or Ctrl-C.

    ``once`` prints one frame and returns. In a terminal the view is the dashboard
    (refreshed every ``interval`` seconds, default 1); elsewhere plain lines (default every 5 s).
    Raises ``StoreError`` when the file is not a store or ``episode`` names no episode.
    """
    source = StoreSource(store_path, episode=episode)
    live = out is None and is_terminal()
    try:
        if once:
            snapshot = source.snapshot()
            if live:
                Console().print(render(snapshot))
            else:
                PlainReporter(out).finish(snapshot)
            return 0
        asyncio.run(_monitor(source, live, interval or (1.0 if live else 5.0), out))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()


async def _monitor(source: StoreSource, live: bool, interval: float, out: TextIO | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    await watch(source, live=live, interval=interval, stop=stop, exit_when_finished=True, out=out)
