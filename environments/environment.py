"""The environment: drives episodes on one autogen-core runtime.

For each step it asks the turn policy who speaks, builds that side's view, awaits
``send_message(TurnRequest, AgentId(role, model_key))``, appends the reply, publishes
``TurnTaken`` on the ``episodes`` topic, and checks the termination detectors. At the
end it publishes ``EpisodeEnded``. Observers (store, judge, monitor) subscribe to the
topic; the environment never waits for them.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Mapping

from autogen_core import AgentId, SingleThreadedAgentRuntime, TopicId
from opentelemetry.trace import NoOpTracerProvider

from agents.backends.base import BackendError
from agents.messages import EPISODES_SOURCE, EPISODES_TOPIC, Completion, EpisodeEnded, SamplingParams, TurnRequest, TurnTaken
from environments.episode import Episode, Outcome, Role, Turn
from environments.termination import Detector, MaxRounds
from environments.turn_policies import Alternating, TurnPolicy
from environments.views import seeker_view, supporter_view
from roles.templates import SeekerProtocol

log = logging.getLogger(__name__)


def make_runtime() -> SingleThreadedAgentRuntime:
    """A runtime with tracing off and autogen's chatty loggers quiet (they cost CPU per message)."""
    os.environ.setdefault("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    for name in ("autogen_core", "autogen_core.events", "autogen_core.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return SingleThreadedAgentRuntime(tracer_provider=NoOpTracerProvider())


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
        protocol: what each side is told (``roles.load_protocol``).
        supporters: supporter name -> ``SupporterSpec``; ``Episode.supporter`` picks one.
        seeker_key: the ``AgentId`` key of the seeker model.
        policy, termination: who speaks next, and when to stop (ESC-Eval: ``Alternating()`` and ``MaxRounds(5)``).
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
    ):
        self.runtime, self.protocol, self.supporters = runtime, protocol, dict(supporters)
        self.seeker_key, self.seeker_params = seeker_key, seeker_params
        self.policy, self.termination = policy, termination

    async def run(self, episode: Episode) -> Episode:
        """Play ``episode`` to its outcome; backend failures end it as ``failed``, never raise."""
        topic = TopicId(EPISODES_TOPIC, source=EPISODES_SOURCE)
        spec = self.supporters[episode.supporter]
        if self.policy.opener and not episode.turns:
            await self._publish(episode, episode.add(Role.SUPPORTER, self.protocol.opener(episode.card.language), generated=False), topic)
        outcome = self.termination.check(episode)
        while outcome is None:
            role = self.policy.next_speaker(episode)
            if role is None:
                outcome = Outcome.terminated("turn policy ended the conversation")
                break
            if role is Role.SEEKER:
                request = TurnRequest(episode.key, seeker_view(self.protocol, episode), self._params(self.seeker_params, episode))
                recipient = AgentId(Role.SEEKER.value, self.seeker_key)
            else:
                request = TurnRequest(episode.key, supporter_view(self.protocol, episode, spec.system_prompt), self._params(spec.params, episode))
                recipient = AgentId(Role.SUPPORTER.value, spec.model_key)
            try:
                reply: Completion = await self.runtime.send_message(request, recipient)
            except BackendError as exc:
                outcome = Outcome.failed(f"{role} backend: {exc}")
                break
            except Exception as exc:  # an agent bug must end this episode, not the run
                log.exception("episode %s: %s turn crashed", episode.key, role)
                outcome = Outcome.failed(f"{role} agent error: {type(exc).__name__}: {exc}")
                break
            turn = episode.add(
                role, reply.text, prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens, latency=reply.latency,
            )
            await self._publish(episode, turn, topic)
            outcome = self.termination.check(episode)
        episode.outcome = outcome
        await self.runtime.publish_message(
            EpisodeEnded(
                episode.key, episode.card.language, outcome.kind.value, outcome.reason,
                tuple((t.role.value, t.text) for t in episode.turns), time.time(), episode.supporter,
            ),
            topic,
        )
        return episode

    async def _publish(self, episode: Episode, turn: Turn, topic: TopicId) -> None:
        await self.runtime.publish_message(
            TurnTaken(episode.key, turn.index, turn.role.value, turn.text, turn.prompt_tokens, turn.completion_tokens, turn.latency, turn.at),
            topic,
        )

    @staticmethod
    def _params(base: SamplingParams, episode: Episode) -> SamplingParams:
        """Seeded sampling is reproducible per episode and turn; greedy decoding needs no seed."""
        if base.temperature in (None, 0) or base.seed is not None:
            return base
        return replace(base, seed=zlib.crc32(f"{episode.seed}:{len(episode.turns)}".encode()))
