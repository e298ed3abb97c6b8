"""The driver of a distributed run: deals shards to Ray workers, writes their batches into the store, replaces dead workers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esc_eval.agents.backends.base import BackendStats
from esc_eval.agents.messages import EpisodeEnded, TurnTaken
from esc_eval.runs.distributed.shards import deal, split_limits
from esc_eval.runs.distributed.sink import Batch, Rejudge
from esc_eval.runs.distributed.worker import EpisodeWorker
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.progress import RunProgress, WorkerProgress
from esc_eval.runs.execution.resume import resume_skips
from esc_eval.runs.execution.runner import RunResult
from esc_eval.runs.execution.spend import Spend
from esc_eval.runs.store import FINAL_ROUND, PlannedEpisode, Store, Tokens

log = logging.getLogger(__name__)


class DistributedError(RuntimeError):
    """The distributed run could not go on (Ray missing, every replacement of a worker died)."""


def connect(address: str | None, workers: int) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://HOST:PORT``), or start a local one (``local``/``None``).

    An already initialised Ray (a test, a notebook) is used as it is. ``ray.init`` replaces the process's SIGTERM
    handler with one that exits at once; the one before it (the run's ``InterruptPolicy``) is put back, so SIGTERM
    takes the run's signal path with Ray as without it.
    """
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")  # no C++ stack dump for a plain SIGTERM
    try:
        import ray
    except ImportError:
        raise DistributedError('the ray executor needs Ray: pip install "esc-eval[ray]"') from None
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}
    before = signal.getsignal(signal.SIGTERM)
    if address in (None, "", "local"):
        ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, **options)
    else:
        ray.init(address=address, **options)
    if before is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, before)


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
            for name in ("requests", "prompt_tokens", "completion_tokens", "retries", "cache_hits"):
                base[name] += s[name]
            for kind, n in s["faults"].items():
                base["fault:" + kind] += n

    def all(self) -> list[Any]:
        merged: dict[str, BackendStats] = {}
        for endpoint, base in self.base.items():
            stats = merged.setdefault(endpoint, BackendStats(endpoint))
            for name in ("requests", "prompt_tokens", "completion_tokens", "retries", "cache_hits"):
                setattr(stats, name, getattr(stats, name) + base[name])
            for kind, n in base.items():
                if kind.startswith("fault:"):
                    stats.faults[kind[6:]] += n
        for by_endpoint in self.latest.values():
            for endpoint, s in by_endpoint.items():
                stats = merged.setdefault(endpoint, BackendStats(endpoint))
                for name in ("requests", "in_flight", "prompt_tokens", "completion_tokens", "retries", "cache_hits"):
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
        self._stopping = self._quit = False
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

    def cancel_active(self) -> None:
        """The grace period after a first signal is over: each worker cancels its episodes in flight; they stay
        ``running`` in the store and ``--resume`` plays them again."""
        self.stop_admitting()
        for slot in self.slots:
            if slot.actor is not None:
                slot.actor.cancel_active.remote()

    def quit_now(self) -> None:
        """A second signal: the workers are killed at once and the run's row says ``interrupted``."""
        import ray

        self._quit = True
        self.stop_admitting()
        for slot in self.slots:
            if slot.actor is not None:
                ray.kill(slot.actor, no_restart=True)

    async def run(self) -> RunResult:
        planned = [p for p, _ in self.plan.episodes()]
        self._planned = {p.key: p for p in planned}
        self.store.plan(planned)
        statuses = self.store.statuses()
        skip = resume_skips(self.retry_failed)
        todo = [p for p in planned if statuses.get(p.key) not in skip]
        self.progress.planned, self.progress.skipped = len(planned), len(planned) - len(todo)
        self.progress.spend = Spend.of(self.plan, self._planned, store=self.store)
        rejudge: list[Rejudge] = []
        if self.plan.profile is not None and self.plan.config.judge is not None:
            dimensions = len(self.plan.profile.keys)
            self.progress.judge_dimensions = dimensions
            for row in self.store.unscored(self.plan.profile.keys, include_failed=self.retry_failed):
                rejudge.append(Rejudge(row.key, row.language, row.supporter, tuple(self.store.transcript(row.key))))
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
            self.store.end_run("interrupted" if self._quit else status)
            await self.store.close()
        self.progress.active = 0
        remaining = self.progress.planned - self.progress.skipped - self.progress.done - self.progress.failed
        return RunResult(self.store.path, self.progress, stopped=self._stopping and remaining > 0, not_started=max(remaining, 0))

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
                if self._quit:  # killed by ``quit_now``: not a lost worker
                    view.state, view.active = "stopped", 0
                    return
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
                _, key, dimension, label, raw, model, latency, status, error, round_, sample, tokens = record
                store.add_score(key, dimension, label, raw, model, latency, status=status, error=error, round=round_, sample=sample,
                                tokens=Tokens(*tokens))
                if progress.spend is not None:  # shown by the monitor; a cost limit is refused on Ray (docs/cost.md)
                    progress.spend.judged(key, Tokens(*tokens))
                counted = self._counted.setdefault(key, set())
                if round_ == FINAL_ROUND and dimension not in counted:
                    counted.add(dimension)
                    planned = self._planned.get(key)
                    if planned:
                        progress.cards.setdefault(key, f"{planned.language}:{planned.card_index}")
                    progress.score(planned.supporter if planned else "", dimension, label, key)
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
