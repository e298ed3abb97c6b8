"""Where snapshots come from: a run in this process (``LiveSource``) or a store on disk (``StoreSource``).

Both give the same ``Snapshot`` for the same run, so a run watched in-process and the
same run watched through its store look alike:

* ``LiveSource(progress, stats)`` reads the counters of a run in this process
  (``RunProgress`` and every backend's ``BackendStats``). Both are O(1)-sized, so a
  snapshot costs the same with 10 or 5,000 episodes in flight.
* ``StoreSource(path)`` attaches read-only to a run's SQLite store, running or
  finished, and keeps running totals from what its ``LiveReader`` (``esc_eval.runs.store.live``)
  finds written since the last refresh: the monitor itself holds no SQL.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.backends.base import BackendStats
from esc_eval.agents.judge.profiles import DIMENSIONS, to_points
from esc_eval.runs.analysis.cost import recorded_prices
from esc_eval.runs.execution.progress import SPOTLIGHT_LINES, RunProgress
from esc_eval.runs.execution.spend import stored_spend
from esc_eval.runs.monitor.snapshot import (
    LATENCY_WINDOW,
    ROLES,
    CostView,
    EndpointView,
    LeaderRow,
    Line,
    RateMeter,
    Snapshot,
    WorkerView,
    duration,
    fault_kind,
    ordered_dimensions,
    percentile,
    running_leaderboard,
    state_summary,
    windowed_rate,
)
from esc_eval.runs.store import HEARTBEAT_SECONDS, RunRecord, Store
from esc_eval.runs.store.live import LiveReader

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
        if callable(stats):
            self._stats: StatsProvider = stats
        else:
            fixed = list(stats)
            self._stats = lambda: fixed
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
            turn_rate=windowed_rate(self.meter, "turns", p.turns, elapsed, over=over),
            token_rates={r: windowed_rate(self.meter, f"tokens:{r}", float(tokens[r] or 0), elapsed, over=over) for r in ROLES},
            episode_rate=windowed_rate(self.meter, "finished", p.finished, elapsed, over=over),
            endpoints=tuple(self._endpoint(s) for s in stats),
            judge_pending=p.judge_pending if judged else None, judge_done=p.judge_done if judged else None,
            judge_failed=p.judge_failed,
            leaderboard=running_leaderboard(p.leaderboard(), p.score_counts),
            dimensions=ordered_dimensions([d for counts in p.score_counts.values() for d in counts]),
            spotlight_key=p.spotlight_key, spotlight=spotlight, spotlight_outcome=p.spotlight_outcome,
            following=p.spotlight_followed, finished=over,
            workers=tuple(WorkerView(w.name, w.state + (f" ({w.lost} lost)" if w.lost else ""),
                                     f"{w.node}:{w.pid}" if w.pid else "–", w.assigned, w.finished,
                                     w.active, w.requests, now - w.last_seen) for w in p.workers.values()),
            cost=self._cost(),
        )

    def _cost(self) -> CostView | None:
        """The run's spend (``RunProgress.spend``) and the plan's projection: what is spent and still expected of the
        episodes in flight, and an episode's expected cost for each one not yet admitted (a Ray run, whose workers
        admit: this run's spend per finished episode times its episodes)."""
        p, spend = self.progress, self.progress.spend
        if spend is None or not spend.prices.any:
            return None
        projected = spend.projection(p.queued)
        if projected is None and p.finished:  # nothing admitted through ``spend`` (Ray workers): this run's spend per episode
            projected = spend.prior + spend.spent / p.finished * p.to_run
        return CostView(spend.total, projected, spend.limit)

    @staticmethod
    def _endpoint(stats: BackendStats) -> EndpointView:
        recent = sorted(stats.latencies[-LATENCY_WINDOW:])
        return EndpointView(stats.endpoint, stats.requests, stats.in_flight, percentile(recent, 0.5), percentile(recent, 0.95),
                            stats.retries, dict(stats.faults), stats.limit or None, stats.limit_min or None,
                            stats.throttled_waits, stats.throttled_seconds, stats.cache_hits)


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
        self.reader = LiveReader(self.store, recent=LATENCY_WINDOW)
        self.stale = stale
        self.leaderboard_every, self.spotlight_dwell = leaderboard_every, spotlight_dwell
        config = self.store.meta("config") or {}
        run = config.get("run") or {}
        self.title = f"{run.get('name', 'run')} · {self.path}"
        self.judge_dimensions = self._judge_dimensions(config.get("judge"))
        self.prices = recorded_prices(self.store)
        self.cost_limit: float | None = run.get("cost_limit")
        self._spent: float | None = None
        self.meter = RateMeter()
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
        self.spotlight_key = self.reader.find_episode(episode) if episode is not None else None
        self._spotlight_ended: float | None = None

    def close(self) -> None:
        self.store.close_sync()

    # -- one refresh ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        counts = self.reader.status_counts()
        self._read_turns()
        self._read_scores()
        self._read_events()
        over = not (counts.get("running") or counts.get("planned"))
        if now - self._board_at >= max(self.leaderboard_every, 20 * self._board_cost) or (over and self._board_stale(counts)):
            started = time.perf_counter()
            self._board = self._read_leaderboard()
            self._spent = stored_spend(self.store, self.prices) if self.prices.any else None
            self._board_at, self._board_cost = now, time.perf_counter() - started
            self._board_counts, self._board_scores_seen = dict(counts), self.reader.scores_seen
        leaderboard, dimensions, final_scores, failed_scores = self._board
        total = sum(counts.values())
        done, failed = counts.get("done", 0), counts.get("failed", 0)
        active, queued = counts.get("running", 0), counts.get("planned", 0)
        elapsed = self._elapsed(over, done + failed)
        judged = bool(self.judge_dimensions or final_scores)
        judge_pending = max(0, done * self.judge_dimensions - final_scores) if judged else None
        state, finished = self._state(self.reader.last_run(), active, queued)
        turns = sum(self._turns.values())
        tokens: dict[str, int | None] = {"seeker": self._tokens["seeker"], "supporter": self._tokens["supporter"], "judge": None}
        self.meter.add(now, {"turns": turns, "finished": done + failed, "tokens:seeker": tokens["seeker"] or 0,
                             "tokens:supporter": tokens["supporter"] or 0})
        key, lines, outcome = self._spotlight()
        return Snapshot(
            title=self.title, state=state, elapsed=elapsed,
            total=total, skipped=0, done=done, failed=failed, active=active, queued=queued,
            outcomes=self._outcomes(done + failed), turns=turns, tokens=tokens,
            turn_rate=windowed_rate(self.meter, "turns", turns, elapsed, over=over),
            token_rates={r: (windowed_rate(self.meter, f"tokens:{r}", float(tokens[r] or 0), elapsed, over=over)
                             if tokens[r] is not None else None) for r in ROLES},
            episode_rate=windowed_rate(self.meter, "finished", done + failed, elapsed, over=over),
            endpoints=tuple(self._endpoint_views()),
            judge_pending=judge_pending, judge_done=final_scores if judged else None,
            judge_failed=failed_scores, leaderboard=leaderboard, dimensions=dimensions,
            spotlight_key=key, spotlight=lines, spotlight_outcome=outcome, following=self.following, finished=finished,
            cost=self._cost(total, done + failed),
        )

    def _cost(self, total: int, ended: int) -> CostView | None:
        """The store's spend at the prices its config records, read with the leaderboard; projected as spend per
        ended episode times the plan's episodes (the spend of those in flight counts a little early)."""
        if self._spent is None:
            return None
        return CostView(self._spent, self._spent / ended * total if ended else None, self.cost_limit)

    def _tally(self, endpoint: str) -> _EndpointTally:
        if endpoint not in self._endpoints:
            self._endpoints[endpoint] = _EndpointTally()
        return self._endpoints[endpoint]

    def _read_turns(self) -> None:
        new = self.reader.new_turns()
        for c in new.counts:  # a turn with no latency was not generated (the fixed opener): no request behind it
            self._turns[c.role] += c.turns
            self._tokens[c.role] += c.tokens
            if c.requests:
                self._tally(c.supporter if c.role == "supporter" else c.role).requests += c.requests
        for t in new.latencies:
            self._tally(t.supporter if t.role == "supporter" else t.role).latencies.append(t.seconds)

    def _read_scores(self) -> None:
        seen = self.reader.scores_seen
        new = self.reader.new_scores()
        if self.reader.scores_seen != seen:  # any score written, even a failed one, shows the judge's endpoint
            judge = self._tally("judge")
            judge.requests += new.ok
            judge.latencies.extend(new.latencies)

    def _read_events(self) -> None:
        for event in self.reader.new_events():
            parsed = fault_kind(event.kind)
            if parsed is None:
                continue
            tally = self._tally(event.endpoint or "?")
            tally.faults[parsed[0]] += event.count
            if parsed[1]:
                tally.retries += event.count

    def _read_leaderboard(self) -> tuple[tuple[LeaderRow, ...], tuple[str, ...], int, int]:
        values: dict[str, dict[str, float]] = {}
        counts: dict[str, dict[str, int]] = {}
        final = failed = 0
        for tally in self.reader.final_score_tallies():
            final += tally.scores
            failed += tally.failed
            if tally.valid:
                values.setdefault(tally.supporter, {})[tally.dimension] = to_points(tally.card_mean)
                counts.setdefault(tally.supporter, {})[tally.dimension] = tally.valid
        dims = ordered_dimensions([d for c in counts.values() for d in c])
        return running_leaderboard(values, counts), dims, final, failed

    def _board_stale(self, counts: Mapping[str, int]) -> bool:
        """Once the run is over, the leaderboard is read again whenever something was written since."""
        return counts != self._board_counts or self.reader.scores_seen != self._board_scores_seen

    def _outcomes(self, finished: int) -> dict[str, int]:
        if self._outcome_counts[0] != finished:  # a table scan: only when an episode ended since
            self._outcome_counts = (finished, self.reader.outcome_counts())
        return dict(self._outcome_counts[1])

    def _endpoint_views(self) -> Iterator[EndpointView]:
        for name, tally in self._endpoints.items():
            recent = sorted(tally.latencies)
            yield EndpointView(name, tally.requests, None, percentile(recent, 0.5), percentile(recent, 0.95),
                               tally.retries, dict(tally.faults))

    # -- the spotlighted episode -------------------------------------------------------------

    def _spotlight(self) -> tuple[str | None, tuple[Line, ...], str | None]:
        key = self.spotlight_key
        status = outcome = None
        if key is not None:
            status, outcome = self._episode_state(key)
        if not self.following:
            ended = status in ("done", "failed")
            if ended and self._spotlight_ended is None:
                self._spotlight_ended = time.monotonic()
            if key is None or (ended and time.monotonic() - self._spotlight_ended >= self.spotlight_dwell):  # type: ignore[operator]
                newest = self.reader.newest_episode(exclude=key)
                if newest is not None:
                    key, self._spotlight_ended = newest, None
                    self.spotlight_key = key
                    status, outcome = self._episode_state(key)
        if key is None:
            return None, (), None
        lines = tuple(Line(t.index, t.role, t.text, state_summary(t.state)) for t in self.reader.last_turns(key, SPOTLIGHT_LINES))
        return key, lines, outcome if status in ("done", "failed") else None

    def _episode_state(self, key: str) -> tuple[str | None, str | None]:
        state = self.reader.episode_state(key)
        return (state.status, state.outcome) if state else (None, None)

    # -- time ---------------------------------------------------------------------------------

    def _elapsed(self, over: bool, finished: int) -> float:
        """Since the first episode started; for a run that is over, until the last one ended."""
        if self._first_start is None:
            self._first_start = self.reader.first_start()
        if self._first_start is None:
            return 0.0
        end = None
        if over:
            if self._last_end[0] != finished:
                self._last_end = (finished, self.reader.last_end())
            end = self._last_end[1]
        return max(0.0, (end or time.time()) - self._first_start)

    def _state(self, run: RunRecord | None, active: int, queued: int) -> tuple[str, bool]:
        """The header's state and whether the run is over, from the newest ``runs`` row."""
        resume = "continue with esc-eval run --resume"
        if run is not None and run.ended_at is None:
            silent = time.time() - run.heartbeat
            if silent <= self.stale:
                return "running", False
            return f"no heartbeat for {duration(silent)} (crashed? {resume})", False
        if active:  # ended (or a store older than run records) with episodes marked running: cut off
            return f"interrupted: {active:,} episodes cut off ({resume})", True
        if queued:
            return f"stopped: {queued:,} episodes not started ({resume})", True
        return "finished", True

    def _judge_dimensions(self, judge: Mapping[str, Any] | None) -> int:
        if not judge:
            return 0
        try:
            from esc_eval.agents.judge.profiles import load_profile

            return len(load_profile(judge.get("profile", "default")).keys)
        except Exception:  # a profile path relative to another directory: ESC-RANK's seven
            return len(DIMENSIONS)
