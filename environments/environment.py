"""The environment: drives episodes on one autogen-core runtime, Gymnasium-style.

``reset(card, persona, seed) -> Episode`` begins a conversation (the opener, if the
policy has one); ``step(episode) -> StepResult`` adds one turn; ``run(episode)`` is a loop
over them, which the runner uses. A researcher can drive one conversation turn by turn
(and look at, or change, ``episode.state`` between turns) and gets the same transcript.

For each step it asks the turn policy who speaks, builds that side's view, awaits
``send_message(TurnRequest, AgentId(role, model_key))``, appends the reply, publishes
``TurnTaken`` on the ``turns`` topic, and checks the termination detectors. At the
end it publishes ``EpisodeEnded`` on the ``episodes`` topic. The episode's persona (a ``SeekerBehaviour``) adds
directives to each seeker request, keeps the seeker's hidden state (copied onto each
seeker turn) and may end the episode; seeker replies that break the role are asked for
again up to the configured number of retries. Observers (store, judge, monitor) subscribe to the
topics; the environment never waits for them.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from autogen_core import AgentId, SingleThreadedAgentRuntime, TopicId

from esc_eval.agents.backends.base import BackendError
from esc_eval.agents.backends.usage import combined
from esc_eval.agents.messages import EPISODES_SOURCE, EPISODES_TOPIC, TURNS_TOPIC, Completion, EpisodeEnded, SamplingParams, TurnRequest
from esc_eval.environments.behaviours import NEUTRAL, SeekerBehaviour
from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role, StepResult, Turn
from esc_eval.environments.termination import AnyOf, Detector, MaxRounds
from esc_eval.environments.turn_policies import Alternating, TurnPolicy
from esc_eval.environments.views import seeker_view, supporter_view
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.personas import DEFAULT_ROLE_BREAK_RETRIES, RoleBreakRule
from esc_eval.roles.templates import SeekerProtocol

_R = TypeVar("_R")

log = logging.getLogger(__name__)

_TURNS = TopicId(TURNS_TOPIC, source=EPISODES_SOURCE)
_ENDS = TopicId(EPISODES_TOPIC, source=EPISODES_SOURCE)
_STATE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
"""One encoder for every seeker turn's state: ``json.dumps`` with options builds a new one per call."""


@dataclass(frozen=True)
class SupporterSpec:
    """How to address one supporter under test: its agent key, system prompt and decoding."""

    model_key: str
    system_prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)


