"""One runtime with its agents, observers and environments: what the runner, the tests and the docs play episodes on.

``assemble`` makes the runtime (``make_runtime``), registers the ``seeker`` agent type over the seeker
backends and the ``supporter`` type over the supporters', registers each ``Observer`` (an agent
subscribed to topics: the store, the judge, a test's recorder), builds one ``Environment`` per seeker and
starts the runtime. Doing this in one place keeps the addressing the environment relies on
(``AgentId("seeker", seeker key)``, ``AgentId("supporter", supporter name)``) in one place too.

Example::

    stage = await assemble({"seeker": seeker_backend}, {"sup": supporter_backend},
                           behaviours=dict([load_behaviour("guarded")]), termination=MaxRounds(5))
    episode = await stage.environment.reset(card, "guarded", seed=7)
    while not (await stage.environment.step(episode)).done:
        ...
    await stage.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autogen_core import BaseAgent, TypeSubscription

from esc_eval.agents.backends.base import ChatBackend
from esc_eval.agents.messages import EPISODES_TOPIC, TURNS_TOPIC, SamplingParams
from esc_eval.agents.seeker import SeekerAgent
from esc_eval.agents.supporter import SupporterAgent
from esc_eval.environments.behaviours import SeekerBehaviour
from esc_eval.environments.environment import Environment, SupporterSpec
from esc_eval.environments.runtime import LeanRuntime, make_runtime
from esc_eval.environments.termination import Detector
from esc_eval.environments.turn_policies import TurnPolicy
from esc_eval.roles.personas import RoleBreakRule
from esc_eval.roles.templates import SeekerProtocol, load_protocol


@dataclass(frozen=True)
class SeekerSeat:
    """One seeker model of a stage: its backend, the protocol it plays with, its decoding and role-break rule."""

    backend: ChatBackend
    protocol: SeekerProtocol | None = None
    """``None``: ``assemble``'s ``protocol``."""
    params: SamplingParams = field(default_factory=SamplingParams)
    role_break: RoleBreakRule | None = None


@dataclass(frozen=True)
class SupporterSeat:
    """One supporter under test: its backend, system prompt (``None``: the protocol's) and decoding."""

    backend: ChatBackend
    system_prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True)
class Observer:
    """An agent type that listens to topics (``turns``, ``episodes``, ``scores``); the environment never waits for it.

    ``factory`` makes the instance (default: ``agent()``).
    """

    agent: type[BaseAgent]
    topics: tuple[str, ...] = (TURNS_TOPIC, EPISODES_TOPIC)
    factory: Callable[[], BaseAgent] | None = None


@dataclass
class Stage:
    """A started runtime and its environments, one per seeker key."""

    runtime: LeanRuntime
    environments: dict[str, Environment]

    @property
    def environment(self) -> Environment:
        """The environment of a one-seeker stage."""
        if len(self.environments) != 1:
            raise ValueError(f"this stage has {len(self.environments)} seekers: pick one of stage.environments ({', '.join(self.environments)})")
        return next(iter(self.environments.values()))

    async def close(self) -> None:
        """Wait for every published message to be delivered, then stop the runtime (backends stay open: their owner closes them)."""
        await self.runtime.stop_when_idle()

    async def __aenter__(self) -> Stage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def assemble(
    seekers: Mapping[str, ChatBackend | SeekerSeat],
    supporters: Mapping[str, ChatBackend | SupporterSeat],
    *,
    protocol: SeekerProtocol | None = None,
    observers: Mapping[str, Observer] | None = None,
    policy: TurnPolicy | None = None,
    termination: Detector | None = None,
    behaviours: Mapping[str, SeekerBehaviour] | None = None,
    runtime: LeanRuntime | None = None,
) -> Stage:
    """Register the agents and observers on a runtime, build one environment per seeker, start the runtime.

    Args:
        seekers: seeker key -> its backend or ``SeekerSeat`` (``AgentId("seeker", key)``); usually ``{"seeker": ...}``.
        supporters: supporter name (``Episode.supporter``) -> its backend or ``SupporterSeat``.
        protocol: what each side is told, for seekers without their own (default: ``load_protocol("default")``).
        observers: agent type name -> ``Observer``, registered before the runtime starts.
        policy, termination: who speaks next and when to stop (default: ``Alternating()`` and ``MaxRounds(5)``, ESC-Eval's).
        behaviours: persona name -> ``SeekerBehaviour`` (``load_behaviour``); default: only ``default``, playing the protocol as is.
        runtime: a runtime made with ``make_runtime`` (when an observer needs it before it is registered, as the judge's
            score publisher does); default: a new one.
    """
    runtime = runtime or make_runtime()
    default_protocol = protocol or load_protocol("default")
    seats = {key: seat if isinstance(seat, SeekerSeat) else SeekerSeat(seat) for key, seat in seekers.items()}
    chairs = {name: seat if isinstance(seat, SupporterSeat) else SupporterSeat(seat) for name, seat in supporters.items()}
    await SeekerAgent.register_for(runtime, "seeker", {key: seat.backend for key, seat in seats.items()})
    await SupporterAgent.register_for(runtime, "supporter", {name: seat.backend for name, seat in chairs.items()})
    for name, observer in (observers or {}).items():
        await observer.agent.register(runtime, name, observer.factory or observer.agent)
        for topic in observer.topics:
            await runtime.add_subscription(TypeSubscription(topic, name))
    specs = {name: SupporterSpec(name, seat.system_prompt, seat.params) for name, seat in chairs.items()}
    limits: dict[str, Any] = {name: value for name, value in (("policy", policy), ("termination", termination)) if value is not None}
    environments = {
        key: Environment(runtime, seat.protocol or default_protocol, specs, seeker_key=key, seeker_params=seat.params,
                         behaviours=behaviours, role_break=seat.role_break, **limits)
        for key, seat in seats.items()
    }
    runtime.start()
    return Stage(runtime, environments)


__all__ = ["Observer", "SeekerSeat", "Stage", "SupporterSeat", "assemble"]
