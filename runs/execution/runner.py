"""The runner: skips finished episodes of a plan (``esc_eval.runs.execution.plan``), admits at most ``concurrency`` at a time.

Episodes are created lazily as they are admitted, so a run of 100k planned episodes holds
only ``concurrency`` of them in memory. Every turn reaches the store through the runtime's
``episodes`` topic; the run ends when simulation, observers and the store writer have drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from esc_eval.agents.backends import ChatBackend
from esc_eval.agents.backends.base import AuthFailed
from esc_eval.agents.judge.agent import JudgeAgent, Scorer, ScoreSink, score_publisher
from esc_eval.agents.judge.profiles import JudgeProfile
from esc_eval.agents.judge.safety import SafetyAgent, SafetyJudge, safety_publisher
from esc_eval.agents.messages import EPISODES_TOPIC, SAFETY_TOPIC, SCORES_TOPIC, TURNS_TOPIC, SamplingParams
from esc_eval.environments.environment import Environment
from esc_eval.environments.episode import Episode
from esc_eval.environments.runtime import LeanRuntime, make_runtime
from esc_eval.environments.stage import Observer, SeekerSeat, SupporterSeat, assemble
from esc_eval.roles.cards import RoleCard
from esc_eval.runs.config import Config, EndpointConfig
from esc_eval.runs.execution.observers import StoreObserver
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.pool import BackendPool
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.execution.result import RunResult
from esc_eval.runs.execution.resume import resume_skips
from esc_eval.runs.execution.spend import Spend
from esc_eval.runs.garbage import few_collections
from esc_eval.runs.pricing import usd_text
from esc_eval.runs.store import PlannedEpisode, Store, StoreWriteError
from esc_eval.runs.store import safety as safety_records
from esc_eval.runs.store.recorder import RunRecorder
from esc_eval.runs.store.records import Unscored

log = logging.getLogger(__name__)


def make_scorer(config: Config, profile: JudgeProfile, backend: ChatBackend, sinks: list[ScoreSink]) -> Scorer:
    judge = config.judge
    assert judge is not None
    return Scorer(
        profile, backend, default_model=judge.model, models=judge.models,
        params=SamplingParams(judge.max_tokens, judge.temperature or 0.0, judge.top_p),
        limit=judge.max_connections, score_every_round=judge.score_every_round, samples=judge.samples, sinks=sinks,
    )


def sampling(endpoint: EndpointConfig) -> SamplingParams:
    return SamplingParams(endpoint.max_tokens, endpoint.temperature, endpoint.top_p)


STALL_SECONDS = 60.0
"""A cost-limited run waiting for open episodes to settle stops waiting for them when no episode plays and nothing
is paid for this long (a judgement that never comes, a bug's: otherwise the run would wait forever)."""

_AUTH_FAULT = f"fault:{AuthFailed.kind}"
"""The event kind a backend reports for a 401/403 (``BackendStats.fault``)."""


class Runner:
    """Runs a plan into a store.

    Args:
        plan: from ``RunPlan.prepare(config)``.
        store: an open, writable ``Store`` (any ``RunRecorder``: a Ray worker's ``RecordSink``).
        backends: role name (``seeker``, a supporter name, ``judge``) -> backend, overriding the config (tests).
        retry_failed: run again episodes a previous attempt marked failed.
        episodes: run exactly these ``(planned, card)`` pairs instead of the whole plan (a Ray worker's
            shard, ``esc_eval.runs.distributed``).
    """

    def __init__(self, plan: RunPlan, store: RunRecorder, *, backends: Mapping[str, ChatBackend] | None = None,
                 retry_failed: bool = False, progress: RunProgress | None = None,
                 episodes: list[tuple[PlannedEpisode, RoleCard]] | None = None):
        self.plan, self.store = plan, store
        self.episodes = episodes
        self.pool = BackendPool(backends, cache=(plan.config.run.cache, plan.config.run.cache_mode))  # Ray workers open it on their host
        self.retry_failed = retry_failed
        self.progress = progress or RunProgress()
        self.auth_failure: str | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = self._quit = False
        self._judges: list[Scorer | SafetyJudge] = []
        self._cost_limited = False

    def stop_admitting(self) -> None:
        """Let in-flight episodes finish; admit no more (a first signal, a refused key, a failed store write)."""
        self._stopping.set()

    def cancel_active(self) -> None:
        """Admit no more and cancel the episodes and scorings in flight: they stay unfinished in the store for ``--resume``."""
        self.stop_admitting()
        self._cancelled = True
        for task in list(self._tasks):
            task.cancel()
        for judge in self._judges:
            judge.cancel()

    def quit_now(self) -> None:
        """End at once (a second signal): everything in flight is cancelled and the run's row says ``interrupted``."""
        self._quit = True
        self.cancel_active()

    async def run(self) -> RunResult:
        config = self.plan.config
        planned = list(self.plan.episodes()) if self.episodes is None else list(self.episodes)
        self.store.plan(p for p, _ in planned)
        statuses = self.store.statuses()
        skip = resume_skips(self.retry_failed)
        todo = [(p, card) for p, card in planned if statuses.get(p.key) not in skip]
        self.progress.planned, self.progress.skipped = len(planned), len(planned) - len(todo)
        self.progress.cards.update((e.key, f"{e.language}:{e.card_index}") for e, _ in planned)
        self.progress.spend = Spend.of(self.plan, {p.key: p for p, _ in planned}, ended=self.progress.skipped,
                                       store=self.store if isinstance(self.store, Store) else None)
        rejudge = self._unscored()
        unsafe = self._unjudged_safety()
        if not todo and not rejudge and not unsafe:  # a finished store: load no model, open no connection
            await self.store.close()
            return RunResult(self.store.path, self.progress, idle=True)

        self.store.on_write_error = self._write_failed
        await self.store.start_writer()
        runtime = make_runtime()
        seekers = self.plan.seeker_plans()
        seeker_seats = {s.role: SeekerSeat(self.pool.get(s.role, s.section), s.protocol, sampling(s.section), self.plan.role_break(s.section))
                        for s in seekers}
        supporter_seats = {s.name: SupporterSeat(self.pool.get(s.name, s), s.system_prompt, sampling(s)) for s in config.supporters}
        observers = {"store": Observer(StoreObserver, (TURNS_TOPIC, EPISODES_TOPIC, SCORES_TOPIC, SAFETY_TOPIC),
                                       partial(StoreObserver, self.store, self.progress))}
        scorer = self._scorer(runtime) if self.plan.profile else None
        if scorer is not None:
            observers["judge"] = Observer(JudgeAgent, (EPISODES_TOPIC,), partial(JudgeAgent, scorer))
        safety = self._safety_judge(runtime) if self.plan.safety else None
        if safety is not None:
            observers["safety"] = Observer(SafetyAgent, (EPISODES_TOPIC,), partial(SafetyAgent, safety))
        stage = await assemble(  # one environment per seeker: each asks its own seeker agent, with its protocol and decoding
            seeker_seats, supporter_seats, observers=observers, policy=self.plan.turn_policy(), termination=self.plan.termination(),
            behaviours=self.plan.behaviours, runtime=runtime,
        )
        envs = {s.label: stage.environments[s.role] for s in seekers}
        self._judges = [judge for judge in (scorer, safety) if judge is not None]
        if scorer is not None:
            self._rejudge(scorer, rejudge)
        if safety is not None:
            for row in unsafe:
                safety.schedule(row["key"], row["language"], self.store.transcript(row["key"]), row["supporter"], row["state"], row["samples"])
        for backend in self.pool.all():
            backend.stats.listener = self._backend_event
        self.store.set_meta(backends=self.pool.kinds)  # what ``auto`` chose, per role: numbers depend on the engine
        self.store.begin_run()
        status = "interrupted"
        write_failure: str | None = None
        with few_collections():
            try:
                await self._admit(envs, todo)
                status = "stopped" if self._stopping.is_set() else "finished"
            finally:
                await runtime.idle()  # every EpisodeEnded delivered, so every scoring is scheduled
                for judge in (scorer, safety):
                    if judge is not None and not self._cancelled:
                        await judge.drain()
                await stage.close()  # every Score delivered to the store
                await self.pool.aclose()
                self.store.end_run("interrupted" if self._quit else status)
                try:
                    await self.store.close()
                except StoreWriteError as exc:
                    write_failure = str(exc)
        remaining = self.progress.planned - self.progress.skipped - self.progress.done - self.progress.failed
        stopped = self._stopping.is_set() and remaining > 0
        return RunResult(self.store.path, self.progress, auth_failure=self.auth_failure, write_failure=write_failure,
                         stopped=stopped, not_started=max(remaining, 0),
                         cost_limited=self._cost_limit_message() if stopped and self._cost_limited else None)

    def _cost_limit_message(self) -> str:
        """The issue's words for a run the cost limit stopped, with what the store's attempts spent in all."""
        assert self.progress.spend is not None and self.plan.config.run.cost_limit is not None
        return (f"cost limit reached: {usd_text(self.progress.spend.total)} of {usd_text(self.plan.config.run.cost_limit)}; "
                "continue with --resume (raise --cost-limit)")

    def _write_failed(self, error: BaseException) -> None:
        """A store write failed (a full disk): nothing more can be kept, so the run stops now (``Store.on_write_error``)."""
        log.error("%s: a write failed (%s): stopping the run", self.store.path, error)
        self.cancel_active()

    def _backend_event(self, endpoint: str, kind: str, detail: str) -> None:
        """Record a backend's fault or retry; a refused credential stops the run, as no retry can help."""
        self.store.add_event(kind, detail, endpoint=endpoint)
        if kind == _AUTH_FAULT and self.auth_failure is None:
            self.auth_failure = f"{endpoint}: {detail}"
            log.error("endpoint %s refused the credentials (%s): admitting no more episodes", endpoint, detail)
            self.stop_admitting()

    def _unscored(self) -> list[Unscored]:
        """Finished episodes with scores an earlier attempt left missing (and, with ``retry_failed``, failed ones).

        The one place that decides what a resumed run scores again: each row names only the
        dimensions lacking a usable score (``Store.unscored``), so labels given are never asked twice.
        """
        if self.plan.profile is None:
            return []
        return list(self.store.unscored(self.plan.profile.keys, include_failed=self.retry_failed))

    def _unjudged_safety(self) -> list[Any]:
        """Finished episodes whose safety judgements an earlier attempt left missing (with ``retry_failed``, failed too)."""
        if self.plan.safety is None:
            return []
        return safety_records.unjudged(self._safety_store(), self.plan.safety.section.samples, include_failed=self.retry_failed)

    def _safety_store(self) -> Store:
        """The run's ``Store``: only it has a safety table (a Ray config with a safety judge is refused)."""
        assert isinstance(self.store, Store), "a safety judge runs with the local executor only"
        return self.store

    def _safety_judge(self, runtime: LeanRuntime) -> SafetyJudge:
        """The safety judge, publishing on ``runtime``; its backend is shared with any role on the same endpoint."""
        assert self.plan.safety is not None
        plan = self.plan.safety
        endpoint = plan.endpoint
        return SafetyJudge(plan.rubric, self.pool.get("safety", endpoint), model=endpoint.model,
                           params=SamplingParams(endpoint.max_tokens, endpoint.temperature or 0.0, endpoint.top_p),
                           samples=plan.section.samples, limit=endpoint.max_connections, sinks=[safety_publisher(runtime)])

    def _scorer(self, runtime: LeanRuntime) -> Scorer:
        """The judge's scorer, publishing its scores on ``runtime`` (the judge observer wraps it)."""
        assert self.plan.profile is not None and self.plan.config.judge is not None
        return make_scorer(self.plan.config, self.plan.profile, self.pool.get("judge", self.plan.config.judge), [score_publisher(runtime)])

    def _rejudge(self, scorer: Scorer, rejudge: list[Unscored]) -> None:
        """Schedule the scoring of ``rejudge`` (``_unscored``) and count the labels it will give."""
        assert self.plan.profile is not None and self.plan.config.judge is not None
        keys, samples = self.plan.profile.keys, self.plan.config.judge.samples
        self.progress.judge_dimensions = len(keys) * samples  # progress.ended() queues this many final labels per judged episode
        for row in rejudge:
            missing = row.dimensions or keys  # a Ray worker's shard names none: it re-scores whole episodes
            scorer.schedule(row.key, row.language, self.store.transcript(row.key), row.supporter, missing)
            self.progress.judge_queued(len(missing) * samples)

    async def _within_budget(self) -> None:
        """Wait until one more episode fits under the cost limit, or stop admitting when none can (docs/cost.md).

        While episodes are in flight or awaiting the judge, each one settling makes the expected cost of an
        episode (their mean) sharper, so admission waits for it; with none open the limit is reached.
        """
        limit, spend = self.plan.config.run.cost_limit, self.progress.spend
        if limit is None or spend is None:
            return
        settled = asyncio.Event()
        spend.on_settle = settled.set
        while not self._stopping.is_set() and not spend.admits(limit):
            if not spend.open:
                log.warning("cost limit: %s spent, %s expected an episode, of %s: admitting no more episodes",
                            usd_text(spend.total), usd_text(spend.expected), usd_text(limit))
                self._cost_limited = True
                self.stop_admitting()
                return
            settled.clear()
            paid = spend.spent
            waits = [asyncio.ensure_future(settled.wait()), asyncio.ensure_future(self._stopping.wait())]
            done, _ = await asyncio.wait(waits, timeout=STALL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            if not done and not self._tasks and spend.spent == paid:  # nothing plays, nothing is paid: what is open never settles
                log.warning("cost limit: %d episodes never settled (no judgement came for %.0f s): admission stops waiting for them",
                            spend.open, STALL_SECONDS)
                spend.drop_open()

    async def _admit(self, envs: Mapping[str, Environment], todo: list[tuple[PlannedEpisode, RoleCard]]) -> None:
        """Play ``todo`` at most ``concurrency`` at a time, each in its seeker's environment (``envs``: seeker label -> it)."""
        slots = asyncio.Semaphore(self.plan.config.run.concurrency)
        tasks = self._tasks

        async def play(planned: PlannedEpisode, card: RoleCard) -> None:
            self.store.start_episode(planned.key)
            if self.plan.safety is not None:  # a Ray worker's sink has no safety table (and runs no safety judge)
                safety_records.forget(self._safety_store(), planned.key)
            episode = Episode(planned.key, card, planned.supporter, planned.persona, planned.seed, planned.repeat)
            await envs[planned.seeker].run(episode)

        def ended(task: asyncio.Task[None]) -> None:  # here, not in play: a task cancelled before it ran must free its slot too
            tasks.discard(task)
            self.progress.active -= 1
            slots.release()
            if self.progress.spend is not None and (task.cancelled() or task.exception() is not None):
                self.progress.spend.drop(task.get_name())  # it will never end: admission must not wait for it

        for planned, card in todo:
            await slots.acquire()
            await self._within_budget()
            if self._stopping.is_set():
                slots.release()
                break
            if self.progress.spend is not None:
                self.progress.spend.admit(planned.key)
            self.progress.active += 1
            task = asyncio.create_task(play(planned, card), name=planned.key)
            tasks.add(task)
            task.add_done_callback(ended)
        if tasks:  # a cancelled episode (cancel_active) stays ``running`` in the store: --resume plays it again
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    raise outcome
