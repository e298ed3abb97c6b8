"""Distributed runs on Ray: the driver plans and owns the store; workers run shards of episodes.

``[run] executor = "ray"`` (or ``esc-eval run --ray ADDRESS``) runs a plan with a
``DistributedRunner`` instead of a ``Runner``:

* The **driver** (the ``esc-eval run`` process) plans the episode keys, skips those the store has
  finished, and deals the rest round-robin into one shard per worker. It is the only process that
  touches the store: it writes every record the workers send back, in order, with the store's
  single writer, and keeps the ``RunProgress`` the monitor shows (with a row per worker).
* Each **worker** is a Ray actor (``EpisodeWorker``) running the same asyncio ``Runner`` on its
  shard, with the same backends, turn policy, detectors and judge, and the per-endpoint limits
  divided among the workers (``split_limits``). Instead of a store it writes into a
  ``RecordSink``, which keeps the store calls (``start``, ``turn``, ``end``, ``score``, ``event``)
  as records. The driver polls ``drain()`` every ``poll_interval`` seconds and receives a
  ``Batch``: the records since the last poll, the keys completed since then (ended and, with a
  judge, every score recorded), and the worker's counters.
* **Fault tolerance**: when a worker dies (process killed, node lost), its next ``drain()`` raises
  ``RayActorError``. Every key of its shard it did not report complete goes to a fresh worker in
  its slot (at most ``max_replacements`` times per slot); the monitor shows it as ``w0 running (1 lost)``. The new attempt's ``start`` record wipes
  the partial turns and scores the dead one left (``Store.start_episode``), and turns and scores are
  keyed ``INSERT OR REPLACE``, so each episode is in the store exactly once. If the driver dies,
  ``esc-eval run ... --resume`` continues as on one machine.

Example::

    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint())
    result = await DistributedRunner(plan, store, address="local", workers=2).run()

Ray is an optional dependency (``pip install "esc-eval[ray]"``); this module imports it lazily.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from agents.backends.base import BackendStats
from agents.judge.agent import _round_ends
from agents.messages import EpisodeEnded, TurnTaken
from roles.cards import RoleCard
from runs.config import Config
from runs.execution.progress import RunProgress, WorkerProgress
from runs.execution.plan import RunPlan
from runs.execution.runner import RunResult
from runs.store import FINAL_ROUND, PlannedEpisode, Store

log = logging.getLogger(__name__)

LATENCIES_PER_BATCH = 256
"""Latest request latencies per endpoint a worker sends with each batch (for the monitor's percentiles)."""


class DistributedError(RuntimeError):
    """The distributed run could not go on (Ray missing, every replacement of a worker died)."""


# -- limits ------------------------------------------------------------------------------


def split_limits(config: Config, workers: int) -> Config:
    """The config each of ``workers`` workers runs with: limits divided so the cluster keeps the config's totals.

    Every endpoint's ``max_connections`` (seeker, supporters, judge, whose limit is also the
    judge's concurrency) and ``[run] concurrency`` become ``value // workers``, at least 1.
    Whatever decides results is unchanged (``Config.fingerprint`` ignores these fields).
    """

    def share(value: int) -> int:
        return max(1, value // workers)

    def endpoint(section: Any) -> Any:
        return dataclasses.replace(section, max_connections=share(section.max_connections))

    return dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, concurrency=share(config.run.concurrency)),
        seeker=endpoint(config.seeker),
        supporters=tuple(endpoint(s) for s in config.supporters),
        judge=endpoint(config.judge) if config.judge is not None else None,
    )


def deal(items: Sequence[Any], shards: int) -> list[list[Any]]:
    """Round-robin: shard ``i`` gets items ``i, i+shards, ...`` (every supporter and persona spread evenly)."""
    return [list(items[i::shards]) for i in range(shards)]


# -- the worker side ---------------------------------------------------------------------


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
    """Stands in for the ``Store`` inside a worker: every write becomes a record for the driver.

    It knows when an episode is complete: ended ``failed``, or ended with no judge, or ended and
    holding as many scores as the judge gives it (``dimensions`` final scores, plus one per
    dimension and round with ``score_every_round``).
    """

    path = Path("<ray-worker>")

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

    def unscored(self, dimensions: Sequence[str], *, include_failed: bool = False) -> list[dict[str, str]]:
        """Every re-judging of this shard, whole (the driver re-scores whole episodes)."""
        for r in self._rejudge.values():
            self._expect(r.key, r.transcript)
        return [{"key": r.key, "language": r.language, "supporter": r.supporter} for r in self._rejudge.values()]

    def transcript(self, key: str) -> list[tuple[str, str]]:
        return list(self._rejudge[key].transcript)

    async def start_writer(self) -> None:
        pass

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
                  *, status: str = "ok", error: str | None = None, round: int = FINAL_ROUND, sample: int = 0) -> None:
        self.records.append(("score", key, dimension, label, raw, model, latency, status, error, round, sample))
        self._scored[key] += 1
        self._check(key)

    def add_event(self, kind: str, detail: str = "", *, endpoint: str | None = None, episode_key: str | None = None) -> None:
        self.records.append(("event", kind, detail, endpoint, episode_key))

    def take(self) -> tuple[list[tuple[Any, ...]], list[str]]:
        records, completed = self.records, self.completed
        self.records, self.completed = [], []
        return records, completed

    def _expect(self, key: str, lines: Sequence[tuple[str, str]]) -> None:
        rounds = len(_round_ends(lines)) if self.score_every_round else 0
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


