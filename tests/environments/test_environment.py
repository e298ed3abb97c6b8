"""The environment on a real autogen-core runtime, with scripted backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Sequence

from autogen_core import MessageContext, RoutedAgent, TypeSubscription, message_handler

from agents.backends.base import ServerError
from agents.backends.scripted import ScriptedBackend
from agents.messages import EPISODES_TOPIC, TURNS_TOPIC, ChatMessage, EpisodeEnded, SamplingParams, TurnTaken
from agents.seeker import SeekerAgent
from agents.supporter import SupporterAgent
from environments.environment import Environment, SupporterSpec
from environments.runtime import make_runtime
from environments.episode import Episode, OutcomeKind, Role
from environments.termination import EndToken, MaxRounds
from roles.cards import RoleCard
from roles.loaders import load_cards
from roles.templates import load_protocol


class Recorder(RoutedAgent):
    seen: list[object] = []

    def __init__(self) -> None:
        super().__init__("records published messages")

    @message_handler
    async def on_turn(self, message: TurnTaken, ctx: MessageContext) -> None:
        Recorder.seen.append(message)

    @message_handler
    async def on_end(self, message: EpisodeEnded, ctx: MessageContext) -> None:
        Recorder.seen.append(message)


async def start(seeker: ScriptedBackend, supporters: dict[str, ScriptedBackend], protocol_path: str, **env_args: object):
    runtime = make_runtime()
    await SeekerAgent.register_for(runtime, "seeker", {"seeker": seeker})
    await SupporterAgent.register_for(runtime, "supporter", supporters)
    Recorder.seen = []
    await Recorder.register(runtime, "recorder", Recorder)
    for topic in (TURNS_TOPIC, EPISODES_TOPIC):
        await runtime.add_subscription(TypeSubscription(topic, "recorder"))
    runtime.start()
    env = Environment(runtime, load_protocol(protocol_path), {name: SupporterSpec(name) for name in supporters}, **env_args)  # type: ignore[arg-type]
    return runtime, env


async def test_esc_eval_protocol_views_and_eleven_lines(shared: Path) -> None:
    card = load_cards(shared / "test_en.json")[0]
    protocol_file = shared / "esc_role_protocol.json"
    seeker, supporter = ScriptedBackend(model="role"), ScriptedBackend(model="sup")
    runtime, env = await start(seeker, {"sup": supporter}, str(protocol_file), termination=MaxRounds(5))
    episode = await env.run(Episode("k1", card, "sup"))
    await runtime.stop_when_idle()

    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TRUNCATED
    assert len(episode.turns) == 11
    assert [t.role for t in episode.turns] == [Role.SUPPORTER] + [Role.SEEKER, Role.SUPPORTER] * 5
    protocol = load_protocol(protocol_file)
    opener = protocol.opener("en")
    # the seeker sees its system prompt, then the opener as 'user'
    first_seeker = seeker.requests[0][0]
    assert first_seeker == [
        {"role": "system", "content": protocol.seeker_prompt(card)},
        {"role": "user", "content": opener},
    ]
    # the supporter never sees the opener and gets the default system prompt
    first_supporter = supporter.requests[0][0]
    assert first_supporter == [
        {"role": "system", "content": "You are a helpful assistant!"},
        {"role": "user", "content": episode.turns[1].text},
    ]
    last_supporter = supporter.requests[-1][0]
    assert len(last_supporter) == 1 + 9 and all(m["content"] != opener for m in last_supporter)
    assert [m["role"] for m in last_supporter[1:]] == ["user", "assistant"] * 4 + ["user"]
    # observers saw every line and the end
    turns = [m for m in Recorder.seen if isinstance(m, TurnTaken)]
    ends = [m for m in Recorder.seen if isinstance(m, EpisodeEnded)]
    assert [t.index for t in turns] == list(range(11))
    assert len(ends) == 1 and ends[0].outcome == "truncated" and len(ends[0].transcript) == 11


async def test_agents_do_not_grow_with_episodes() -> None:
    cards = [RoleCard(f"c{i}", "en", f"Problem: worry {i}", "family_life", "t") for i in range(30)]
    supporters = {"a": ScriptedBackend(model="a"), "b": ScriptedBackend(model="b")}
    runtime, env = await start(ScriptedBackend(), supporters, "default", termination=MaxRounds(2))
    episodes = [Episode(f"k{i}", card, "a" if i % 2 else "b") for i, card in enumerate(cards)]
    done = await asyncio.gather(*(env.run(e) for e in episodes))
    await runtime.stop_when_idle()
    assert all(e.outcome and e.outcome.kind is OutcomeKind.TRUNCATED and len(e.turns) == 5 for e in done)
    agent_types = sorted(agent_id.type for agent_id in runtime._instantiated_agents)  # noqa: SLF001 - the property under test
    assert agent_types == ["recorder", "seeker", "supporter", "supporter"]


async def test_backend_failure_marks_the_episode_failed_and_publishes_it() -> None:
    def flaky(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        if len(messages) > 3:
            raise ServerError("HTTP 503: down")
        return "ok"

    runtime, env = await start(ScriptedBackend(), {"sup": ScriptedBackend(flaky)}, "default")
    card = RoleCard("c", "en", "Problem: x", "family_life", "t")
    episode = await env.run(Episode("k", card, "sup"))
    await runtime.stop_when_idle()
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.FAILED
    assert "503" in episode.outcome.reason and "supporter" in episode.outcome.reason
    assert len(episode.turns) == 4  # opener, seeker, supporter, seeker -- then the supporter failed
    ends = [m for m in Recorder.seen if isinstance(m, EpisodeEnded)]
    assert ends[0].outcome == "failed"


async def test_end_token_ends_as_terminated_before_the_round_limit() -> None:
    def seeker_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return "thank you, that helps. [END]" if len(messages) >= 6 else "I am struggling"

    runtime, env = await start(ScriptedBackend(seeker_script), {"sup": ScriptedBackend()}, "default",
                               termination=EndToken("[END]") | MaxRounds(5))
    episode = await env.run(Episode("k", RoleCard("c", "en", "Problem: x", "family_life", "t"), "sup"))
    await runtime.stop_when_idle()
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TERMINATED
    assert episode.rounds == 2 and episode.turns[-1].role is Role.SEEKER


async def test_sampling_seed_is_derived_per_episode_and_turn() -> None:
    seeker = ScriptedBackend()
    runtime, env = await start(seeker, {"sup": ScriptedBackend()}, "default",
                               seeker_params=SamplingParams(max_tokens=32, temperature=0.7), termination=MaxRounds(2))
    card = RoleCard("c", "en", "Problem: x", "family_life", "t")
    await env.run(Episode("k", card, "sup", seed=7))
    await env.run(Episode("k", card, "sup", seed=7))
    await env.run(Episode("k", card, "sup", seed=8))
    await runtime.stop_when_idle()
    seeds = [params.seed for _, params, _ in seeker.requests]
    assert seeds[:2] == seeds[2:4]  # same episode seed -> same request seeds
    assert seeds[0] != seeds[1]  # each turn its own seed
    assert seeds[4:6] != seeds[:2]
    assert all(p.max_tokens == 32 and p.temperature == 0.7 for _, p, _ in seeker.requests)
