"""The runner: plans episode keys, skips finished ones, admits at most ``concurrency`` at a time.

Episodes are created lazily as they are admitted, so a run of 100k planned episodes holds
only ``concurrency`` of them in memory. Every turn reaches the store through the runtime's
``episodes`` topic; the run ends when simulation, observers and the store writer have drained.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import platform
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from autogen_core import TypeSubscription

from agents.backends import ChatBackend, create_backend
from agents.backends.base import AuthFailed
from agents.judge.agent import JudgeAgent, Scorer, ScoreSink, score_publisher
from agents.messages import EPISODES_TOPIC, SCORES_TOPIC, TURNS_TOPIC, SamplingParams
from agents.judge.profiles import JudgeProfile, ProfileError, load_profile
from agents.seeker import SeekerAgent
from agents.supporter import SupporterAgent
from environments.behaviours import SeekerBehaviour, load_behaviour
from environments.environment import Environment, SupporterSpec
from environments.runtime import LeanRuntime, make_runtime
from environments.episode import Episode
from environments.termination import Detector, EndToken, MaxRounds, MaxTokens, Timeout
from environments.turn_policies import Alternating
from roles.cards import RoleCard
from roles.loaders import builtin_cards, load_cards
from roles.personas import RoleBreakRule, UnknownPersona, base_role_break
from roles.templates import SeekerProtocol, load_protocol
from runs.config import Config, ConfigError, EndpointConfig
from runs.execution.observers import StoreObserver
from runs.execution.progress import RunProgress
from runs.store import PlannedEpisode, Store

if TYPE_CHECKING:
    from agents.backends.openai_http import HTTPSessions

log = logging.getLogger(__name__)


def episode_key(card_index: int, card: RoleCard, supporter: str, persona: str, seed: int, repeat: int) -> str:
    """Deterministic and readable: the same plan always yields the same keys."""
    return f"{supporter}/{persona}/{card_index:05d}-{card.id}/s{seed}/r{repeat}"


def episode_seed(run_seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}|{key}".encode()).digest()[:4], "big")


def load_run_cards(config: Config) -> list[RoleCard]:
    cards = load_cards(config.cards.path, language=config.cards.language) if config.cards.path else builtin_cards(config.cards.language)
    return cards[: config.cards.limit] if config.cards.limit else cards


@dataclass
class RunPlan:
    """Everything a run needs that can be checked before anything is written."""

    config: Config
    cards: list[RoleCard]
    protocol: SeekerProtocol
    profile: JudgeProfile | None = None
    behaviours: dict[str, SeekerBehaviour] = field(default_factory=dict)
    """Persona name -> behaviour, in the config's order; episode keys use these names."""

    @classmethod
    def prepare(cls, config: Config) -> RunPlan:
        """Load cards, protocol, personas and judge profile; raises ``CardError``/``ProtocolError``/``PersonaError``/``ConfigError``."""
        cards = load_run_cards(config)
        profile = load_judge_profile(config, {c.language for c in cards}) if config.judge else None
        behaviours = load_run_behaviours(config, {c.language for c in cards})
        return cls(config, cards, load_protocol(config.seeker.protocol), profile, behaviours)

    def personas(self) -> dict[str, Any]:
        """What each persona of the run says (a YAML persona's merged spec; a plugin's class), for the record."""
        return {name: getattr(getattr(b, "persona", None), "spec", None) or type(b).__qualname__ for name, b in self.behaviours.items()}

    def fingerprint(self) -> str:
        """The config's fingerprint plus the personas: editing a persona file between a run and its resume counts."""
        text = json.dumps([self.config.fingerprint(), self.personas()], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def episodes(self) -> Iterator[tuple[PlannedEpisode, RoleCard]]:
        """The grid repeats x cards x personas x supporters, in that nesting order (supporters innermost).

        Card-major with the supporters round-robin, so any prefix of the plan (a run
        interrupted, stopped with Ctrl-C, or watched live) has every supporter on the same
        cards and personas: the partial leaderboard compares like with like. Keys do not
        depend on the order, so stores planned in another order resume as they were.
        """
        run = self.config.run
        personas = list(self.behaviours) or list(self.config.seeker.persona_names)
        ordinal = 0
        for repeat in range(run.repeats):
            for index, card in enumerate(self.cards):
                for persona in personas:
                    for supporter in self.config.supporters:
                        key = episode_key(index, card, supporter.name, persona, run.seed, repeat)
                        yield PlannedEpisode(
                            key, ordinal, index, card.id, card.language, card.category, card.source,
                            supporter.name, persona, repeat, episode_seed(run.seed, key),
                        ), card
                        ordinal += 1

    def role_break(self) -> RoleBreakRule:
        """The built-in role-break detector with ``[seeker] role_break_retries``."""
        return base_role_break(self.config.seeker.role_break_retries)

    def termination(self) -> Detector:
        run = self.config.run
        detector: Detector = MaxRounds(run.rounds)
        if run.end_token:
            detector = EndToken(run.end_token) | detector
        if run.max_episode_tokens:
            detector = detector | MaxTokens(run.max_episode_tokens)
        if run.episode_timeout:
            detector = detector | Timeout(run.episode_timeout)
        return detector


def load_run_behaviours(config: Config, languages: set[str]) -> dict[str, SeekerBehaviour]:
    """The run's personas as behaviours, each checked to have text for the cards' languages.

    Raises:
        ConfigError: a persona name is unknown (naming ``[seeker]`` field ``persona``/``personas``).
        PersonaError: a persona file or plugin is invalid (naming the file and the field).
    """
    field_name = config.seeker.persona_field
    behaviours: dict[str, SeekerBehaviour] = {}
    for given in config.seeker.persona_names:
        try:
            name, behaviour = load_behaviour(given)
        except UnknownPersona as exc:
            raise ConfigError(f"{config.path}: [seeker] field '{field_name}': {exc}") from None
        if name in behaviours:
            raise ConfigError(f"{config.path}: [seeker] field '{field_name}': {given!r} is also named {name!r}; persona names must differ")
        persona = getattr(behaviour, "persona", None)
        if persona is not None:
            persona.require(languages)
        behaviours[name] = behaviour
    return behaviours


def load_judge_profile(config: Config, languages: set[str]) -> JudgeProfile:
    """The judge's profile, checked against the run's languages and ``[judge.models]``."""
    assert config.judge is not None
    try:
        profile = load_profile(config.judge.profile)
    except ProfileError as exc:
        raise ConfigError(f"{config.path}: [judge] field 'profile': {exc}") from None
    missing = sorted(languages - set(profile.languages))
    if missing:
        raise ConfigError(f"{config.path}: [judge] field 'profile': {profile.name} has no rubric for language {', '.join(missing)}")
    unknown = sorted(set(config.judge.models) - set(profile.keys))
    if unknown:
        raise ConfigError(f"{config.path}: [judge.models]: unknown dimension {', '.join(unknown)} (known: {', '.join(profile.keys)})")
    return profile


def make_scorer(config: Config, profile: JudgeProfile, backend: ChatBackend, sinks: list[ScoreSink]) -> Scorer:
    judge = config.judge
    assert judge is not None
    return Scorer(
        profile, backend, default_model=judge.model, models=judge.models,
        params=SamplingParams(judge.max_tokens, judge.temperature or 0.0, judge.top_p),
        limit=judge.max_connections, score_every_round=judge.score_every_round, samples=judge.samples, sinks=sinks,
    )


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("esc-eval", "autogen-core", "aiohttp", "tenacity", "transformers", "torch"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def sampling(endpoint: EndpointConfig) -> SamplingParams:
    return SamplingParams(endpoint.max_tokens, endpoint.temperature, endpoint.top_p)


class BackendPool:
    """One backend per distinct endpoint (kind, url, model, key variable), shared by every role using it.

    Sharing matters for local models: the seeker and a supporter on the embedded model
    load it once and have their requests micro-batched together. HTTP backends on one
    server share its connection pool (``HTTPSessions``).
    """

    def __init__(self, overrides: Mapping[str, ChatBackend] | None = None):
        self._by_endpoint: dict[tuple[object, ...], ChatBackend] = {}
        self.overrides = dict(overrides or {})
        self._http: HTTPSessions | None = None

    def get(self, role_name: str, endpoint: EndpointConfig) -> ChatBackend:
        if role_name in self.overrides:
            return self.overrides[role_name]
        ident = (endpoint.backend, endpoint.base_url, endpoint.model, endpoint.api_key_env, tuple(sorted(endpoint.lora.items())))
        if ident not in self._by_endpoint:
            if endpoint.backend == "openai":
                from agents.backends.openai_http import HTTPSessions

                self._http = self._http or HTTPSessions()
                backend = create_backend(
                    "openai", base_url=endpoint.base_url, model=endpoint.model, api_key_env=endpoint.api_key_env,
                    max_connections=endpoint.max_connections, timeout=endpoint.timeout,
                    max_attempts=endpoint.max_attempts, max_retry_time=endpoint.max_retry_time, name=role_name, sessions=self._http,
                )
            elif endpoint.backend == "vllm":
                backend = create_backend("vllm", model=endpoint.model, lora=dict(endpoint.lora), name=role_name)
            elif endpoint.backend == "transformers" and endpoint.lora:
                from agents.backends.lora_local import LoraLocalBackend

                backend = LoraLocalBackend(endpoint.model, adapters=dict(endpoint.lora), name=role_name)
            else:
                backend = create_backend(endpoint.backend, model=endpoint.model, name=role_name)
            self._by_endpoint[ident] = backend
        return self._by_endpoint[ident]

    def all(self) -> list[ChatBackend]:
        return list({id(b): b for b in [*self._by_endpoint.values(), *self.overrides.values()]}.values())

    async def aclose(self) -> None:
        for backend in self.all():
            await backend.aclose()
        if self._http is not None:
            await self._http.aclose()


@contextmanager
def few_collections() -> Iterator[None]:
    """Python's cyclic garbage collector tuned for thousands of live episodes, for the run's duration.

    At the default thresholds (700, 10, 10) a run collects every few hundred allocations and
    rescans everything the live episodes hold: measured, a third of a run's CPU at C = 1,000
    and nearly half at C = 5,000 (docs/performance.md). Reference counting frees almost all
    of a run's garbage anyway (measured: ~0.3 objects in cycles per request), so a young
    generation of 200,000 costs no memory we could see, while each young collection rescans
    what the live episodes hold: at 50,000 those rescans were still 3 % of a run's CPU.
    Cycles (tasks, exceptions) wait a little longer.
    """
    previous = gc.get_threshold()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


RUN_GC_THRESHOLDS = (200_000, 50, 1_000)

_AUTH_FAULT = f"fault:{AuthFailed.kind}"
"""The event kind a backend reports for a 401/403 (``BackendStats.fault``)."""


@dataclass
class RunResult:
    store: Path
    progress: RunProgress
    failures: list[str] = field(default_factory=list)
    idle: bool = False
    """Nothing was left to run or score: no backend was started (``--resume`` of a finished store)."""
    auth_failure: str | None = None
    """``endpoint: HTTP 401 ...`` when an endpoint refused the credentials and the run stopped early."""

    @property
    def exit_code(self) -> int:
        return 1 if self.progress.failed or self.auth_failure else 0


class Runner:
    """Runs a plan into a store.

    Args:
        plan: from ``RunPlan.prepare(config)``.
        store: an open, writable ``Store``.
        backends: role name (``seeker``, a supporter name, ``judge``) -> backend, overriding the config (tests).
        retry_failed: run again episodes a previous attempt marked failed.
        episodes: run exactly these ``(planned, card)`` pairs instead of the whole plan (a Ray worker's
            shard, ``runs.distributed``); ``store`` may then be any object with the ``Store`` write API.
    """

    def __init__(self, plan: RunPlan, store: Store, *, backends: Mapping[str, ChatBackend] | None = None,
                 retry_failed: bool = False, progress: RunProgress | None = None,
                 episodes: list[tuple[PlannedEpisode, RoleCard]] | None = None):
        self.plan, self.store = plan, store
        self.episodes = episodes
        self.pool = BackendPool(backends)
        self.retry_failed = retry_failed
        self.progress = progress or RunProgress()
        self.auth_failure: str | None = None
        self._stopping = asyncio.Event()

    def stop_admitting(self) -> None:
        """Let in-flight episodes finish; admit no more (first Ctrl-C)."""
        self._stopping.set()

    async def run(self) -> RunResult:
        config = self.plan.config
        planned = list(self.plan.episodes()) if self.episodes is None else list(self.episodes)
        self.store.plan(p for p, _ in planned)
        statuses = self.store.statuses()
        skip = {"done", "failed"} if not self.retry_failed else {"done"}
        todo = [(p, card) for p, card in planned if statuses.get(p.key) not in skip]
        self.progress.planned, self.progress.skipped = len(planned), len(planned) - len(todo)
        rejudge = self._unscored()
        if not todo and not rejudge:  # a finished store: load no model, open no connection
            await self.store.close()
            return RunResult(self.store.path, self.progress, idle=True)

        await self.store.start_writer()
        runtime = make_runtime()
        await SeekerAgent.register_for(runtime, "seeker", {"seeker": self.pool.get("seeker", config.seeker)})
        await SupporterAgent.register_for(runtime, "supporter", {s.name: self.pool.get(s.name, s) for s in config.supporters})
        await StoreObserver.register(runtime, "store", lambda: StoreObserver(self.store, self.progress))
        for topic in (TURNS_TOPIC, EPISODES_TOPIC, SCORES_TOPIC):
            await runtime.add_subscription(TypeSubscription(topic, "store"))
        scorer = await self._judge(runtime, rejudge) if self.plan.profile else None
        for backend in self.pool.all():
            backend.stats.listener = self._backend_event
        env = Environment(
            runtime, self.plan.protocol,
            {s.name: SupporterSpec(s.name, s.system_prompt, sampling(s)) for s in config.supporters},
            seeker_params=sampling(config.seeker), policy=Alternating(opener=True), termination=self.plan.termination(),
            behaviours=self.plan.behaviours, role_break=self.plan.role_break(),
        )
        runtime.start()
        self.store.begin_run()
        status = "interrupted"
        with few_collections():
            try:
                await self._admit(env, todo)
                status = "stopped" if self._stopping.is_set() else "finished"
            finally:
                await runtime.idle()  # every EpisodeEnded delivered, so every scoring is scheduled
                if scorer is not None:
                    await scorer.drain()
                await runtime.stop_when_idle()  # every Score delivered to the store
                await self.pool.aclose()
                self.store.end_run(status)
                await self.store.close()
        return RunResult(self.store.path, self.progress, auth_failure=self.auth_failure)

    def _backend_event(self, endpoint: str, kind: str, detail: str) -> None:
        """Record a backend's fault or retry; a refused credential stops the run, as no retry can help."""
        self.store.add_event(kind, detail, endpoint=endpoint)
        if kind == _AUTH_FAULT and self.auth_failure is None:
            self.auth_failure = f"{endpoint}: {detail}"
            log.error("endpoint %s refused the credentials (%s): admitting no more episodes", endpoint, detail)
            self.stop_admitting()

    def _unscored(self) -> list[Any]:
        """Finished episodes with scores an earlier attempt left missing (and, with ``retry_failed``, failed ones).

        The one place that decides what a resumed run scores again: each row names only the
        dimensions lacking a usable score (``Store.unscored``), so labels given are never asked twice.
        """
        if self.plan.profile is None:
            return []
        return list(self.store.unscored(self.plan.profile.keys, include_failed=self.retry_failed))

    async def _judge(self, runtime: LeanRuntime, rejudge: list[Any]) -> Scorer:
        """Register the judge as an observer publishing its scores, and re-schedule the scoring of ``rejudge`` (``_unscored``)."""
        assert self.plan.profile is not None and self.plan.config.judge is not None
        scorer = make_scorer(self.plan.config, self.plan.profile, self.pool.get("judge", self.plan.config.judge), [score_publisher(runtime)])
        await JudgeAgent.register(runtime, "judge", lambda: JudgeAgent(scorer))
        await runtime.add_subscription(TypeSubscription(EPISODES_TOPIC, "judge"))
        keys, samples = self.plan.profile.keys, self.plan.config.judge.samples
        self.progress.judge_dimensions = len(keys) * samples  # progress.ended() queues this many final labels per judged episode
        for row in rejudge:
            missing = row.get("dimensions") or keys  # a Ray worker's shard names none: it re-scores whole episodes
            scorer.schedule(row["key"], row["language"], self.store.transcript(row["key"]), row["supporter"], missing)
            self.progress.judge_queued(len(missing) * samples)
        return scorer

    async def _admit(self, env: Environment, todo: list[tuple[PlannedEpisode, RoleCard]]) -> None:
        slots = asyncio.Semaphore(self.plan.config.run.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def play(planned: PlannedEpisode, card: RoleCard) -> None:
            try:
                self.store.start_episode(planned.key)
                episode = Episode(planned.key, card, planned.supporter, planned.persona, planned.seed, planned.repeat)
                await env.run(episode)
            finally:
                self.progress.active -= 1
                slots.release()

        for planned, card in todo:
            await slots.acquire()
            if self._stopping.is_set():
                slots.release()
                break
            self.progress.active += 1
            task = asyncio.create_task(play(planned, card), name=planned.key)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