def stats_record(stats: BackendStats) -> dict[str, Any]:
    return {"endpoint": stats.endpoint, "requests": stats.requests, "in_flight": stats.in_flight,
            "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "retries": stats.retries, "faults": dict(stats.faults), "latencies": stats.latencies[-LATENCIES_PER_BATCH:]}


class EpisodeWorker:
    """A Ray actor body: runs one shard with a ``Runner`` into a ``RecordSink``; ``drain()`` hands batches over.

    Created by the driver as ``ray.remote(EpisodeWorker)``; async methods share the actor's event
    loop, so ``drain`` and ``stop_admitting`` run while ``run`` is in progress.
    """

    def __init__(self, plan: RunPlan, backends: Mapping[str, Any] | None = None):
        self.plan = plan
        self.backends = backends
        self.sink: RecordSink | None = None
        self.runner: Any = None
        self.over = False
        self.error: str | None = None

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    async def run(self, shard: list[PlannedEpisode], rejudge: list[Rejudge]) -> int:
        from runs.execution.runner import Runner

        plan = self.plan
        profile = plan.profile
        judge = plan.config.judge
        self.sink = RecordSink(dimensions=len(profile.keys) * judge.samples if profile and judge else 0,  # labels per round
                               score_every_round=bool(judge and judge.score_every_round), rejudge=rejudge)
        episodes: list[tuple[PlannedEpisode, RoleCard]] = [(p, plan.cards[p.card_index]) for p in shard]
        self.runner = Runner(plan, self.sink, backends=self.backends, retry_failed=True, episodes=episodes)  # type: ignore[arg-type]
        try:
            await self.runner.run()
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.over = True
        return len(shard)

    def stop_admitting(self) -> None:
        if self.runner is not None:
            self.runner.stop_admitting()

    async def drain(self) -> Batch:
        over = self.over  # read before taking: records made before ``over`` was set are all in this batch
        if self.sink is None:
            return Batch([], [], 0, 0, [], over, self.error)
        records, completed = self.sink.take()
        runner = self.runner
        stats = [stats_record(b.stats) for b in runner.pool.all()] if runner is not None else []
        progress = runner.progress if runner is not None else RunProgress()
        return Batch(records, completed, progress.active, progress.turns, stats, over, self.error)


# -- the driver side ---------------------------------------------------------------------


def connect(address: str | None, workers: int) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://HOST:PORT``), or start a local one (``local``/``None``).

    An already initialised Ray (a test, a notebook) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise DistributedError('the ray executor needs Ray: pip install "esc-eval[ray]"') from None
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}
    if address in (None, "", "local"):
        ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, **options)
    else:
        ray.init(address=address, **options)


@dataclass
class _Slot:
    """One worker position: its current actor, the work it holds, and what it reported complete."""

    name: str
    shard: list[PlannedEpisode]
    rejudge: list[Rejudge]
    actor: Any = None
    lost: int = 0
    completed: set[str] = field(default_factory=set)


