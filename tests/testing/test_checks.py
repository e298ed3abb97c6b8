"""The plugin contract checks: every built-in passes, and each broken plugin fails with a message naming its breach."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from esc_eval.agents.backends import BACKENDS, BackendStats
from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams
from esc_eval.environments.behaviours import NEUTRAL, load_behaviour
from esc_eval.environments.episode import Episode, Outcome, Role, Turn
from esc_eval.environments.termination import MaxRounds, MaxTokens, Timeout, end_token
from esc_eval.environments.turn_policies import Alternating
from esc_eval.roles.personas import builtin_personas
from esc_eval.runs.config import EndpointConfig
from esc_eval.testing import ContractError, ScriptedBackend, check_backend, check_detector, check_persona, check_turn_policy

# -- detectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", [MaxRounds(2), MaxTokens(30), Timeout(60), end_token(), end_token(role=""), MaxRounds(3) | end_token(),
                                      MaxRounds(1) & MaxTokens(5)], ids=repr)
def test_the_built_in_detectors_pass(detector: Any) -> None:
    check_detector(detector)


class Shouting:
    def check(self, episode: Episode) -> Any:
        return "STOP" if episode.turns else None


class GivesUp:
    def check(self, episode: Episode) -> Outcome | None:
        return Outcome.failed("bored") if episode.rounds >= 1 else None


class Reasonless:
    def check(self, episode: Episode) -> Outcome | None:
        return Outcome.truncated(" ") if episode.rounds >= 2 else None


class CountsCalls:
    """Fires on every second call: hidden state."""

    def __init__(self) -> None:
        self.calls = 0

    def check(self, episode: Episode) -> Outcome | None:
        self.calls += 1
        return Outcome.truncated("second call") if self.calls % 2 == 0 else None


class Scribbles:
    def check(self, episode: Episode) -> Outcome | None:
        episode.state["seen"] = True
        return None


class LastOnly:
    def check(self, episode: Episode) -> Outcome | None:
        return Outcome.terminated("bye") if "bye" in episode.turns[-1].text.lower() else None


class Awaits:
    async def check(self, episode: Episode) -> Outcome | None:
        return None


class Checkless:
    def done(self, episode: Episode) -> Outcome | None:
        return None


@pytest.mark.parametrize(("detector", "message"), [
    (Shouting(), "detector Shouting: check() returned str 'STOP' on an episode of 1 turns (opener); expected an Outcome or None"),
    (GivesUp(), "detector GivesUp: check() returned a failed outcome on an episode of 3 turns (opener, seeker, supporter); "
                "expected Outcome.terminated(...) or Outcome.truncated(...)"),
    (Reasonless(), "detector Reasonless: check() returned an outcome without a reason"),
    (CountsCalls(), "detector CountsCalls: check() gave None then Outcome.truncated('second call') on the same empty episode: "
                    "it must be a function of the episode (no hidden state)"),
    (Scribbles(), "detector Scribbles: check() changed an empty episode (its turns, state or outcome); it may only read the episode"),
    (LastOnly(), "detector LastOnly: check() raised IndexError: list index out of range on an empty episode"),
    (Awaits(), "detector Awaits: check() is async; esc-eval calls it synchronously after every turn"),
    (Checkless(), "detector Checkless: has no check() method"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else "")
def test_broken_detectors_fail_naming_the_breach(detector: object, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_detector(detector)
    assert str(caught.value).startswith(message), str(caught.value)


# -- turn policies --------------------------------------------------------------------------------


def test_the_built_in_turn_policy_passes_with_and_without_the_opener() -> None:
    check_turn_policy(Alternating())
    check_turn_policy(Alternating(opener=False))


@dataclass
class TextRoles:
    opener: bool = True

    def next_speaker(self, episode: Episode) -> Any:
        return "seeker"


@dataclass
class SeekerOnly:
    opener: bool = False

    def next_speaker(self, episode: Episode) -> Role | None:
        return Role.SEEKER


@dataclass
class Silent:
    opener: bool = True

    def next_speaker(self, episode: Episode) -> Role | None:
        return None


class Flips:
    opener = True

    def __init__(self) -> None:
        self.turns = itertools.cycle([Role.SEEKER, Role.SUPPORTER])

    def next_speaker(self, episode: Episode) -> Role | None:
        return next(self.turns)


class OpenerAsNumber:
    opener = 1

    def next_speaker(self, episode: Episode) -> Role | None:
        return Role.SEEKER


class NoOpener:
    def next_speaker(self, episode: Episode) -> Role | None:
        return Role.SEEKER


class AsyncPolicy:
    opener = True

    async def next_speaker(self, episode: Episode) -> Role | None:
        return Role.SEEKER


@pytest.mark.parametrize(("policy", "message"), [
    (TextRoles(), "turn policy TextRoles: next_speaker() returned str 'seeker' on an empty episode; expected a Role or None; return Role.SEEKER"),
    (SeekerOnly(), "turn policy SeekerOnly: the supporter never spoke in 24 turns of a new episode"),
    (Silent(), "turn policy Silent: next_speaker() returned None on a new episode: the conversation would end before anyone spoke"),
    (Flips(), "turn policy Flips: next_speaker() gave <Role.SEEKER: 'seeker'> then <Role.SUPPORTER: 'supporter'> on the same empty episode"),
    (OpenerAsNumber(), "turn policy OpenerAsNumber: opener must be a bool (whether the supporter's fixed greeting opens the episode), got int 1"),
    (NoOpener(), "turn policy NoOpener: opener must be a bool"),
    (AsyncPolicy(), "turn policy AsyncPolicy: next_speaker() is async"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else "")
def test_broken_turn_policies_fail_naming_the_breach(policy: object, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_turn_policy(policy)
    assert str(caught.value).startswith(message), str(caught.value)


# -- personas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", builtin_personas())
def test_every_built_in_persona_passes(name: str) -> None:
    check_persona(load_behaviour(name)[1])


def test_the_neutral_behaviour_passes() -> None:
    check_persona(NEUTRAL)


class Persona:
    """A well-behaved base the broken ones below change one method of."""

    def directives(self, episode: Episode) -> str:
        return f"Round {episode.state.get('replies', 0) + 1}."

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        if turn.role is Role.SEEKER:
            episode.state["replies"] = episode.state.get("replies", 0) + 1

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        return Outcome.terminated("done talking") if episode.state.get("replies", 0) >= 4 else None


class SharedCounter(Persona):
    """Counts replies on itself, so two episodes played at once disturb each other."""

    def __init__(self) -> None:
        self.replies = 0

    def directives(self, episode: Episode) -> str:
        return f"Round {self.replies + 1}."

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        if turn.role is Role.SEEKER:
            self.replies += 1


class NoDirectives(Persona):
    def directives(self, episode: Episode) -> Any:
        return None


class ReturnsFromOnTurn(Persona):
    def on_turn(self, episode: Episode, turn: Turn) -> Any:
        super().on_turn(episode, turn)
        return episode.state


class SetInState(Persona):
    def on_turn(self, episode: Episode, turn: Turn) -> None:
        episode.state.setdefault("roles", set()).add(turn.role.value)


class Truncates(Persona):
    def wants_to_end(self, episode: Episode) -> Outcome | None:
        return Outcome.truncated("tired") if episode.state.get("replies", 0) >= 2 else None


class EnglishOnly(Persona):
    def directives(self, episode: Episode) -> str:
        return episode.card.profile.split("Problem:")[1]


class NeverEnds:
    def directives(self, episode: Episode) -> str:
        return ""

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        return None


class BadRoleBreak(Persona):
    role_break = "stay in role"


@pytest.mark.parametrize(("persona", "message"), [
    (SharedCounter(), "persona SharedCounter: the same en episode played again beside another one went differently at round 1 directives: "
                      "'Round 1.' then 'Round 7.'; keep per-episode state in episode.state"),
    (NoDirectives(), "persona NoDirectives: directives() returned NoneType None on an episode of 1 turns (opener); expected text"),
    (ReturnsFromOnTurn(), "persona ReturnsFromOnTurn: on_turn() returned dict {}; it updates episode.state and returns None"),
    (SetInState(), "persona SetInState: episode.state is not JSON-able after on_turn() (Object of type set is not JSON serializable)"),
    (Truncates(), "persona Truncates: wants_to_end() returned a truncated outcome on an episode of 4 turns (opener, seeker, supporter, seeker); "
                  "expected Outcome.terminated(...)"),
    (EnglishOnly(), "persona EnglishOnly: directives() raised IndexError: list index out of range on an episode of 1 turns (opener)"),
    (NeverEnds(), "persona NeverEnds: has no wants_to_end() method"),
    (BadRoleBreak(), "persona BadRoleBreak: role_break must be an esc_eval.roles.personas.RoleBreakRule or absent, got str 'stay in role'"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else "")
def test_broken_personas_fail_naming_the_breach(persona: object, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_persona(persona)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_persona_for_one_language_is_checked_in_that_language() -> None:
    check_persona(EnglishOnly(), languages=("en",))
    check_persona(Persona())


# -- backends -------------------------------------------------------------------------------------


async def test_the_scripted_backend_and_the_openai_factory_pass(fake_server: Any) -> None:
    await check_backend(ScriptedBackend())
    server = await fake_server()
    endpoint = EndpointConfig(base_url=server.base_url, model="m", max_attempts=1)
    closed = EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m", max_attempts=1)
    await check_backend(BACKENDS.get("openai"), endpoint=endpoint, failing=closed)
    assert len(server.requests) == 5  # one request, then four at once


class Base(ScriptedBackend):
    """A working backend the broken ones below change one thing of."""


class ReturnsText(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Any:
        return "hello"


class Uncounted(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        return Completion("hello", 3, 1, 0.01, "m")


class Blank(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        completion = Completion("  ", 3, 0, 0.01, "m")
        self.stats.done(completion)
        return completion


class NegativeTokens(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        completion = Completion("hi", -1, 1, 0.01, "m")
        self.stats.done(completion)
        return completion


class UnknownUsage(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        completion = Completion("hi", 1, 1, 0.01, "m", usage="guessed")
        self.stats.done(completion)
        return completion


class Blocking(Base):
    def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Any:
        return Completion("hi", 1, 1, 0.0, "m")


class NoModelKeyword(Base):
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:  # type: ignore[override]
        return await super().complete(messages, params)


class OneAtATime(Base):
    """Breaks when a second request arrives while one is in flight."""

    busy = False

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        if self.busy:
            raise RuntimeError("busy")
        self.busy = True
        try:
            await asyncio.sleep(0.01)
            return await super().complete(messages, params, model=model)
        finally:
            self.busy = False


class Statless:
    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        return Completion("hi", 1, 1, 0.0, "m")

    async def aclose(self) -> None:
        return None


class Unclosable(Base):
    aclose = None  # type: ignore[assignment]


class ClosesWithAValue(Base):
    async def aclose(self) -> Any:
        return True


@pytest.mark.parametrize(("backend", "message"), [
    (ReturnsText(), "backend ReturnsText: complete() returned str 'hello'; expected an esc_eval.agents.messages.Completion"),
    (Uncounted(), "backend Uncounted: stats.requests went from 0 to 0 over one completion; call stats.done(completion)"),
    (Blank(), "backend Blank: complete() returned empty text '  '; an empty reply is a fault: raise EmptyReply"),
    (NegativeTokens(), "backend NegativeTokens: Completion.prompt_tokens must be a count (an int, 0 or more), got int -1"),
    (UnknownUsage(), "backend UnknownUsage: Completion.usage must say where the token counts come from (reported, counted, estimated),"
                     " got str 'guessed'"),
    (Blocking(), "backend Blocking: complete() must be an async method (async def); esc-eval awaits it"),
    (NoModelKeyword(), "backend NoModelKeyword: complete() must take (messages, params, *, model=None)"),
    (OneAtATime(), "backend OneAtATime: 4 concurrent complete() calls raised RuntimeError: busy; failures must be BackendError subclasses"),
    (Statless(), "backend Statless: stats must be a BackendStats (the monitor and the store read its counters), got NoneType None"),
    (Unclosable(), "backend Unclosable: has no aclose() method"),
    (ClosesWithAValue(), "backend ClosesWithAValue: aclose() returned bool True"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else "")
async def test_broken_backends_fail_naming_the_breach(backend: object, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        await check_backend(backend)
    assert str(caught.value).startswith(message), str(caught.value)


def raw_failure(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    raise ConnectionResetError("peer went away")


def typed_failure(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    raise ServerError("500 from upstream")


async def test_a_failing_backend_must_raise_a_typed_error() -> None:
    await check_backend(ScriptedBackend(), failing=ScriptedBackend(typed_failure))
    with pytest.raises(ContractError, match=r"^backend ScriptedBackend: the failing backend's complete\(\) raised ConnectionResetError: "
                                            r"peer went away; failures must be BackendError subclasses"):
        await check_backend(ScriptedBackend(), failing=ScriptedBackend(raw_failure))
    with pytest.raises(ContractError, match=r"the failing backend's complete\(\) returned Completion .* instead of raising a BackendError"):
        await check_backend(ScriptedBackend(), failing=ScriptedBackend())


def no_shared(endpoint: Any, *, name: str) -> ScriptedBackend:
    return ScriptedBackend(name=name)


def makes_text(endpoint: Any, *, name: str, shared: Any) -> Any:
    return "a backend"


def picky(endpoint: Any, *, name: str, shared: Any, tone: str = "warm") -> ScriptedBackend:
    if tone not in ("warm", "cool"):
        raise ValueError(f"option 'tone' must be warm or cool, got {tone!r}")
    return ScriptedBackend(lambda messages, params, model: f"a {tone} reply", name=name)


async def test_factories_are_called_as_the_pool_calls_them_with_their_options() -> None:
    endpoint = EndpointConfig(backend="picky", model="m", options={"tone": "cool"})
    await check_backend(picky, endpoint=endpoint)
    with pytest.raises(ContractError, match=r"^backend factory picky: raised ValueError: option 'tone' must be warm or cool, got 'hot'"):
        await check_backend(picky, endpoint=EndpointConfig(options={"tone": "hot"}))
    with pytest.raises(ContractError, match=r"^backend factory picky: must take \(endpoint, \*, name, shared, \*\*its options\), "
                                            r"as BACKENDS calls it: got an unexpected keyword argument 'volume'"):
        await check_backend(picky, endpoint=EndpointConfig(options={"volume": 3}))
    with pytest.raises(ContractError, match=r"^backend factory no_shared: must take .*'shared'"):
        await check_backend(no_shared, endpoint=EndpointConfig())
    with pytest.raises(ContractError, match=r"^backend factory makes_text: returned str 'a backend', not a backend"):
        await check_backend(makes_text, endpoint=EndpointConfig())
    with pytest.raises(ContractError, match=r"^backend factory picky: a factory needs an endpoint"):
        await check_backend(picky)


def test_the_stats_a_backend_keeps_are_the_shared_counters() -> None:
    assert isinstance(ScriptedBackend().stats, BackendStats)
