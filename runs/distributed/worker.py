"""The Ray actor body: one shard of episodes run by a ``Runner`` into a ``RecordSink``, drained in batches."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from esc_eval.agents.backends.base import BackendStats
from esc_eval.roles.cards import RoleCard
from esc_eval.runs.distributed.sink import Batch, RecordSink, Rejudge
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.store import PlannedEpisode

LATENCIES_PER_BATCH = 256
"""Latest request latencies per endpoint a worker sends with each batch (for the monitor's percentiles)."""


def stats_record(stats: BackendStats) -> dict[str, Any]:
    return {"endpoint": stats.endpoint, "requests": stats.requests, "in_flight": stats.in_flight,
            "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "retries": stats.retries, "cache_hits": stats.cache_hits, "faults": dict(stats.faults),
            "latencies": stats.latencies[-LATENCIES_PER_BATCH:]}


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
        from esc_eval.runs.execution.runner import Runner

        plan = self.plan
        profile = plan.profile
        judge = plan.config.judge
        self.sink = RecordSink(dimensions=len(profile.keys) * judge.samples if profile and judge else 0,  # labels per round
                               score_every_round=bool(judge and judge.score_every_round), rejudge=rejudge)
        episodes: list[tuple[PlannedEpisode, RoleCard]] = [(p, plan.cards[p.card_index]) for p in shard]
        self.runner = Runner(plan, self.sink, backends=self.backends, retry_failed=True, episodes=episodes)
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

    def cancel_active(self) -> None:
        """The driver's grace period is over: cancel what is in flight (left ``running`` for ``--resume``)."""
        if self.runner is not None:
            self.runner.cancel_active()

    async def drain(self) -> Batch:
        over = self.over  # read before taking: records made before ``over`` was set are all in this batch
        if self.sink is None:
            return Batch([], [], 0, 0, [], over, self.error)
        records, completed = self.sink.take()
        runner = self.runner
        stats = [stats_record(b.stats) for b in runner.pool.all()] if runner is not None else []
        progress = runner.progress if runner is not None else RunProgress()
        return Batch(records, completed, progress.active, progress.turns, stats, over, self.error)