class Environment:
    """Runs conversations between one seeker model and any number of supporters.

    Args:
        runtime: a started autogen-core runtime with ``seeker`` and ``supporter`` agent types registered.
        protocol: what each side is told (``esc_eval.roles.load_protocol``).
        supporters: supporter name -> ``SupporterSpec``; ``Episode.supporter`` picks one.
        seeker_key: the ``AgentId`` key of the seeker model.
        policy, termination: who speaks next, and when to stop (ESC-Eval: ``Alternating()`` and ``MaxRounds(5)``).
        behaviours: persona name -> ``SeekerBehaviour``; ``Episode.persona`` picks one, and a persona not in it is an
            error. Default: ``default`` only, playing the protocol as is (``NEUTRAL``).
        role_break: the role-break detector and retry count for behaviours without their own
            (``None``: no detection); a behaviour's rule with ``retries=None`` uses these retries,
            or ``DEFAULT_ROLE_BREAK_RETRIES`` (2) when neither sets them.
    """

    def __init__(
        self,
        runtime: SingleThreadedAgentRuntime,
        protocol: SeekerProtocol,
        supporters: Mapping[str, SupporterSpec],
        *,
        seeker_key: str = "seeker",
        seeker_params: SamplingParams = SamplingParams(),
        policy: TurnPolicy = Alternating(),
        termination: Detector = MaxRounds(5),
        behaviours: Mapping[str, SeekerBehaviour] | None = None,
        role_break: RoleBreakRule | None = None,
    ):
        self.runtime, self.protocol, self.supporters = runtime, protocol, dict(supporters)
        self.seeker_key, self.seeker_params = seeker_key, seeker_params
        self.policy, self.termination = policy, termination
        self.behaviours, self.role_break = dict(behaviours if behaviours is not None else {"default": NEUTRAL}), role_break

    async def reset(self, card: RoleCard, persona: str = "default", seed: int = 0, *, supporter: str | None = None,
                    key: str | None = None, repeat: int = 0) -> Episode:
        """A new episode of ``card`` played by ``persona``, started (``start``): drive it with ``step``.

        ``supporter`` may be left out when the environment has one; ``key`` defaults to
        ``supporter/persona/card id/s{seed}/r{repeat}``.
        """
        if supporter is None:
            if len(self.supporters) != 1:
                raise ValueError(f"name the supporter: one of {', '.join(self.supporters) or '(none)'}")
            supporter = next(iter(self.supporters))
        episode = Episode(key or f"{supporter}/{persona}/{card.id}/s{seed}/r{repeat}", card, supporter, persona, seed, repeat)
        await self.start(episode)
        return episode

    async def start(self, episode: Episode) -> None:
        """Begin ``episode`` (built by the caller, e.g. with the runner's key): the opener, if the policy has one.

        The episode may end here already (a limit of zero, a persona failing on the opener).

        Raises:
            KeyError: the episode's supporter or persona is not one of this environment's.
        """
        if episode.supporter not in self.supporters:
            raise KeyError(f"episode {episode.key}: unknown supporter {episode.supporter!r} (known: {', '.join(self.supporters)})")
        behaviour = self._behaviour(episode)
        if self.policy.opener and not episode.turns:
            opener = episode.add(Role.SUPPORTER, self.protocol.opener(episode.card.language), generated=False)
            behaviour.on_turn(episode, opener)
            await self._publish(episode, opener)
        outcome = behaviour.failure or self._check(episode)
        if outcome is not None:
            await self._end(episode, outcome)

    async def step(self, episode: Episode) -> StepResult:
        """One turn: ask whoever the policy names, append and publish the reply, check whether it ended.

        Backend and persona failures end the episode as ``failed``, never raise.

        Raises:
            ValueError: the episode has already ended.
            KeyError: the episode's persona is not one of this environment's.
        """
        if episode.outcome is not None:
            raise ValueError(f"episode {episode.key} has ended ({episode.outcome.kind}: {episode.outcome.reason})")
        turn, outcome = await self._turn(episode, self._behaviour(episode))
        if outcome is not None:
            await self._end(episode, outcome)
        kind = outcome.kind if outcome is not None else None
        return StepResult(turn, kind is OutcomeKind.TERMINATED, kind is OutcomeKind.TRUNCATED,
                          {"outcome": outcome, "failed": kind is OutcomeKind.FAILED})

    async def run(self, episode: Episode) -> Episode:
        """Play ``episode`` to its outcome (``start``, then ``step`` until it ends); failures end it as ``failed``, never raise."""
        await self.start(episode)
        while episode.outcome is None:
            await self.step(episode)
        return episode

    def _behaviour(self, episode: Episode) -> _Guarded:
        """The episode's persona; an unknown one is an error, never silently neutral (it would change what is measured)."""
        if episode.persona not in self.behaviours:
            raise KeyError(f"episode {episode.key}: unknown persona {episode.persona!r} (known: {', '.join(self.behaviours) or '(none)'}); "
                           "pass its behaviour: behaviours=dict([load_behaviour(name)])")
        return _Guarded(self.behaviours[episode.persona], episode)

    async def _turn(self, episode: Episode, behaviour: _Guarded) -> tuple[Turn | None, Outcome | None]:
        """The next line and, if the episode ends with it (or without one), its outcome."""
        try:
            role = self.policy.next_speaker(episode)
        except Exception as exc:  # a turn policy plugin's bug must end this episode, not the run
            return None, plugin_failure("turn policy", self.policy, exc, episode)
        if role is None:
            return None, Outcome.terminated("turn policy ended the conversation")
        directives = ""
        if role is Role.SEEKER:
            directives = behaviour.directives(episode)
            if behaviour.failure is not None:
                return None, behaviour.failure
            request = TurnRequest(episode.key, seeker_view(self.protocol, episode, directives), self._params(self.seeker_params, episode))
            recipient = AgentId(Role.SEEKER.value, self.seeker_key)
        else:
            spec = self.supporters[episode.supporter]
            request = TurnRequest(episode.key, supporter_view(self.protocol, episode, spec.system_prompt), self._params(spec.params, episode))
            recipient = AgentId(Role.SUPPORTER.value, spec.model_key)
        try:
            reply: Completion = await self.runtime.send_message(request, recipient)
            if role is Role.SEEKER:
                reply = await self._keep_in_role(episode, behaviour, directives, recipient, reply)
        except BackendError as exc:
            return None, Outcome.failed(f"{role} backend: {exc}")
        except Exception as exc:  # an agent or backend plugin bug must end this episode, not the run
            log.exception("episode %s: %s turn crashed", episode.key, role)
            return None, Outcome.failed(f"{role} agent error: {type(exc).__name__}: {one_line(exc)} (backend {recipient.key})")
        turn = episode.add(
            role, reply.text, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            latency=reply.latency, usage=reply.usage, cached=reply.cached,
        )
        behaviour.on_turn(episode, turn)
        if role is Role.SEEKER and episode.state:
            turn.state_json = _STATE_ENCODER.encode(episode.state)
        await self._publish(episode, turn)
        return turn, behaviour.failure or self._check(episode) or behaviour.wants_to_end(episode)

    def _check(self, episode: Episode) -> Outcome | None:
        """The termination detectors' verdict; a detector that raises fails the episode, named (each of ``AnyOf``'s parts alone)."""
        parts = self.termination.parts if isinstance(self.termination, AnyOf) else (self.termination,)
        for detector in parts:
            try:
                outcome = detector.check(episode)
            except Exception as exc:  # a detector plugin's bug must end this episode, not the run
                return plugin_failure("termination detector", detector, exc, episode)
            if outcome is not None:
                return outcome
        return None

    async def _end(self, episode: Episode, outcome: Outcome) -> None:
        episode.outcome = outcome
        await self.runtime.publish_message(
            EpisodeEnded(
                episode.key, episode.card.language, outcome.kind.value, outcome.reason,
                tuple((t.role.value, t.text) for t in episode.turns), time.time(), episode.supporter,
                _STATE_ENCODER.encode(episode.state) if episode.state else "",
            ),
            _ENDS,
        )

    async def _keep_in_role(self, episode: Episode, behaviour: _Guarded, directives: str,
                            recipient: AgentId, reply: Completion) -> Completion:
        """Ask again, with a reminder, while the seeker's reply breaks the role; record it in ``episode.state``.

        ``episode.state["role_break"]`` is ``None`` for a reply in role, else the first cue found,
        the retries made, whether the kept reply is in role, and the discarded replies. The reply
        returned carries the tokens and time of the discarded ones too (they were paid for).
        """
        rule = behaviour.role_break or self.role_break
        if rule is None:
            return reply
        cue = rule.find(reply.text)
        if cue is None:
            episode.state["role_break"] = None
            return reply
        retries = rule.retries
        if retries is None and self.role_break is not None:
            retries = self.role_break.retries
        if retries is None:
            retries = DEFAULT_ROLE_BREAK_RETRIES
        reminder = "\n\n" + rule.reminder_for(episode.card.language)
        replies = [reply]
        found: str | None = cue
        while found is not None and len(replies) <= retries:
            request = TurnRequest(episode.key, seeker_view(self.protocol, episode, directives + reminder),
                                  self._params(self.seeker_params, episode, len(replies)))
            replies.append(await self.runtime.send_message(request, recipient))
            found = rule.find(replies[-1].text)
        episode.state["role_break"] = {"cue": cue, "retries": len(replies) - 1, "in_role": found is None,
                                       "discarded": [r.text for r in replies[:-1]]}
        episode.state["role_breaks"] = episode.state.get("role_breaks", 0) + 1
        return combined(replies)

    async def _publish(self, episode: Episode, turn: Turn) -> None:
        await self.runtime.publish_message(turn.taken(episode.key), _TURNS)

    @staticmethod
    def _params(base: SamplingParams, episode: Episode, attempt: int = 0) -> SamplingParams:
        """Every request that may sample (``temperature`` > 0, or unset: the server's default, 1 on OpenAI's API and vLLM) gets a
        seed from the episode's seed and the turn (and role-break retry), so it is reproducible and cacheable; greedy needs none."""
        if base.reproducible:
            return base
        retry = f":{attempt}" if attempt else ""
        return replace(base, seed=zlib.crc32(f"{episode.seed}:{len(episode.turns)}{retry}".encode()))


