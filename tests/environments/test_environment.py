"""The environment on a real autogen-core runtime, with scripted backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core import MessageContext, RoutedAgent, message_handler

from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, EpisodeEnded, SamplingParams, TurnTaken
from esc_eval.environments.environment import Environment
from esc_eval.environments.episode import Episode, OutcomeKind, Role
from esc_eval.environments.runtime import LeanRuntime
from esc_eval.environments.stage import Observer, SeekerSeat, SupporterSeat, assemble
from esc_eval.environments.termination import EndToken, MaxRounds
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.loaders import load_cards
from esc_eval.roles.templates import load_protocol


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


async def start(seeker: ScriptedBackend, supporters: dict[str, ScriptedBackend], protocol_path: str, *,
                seeker_params: SamplingParams = SamplingParams(), **env_args: Any) -> tuple[LeanRuntime, Environment]:
    Recorder.seen = []
    stage = await assemble({"seeker": SeekerSeat(seeker, params=seeker_params)}, supporters, protocol=load_protocol(protocol_path),
                           observers={"recorder": Observer(Recorder)}, **env_args)
    return stage.runtime, stage.environment


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


async def test_the_servers_default_temperature_is_seeded_and_greedy_requests_are_sent_as_configured() -> None:
    """Temperature unset samples on OpenAI's API and vLLM: it gets a seed (cacheable); temperature 0 is sent without one."""
    seeker, supporter = ScriptedBackend(), ScriptedBackend()
    greedy = SupporterSeat(supporter, params=SamplingParams(max_tokens=32, temperature=0))
    stage = await assemble({"seeker": SeekerSeat(seeker, params=SamplingParams(max_tokens=32))}, {"sup": greedy},
                           protocol=load_protocol("default"), termination=MaxRounds(2))
    runtime, env = stage.runtime, stage.environment
    await env.run(Episode("k", RoleCard("c", "en", "Problem: x", "family_life", "t"), "sup", seed=7))
    await runtime.stop_when_idle()
    assert all(p.seed is not None and p.temperature is None for _, p, _ in seeker.requests) and len(seeker.requests) == 2
    assert all(p == SamplingParams(max_tokens=32, temperature=0) for _, p, _ in supporter.requests) and supporter.requests


def seeded(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    """A reply that depends on what the model saw and on the per-turn seed, as sampling would."""
    if "end your message with [END]" in messages[0]["content"]:
        return f"thanks, bye [END] (seed {params.seed})"
    return f"[{model}] line {len(messages)} seed {params.seed}"


async def stepped_and_run(persona: str, supporter_line: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[Any]]:
    """The same episode twice on one runtime: driven step by step, then by ``run``."""
    from esc_eval.environments.behaviours import load_behaviour

    name, behaviour = load_behaviour(persona)
    runtime, env = await start(ScriptedBackend(seeded), {"sup": ScriptedBackend(lambda m, p, model: supporter_line)}, "default",
                               termination=MaxRounds(4), behaviours={name: behaviour}, seeker_params=SamplingParams(temperature=0.7))
    card = RoleCard("c7", "en", "Problem: I cannot sleep since I lost my job.", "work_study", "t")
    episode = await env.reset(card, name, seed=11)
    assert episode.key == f"sup/{name}/c7/s11/r0" and [t.generated for t in episode.turns] == [False]  # the opener
    results = []
    while True:
        result = await env.step(episode)
        results.append(result)
        if result.done:
            break
    assert all(r.turn is episode.turns[i + 1] for i, r in enumerate(results))
    assert [r.done for r in results] == [False] * (len(results) - 1) + [True]
    last = results[-1]
    assert last.info["outcome"] is episode.outcome and not last.info["failed"]
    assert (last.terminated, last.truncated) == (episode.outcome.kind is OutcomeKind.TERMINATED, episode.outcome.kind is OutcomeKind.TRUNCATED)
    with pytest.raises(ValueError, match="has ended"):
        await env.step(episode)
    whole = await env.run(Episode(episode.key, card, "sup", name, seed=11))
    await runtime.stop_when_idle()

    def lines(e: Episode) -> list[tuple[object, ...]]:
        return [(t.role, t.text, t.generated, t.state_json) for t in e.turns] + [(e.outcome,)]

    return lines(episode), lines(whole), list(Recorder.seen)


async def test_stepping_an_episode_gives_the_transcript_run_gives() -> None:
    stepped, whole, published = await stepped_and_run("default", "That sounds hard.")
    assert stepped == whole
    assert len(stepped) == 1 + 1 + 2 * 4 and stepped[-1][0].kind is OutcomeKind.TRUNCATED  # opener, 4 rounds, outcome
    assert len({text for _, text, *_ in stepped[1:-1:2]}) == 4  # each seeker line had its own seed
    stepped_published, run_published = published[:10], published[10:]  # stepping publishes as run does
    assert [type(m).__name__ for m in stepped_published] == ["TurnTaken"] * 9 + ["EpisodeEnded"]
    assert [(m.index, m.text, m.state) for m in stepped_published[:-1]] == [(m.index, m.text, m.state) for m in run_published[:-1]]
    assert stepped_published[-1].transcript == run_published[-1].transcript


async def test_stepping_a_persona_that_leaves_ends_as_terminated_with_its_state() -> None:
    stepped, whole, _ = await stepped_and_run("leaves-when-unheard", "Okay. Tell me more.")
    assert stepped == whole
    outcome = stepped[-1][0]
    assert outcome.kind is OutcomeKind.TERMINATED and "unheard" in outcome.reason
    assert all(state for role, _, generated, state in stepped[:-1] if role is Role.SEEKER and generated)


async def test_reset_needs_a_supporter_name_when_there_are_several_and_step_reports_failures() -> None:
    def down(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        raise ServerError("HTTP 503: down")

    runtime, env = await start(ScriptedBackend(), {"a": ScriptedBackend(down), "b": ScriptedBackend()}, "default")
    card = RoleCard("c", "en", "Problem: x", "family_life", "t")
    with pytest.raises(ValueError, match="name the supporter: one of a, b"):
        await env.reset(card)
    episode = await env.reset(card, supporter="a")
    first = await env.step(episode)
    assert first.turn is not None and first.turn.role is Role.SEEKER and not first.done
    second = await env.step(episode)
    await runtime.stop_when_idle()
    assert second.turn is None and second.done and second.info["failed"] and not (second.terminated or second.truncated)
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.FAILED and "503" in episode.outcome.reason