class _MergedStats:
    """Endpoint counters summed over every worker's latest report, in the shape ``LiveSource`` reads."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, dict[str, Any]]] = {}  # worker -> endpoint -> record
        self.base: dict[str, Counter[str]] = {}  # endpoint -> counts of workers that died

    def update(self, worker: str, stats: list[dict[str, Any]]) -> None:
        self.latest[worker] = {s["endpoint"]: s for s in stats}

    def retire(self, worker: str) -> None:
        """A worker died: keep its counters (not its in-flight requests), its replacement starts from zero."""
        for endpoint, s in self.latest.pop(worker, {}).items():
            base = self.base.setdefault(endpoint, Counter())
            for name in ("requests", "prompt_tokens", "completion_tokens", "retries"):
                base[name] += s[name]
            for kind, n in s["faults"].items():
                base["fault:" + kind] += n

    def all(self) -> list[Any]:
        merged: dict[str, BackendStats] = {}
        for endpoint, base in self.base.items():
            stats = merged.setdefault(endpoint, BackendStats(endpoint))
            for name in ("requests", "prompt_tokens", "completion_tokens", "retries"):
                setattr(stats, name, getattr(stats, name) + base[name])
            for kind, n in base.items():
                if kind.startswith("fault:"):
                    stats.faults[kind[6:]] += n
        for by_endpoint in self.latest.values():
            for endpoint, s in by_endpoint.items():
                stats = merged.setdefault(endpoint, BackendStats(endpoint))
                for name in ("requests", "in_flight", "prompt_tokens", "completion_tokens", "retries"):
                    setattr(stats, name, getattr(stats, name) + s[name])
                stats.faults.update(s["faults"])
                stats.latencies.extend(s["latencies"])
        return [_Endpoint(s) for s in merged.values()]

    async def aclose(self) -> None:
        pass


@dataclass
class _Endpoint:
    stats: BackendStats


class DistributedRunner:
    """Runs a plan into a store on Ray workers; same interface as ``Runner`` (``run``, ``progress``,
    ``pool``, ``stop_admitting``), so ``run_with_monitor`` shows it.

    Args:
        plan: from ``RunPlan.prepare(config)``.
        store: an open, writable ``Store``; only this process writes it.
        address: the Ray cluster (``connect``); ignored when Ray is already initialised.
        workers: number of worker actors (default ``[run] workers``).
        retry_failed: run again episodes a previous attempt marked failed.
        backends: role name -> backend, overriding the config (tests; must be picklable).
        poll_interval: seconds between ``drain`` calls to each worker.
        max_replacements: workers that may die per slot before the run gives up (its completed
            episodes stay in the store; ``--resume`` continues).
        worker_cpus: Ray CPUs each worker actor reserves.
    """

    def __init__(self, plan: RunPlan, store: Store, *, address: str | None = None, workers: int | None = None,
                 retry_failed: bool = False, progress: RunProgress | None = None,
                 backends: Mapping[str, Any] | None = None, poll_interval: float = 0.1,
                 max_replacements: int = 3, worker_cpus: float = 1.0):
        self.plan, self.store = plan, store
        self.address = address if address is not None else plan.config.run.ray_address
        self.workers = workers or plan.config.run.workers
        self.retry_failed = retry_failed
        self.progress = progress or RunProgress()
        self.backends = backends
        self.poll_interval, self.max_replacements, self.worker_cpus = poll_interval, max_replacements, worker_cpus
        self.pool = _MergedStats()
        self.slots: list[_Slot] = []
        self.records = 0
        self.driver_seconds = 0.0
        """Wall time the driver spent applying batches (its overhead per record: ``driver_seconds / records``)."""
        self._stopping = False
        self._planned: dict[str, PlannedEpisode] = {}
        self._counted: dict[str, set[str]] = {}
        """Key -> final-score dimensions counted, for episodes ended but not yet complete: a lost worker's
        episode re-run elsewhere is counted once in ``progress``. Bounded by the episodes in flight."""
        self._worker_class: Any = None

    def stop_admitting(self) -> None:
        """Let in-flight episodes finish everywhere; admit no more (first Ctrl-C)."""
        self._stopping = True
        for slot in self.slots:
            if slot.actor is not None:
                slot.actor.stop_admitting.remote()

    async def run(self) -> RunResult:
        planned = [p for p, _ in self.plan.episodes()]
        self._planned = {p.key: p for p in planned}
        self.store.plan(planned)
        statuses = self.store.statuses()
        skip = {"done", "failed"} if not self.retry_failed else {"done"}
        todo = [p for p in planned if statuses.get(p.key) not in skip]
        self.progress.planned, self.progress.skipped = len(planned), len(planned) - len(todo)
        rejudge: list[Rejudge] = []
        if self.plan.profile is not None and self.plan.config.judge is not None:
            dimensions = len(self.plan.profile.keys)
            self.progress.judge_dimensions = dimensions
            for row in self.store.unscored(self.plan.profile.keys, include_failed=self.retry_failed):
                rejudge.append(Rejudge(row["key"], row["language"], row["supporter"], tuple(self.store.transcript(row["key"]))))
            self.progress.judge_queued(dimensions * len(rejudge))
        if not todo and not rejudge:  # a finished store: no cluster to start
            await self.store.close()
            return RunResult(self.store.path, self.progress, idle=True)

        connect(self.address, self.workers)
        import ray

        worker_plan = dataclasses.replace(self.plan, config=split_limits(self.plan.config, self.workers))
        plan_ref = ray.put(worker_plan)
        self._worker_class = ray.remote(EpisodeWorker).options(num_cpus=self.worker_cpus, max_restarts=0, max_concurrency=64)
        await self.store.start_writer()
        self.store.begin_run()
        self.store.add_event("distributed", f"workers={self.workers} address={self.address or 'local'} episodes={len(todo)}")
        self.slots = [_Slot(f"w{i}", shard, judged) for i, (shard, judged) in
                      enumerate(zip(deal(todo, self.workers), deal(rejudge, self.workers)))]
        status = "interrupted"
        try:
            await asyncio.gather(*(self._drive(slot, plan_ref) for slot in self.slots))
            status = "stopped" if self._stopping else "finished"
        finally:
            for slot in self.slots:
                if slot.actor is not None:
                    ray.kill(slot.actor, no_restart=True)
                    slot.actor = None
            self.store.end_run(status)
            await self.store.close()
        self.progress.active = 0
        return RunResult(self.store.path, self.progress)

    async def _drive(self, slot: _Slot, plan_ref: Any) -> None:
        """Run ``slot``'s shard on an actor, writing its batches; on the actor's death, hand the rest to a new one."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        view = self.progress.workers.setdefault(slot.name, WorkerProgress(slot.name, assigned=len(slot.shard) + len(slot.rejudge)))
        while True:
            view.state, view.active = "starting", 0
            if self._stopping or not (slot.shard or slot.rejudge):
                view.state = "stopped" if self._stopping else "finished"
                return
            slot.actor = self._worker_class.remote(plan_ref, self.backends)
            try:
                view.node, view.pid = await slot.actor.where.remote()
                view.state = "running"
                done = slot.actor.run.remote(slot.shard, slot.rejudge)
                while True:
                    batch: Batch = await slot.actor.drain.remote()
                    self._apply(slot, view, batch)
                    if batch.over:
                        break
                    await asyncio.sleep(self.poll_interval)
                await done  # a worker's own exception (not its death) ends the run here
                view.state, view.active = "stopped" if self._stopping else "finished", 0
                ray.kill(slot.actor, no_restart=True)
                slot.actor = None
                return
            except (RayActorError, ActorUnavailableError) as exc:
                ray.kill(slot.actor, no_restart=True)
                slot.actor = None
                slot.lost += 1
                view.lost = slot.lost
                self.pool.retire(slot.name)
                slot.shard = [p for p in slot.shard if p.key not in slot.completed]
                slot.rejudge = [r for r in slot.rejudge if r.key not in slot.completed]
                self.progress.active -= view.active
                view.state, view.active = "lost", 0
                detail = (f"worker {slot.name} (pid {view.pid} on {view.node}) died: {type(exc).__name__}; "
                          f"{len(slot.shard) + len(slot.rejudge)} unfinished episodes go to a new worker")
                log.warning("%s", detail)
                self.store.add_event("worker-lost", detail)
                if slot.lost > self.max_replacements:
                    raise DistributedError(f"{slot.name}: {slot.lost} workers died in this slot; continue with --resume") from exc

    def _apply(self, slot: _Slot, view: WorkerProgress, batch: Batch) -> None:
        """Write a batch's records in order and count them; O(records)."""
        started = time.perf_counter()
        store, progress = self.store, self.progress
        for record in batch.records:
            kind = record[0]
            if kind == "turn":
                turn: TurnTaken = record[1]
                store.add_turn(turn)
                progress.turn(turn)
            elif kind == "score":
                _, key, dimension, label, raw, model, latency, status, error, round_, sample = record
                store.add_score(key, dimension, label, raw, model, latency, status=status, error=error, round=round_, sample=sample)
                counted = self._counted.setdefault(key, set())
                if round_ == FINAL_ROUND and dimension not in counted:
                    counted.add(dimension)
                    planned = self._planned.get(key)
                    progress.score(planned.supporter if planned else "", dimension, label)
            elif kind == "start":
                store.start_episode(record[1])
            elif kind == "end":
                _, key, outcome, reason, at = record
                store.end_episode(key, outcome, reason, at)
                if key not in self._counted:  # a re-run of a lost worker's episode counts once
                    self._counted[key] = set()
                    planned = self._planned.get(key)
                    progress.ended(EpisodeEnded(key, planned.language if planned else "", outcome, reason, at=at))
            elif kind == "event":
                _, kind_, detail, endpoint, episode_key = record
                store.add_event(kind_, detail, endpoint=endpoint, episode_key=episode_key)
        slot.completed.update(batch.completed)
        for key in batch.completed:
            self._counted.pop(key, None)
        self.records += len(batch.records)
        progress.active += batch.active - view.active
        view.active, view.turns = batch.active, batch.turns
        view.finished += len(batch.completed)
        view.requests = sum(s["requests"] for s in batch.stats)
        view.last_seen = time.monotonic()
        self.pool.update(slot.name, batch.stats)
        self.driver_seconds += time.perf_counter() - started