class _Guarded:
    """A behaviour whose exceptions end its episode as ``failed`` (``failure``) instead of the run."""

    def __init__(self, inner: SeekerBehaviour, episode: Episode):
        self.inner, self.persona = inner, episode.persona
        self.role_break: RoleBreakRule | None = getattr(inner, "role_break", None)
        self.failure: Outcome | None = None

    def directives(self, episode: Episode) -> str:
        return self._call(self.inner.directives, "", episode) or ""

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        self._call(self.inner.on_turn, None, episode, turn)

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        wanted = self._call(self.inner.wants_to_end, None, episode)
        return self.failure or wanted

    def _call(self, method: Callable[..., _R], default: _R, episode: Episode, *args: Any) -> _R:
        if self.failure is not None:
            return default
        try:
            return method(episode, *args)
        except Exception as exc:  # a persona bug must end this episode, not the run
            log.exception("episode %s: persona %s crashed in %s", episode.key, self.persona, method.__name__)
            self.failure = Outcome.failed(f"persona {self.persona} error: {type(exc).__name__}: {one_line(exc)}")
            return default


def one_line(exc: BaseException) -> str:
    """An exception's message as one line (a stored reason, a summary line)."""
    return " ".join(str(exc).split())


def plugin_failure(kind: str, plugin: object, exc: Exception, episode: Episode) -> Outcome:
    """The ``failed`` outcome of an episode whose ``kind`` plugin raised: ``termination detector NAME error: TYPE: MESSAGE``."""
    name = getattr(plugin, "name", None) or type(plugin).__name__
    log.exception("episode %s: %s %s crashed", episode.key, kind, name)
    return Outcome.failed(f"{kind} {name} error: {type(exc).__name__}: {one_line(exc)}")
