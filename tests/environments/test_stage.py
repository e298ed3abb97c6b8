"""assemble: one runtime with the seeker, supporter and observer agents and an environment per seeker; the architecture page's example."""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from autogen_core import MessageContext, RoutedAgent, message_handler

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import EPISODES_TOPIC, EpisodeEnded, SamplingParams
from esc_eval.environments.episode import Episode, OutcomeKind
from esc_eval.environments.stage import Observer, SeekerSeat, SupporterSeat, assemble
from esc_eval.environments.termination import MaxRounds
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.templates import load_protocol

ROOT = Path(__file__).resolve().parents[2]
CARD = builtin_cards("en")[0]


class Ends(RoutedAgent):
    heard: list[EpisodeEnded] = []

    def __init__(self) -> None:
        super().__init__("records episode ends")

    @message_handler
    async def on_end(self, message: EpisodeEnded, ctx: MessageContext) -> None:
        Ends.heard.append(message)


async def test_each_seeker_gets_its_environment_protocol_and_decoding_and_observers_hear_the_ends() -> None:
    calm, loud = ScriptedBackend(model="calm"), ScriptedBackend(model="loud")
    supporter = ScriptedBackend(lambda messages, params, model: "I am here.")
    Ends.heard = []
    loud_protocol = replace(load_protocol("default"), seeker_system_prompt={"en": "Shout about this: {card}"})
    stage = await assemble(
        {"seeker:calm": SeekerSeat(calm, params=SamplingParams(max_tokens=11)), "seeker:loud": SeekerSeat(loud, loud_protocol)},
        {"sup": SupporterSeat(supporter, system_prompt="Be kind.", params=SamplingParams(max_tokens=22))},
        observers={"ends": Observer(Ends, (EPISODES_TOPIC,))}, termination=MaxRounds(1),
    )
    with pytest.raises(ValueError, match="2 seekers"):
        _ = stage.environment
    for key, env in stage.environments.items():
        await env.run(Episode(key, CARD, "sup"))
    await stage.close()
    assert [e.episode_key for e in Ends.heard] == ["seeker:calm", "seeker:loud"] and {e.outcome for e in Ends.heard} == {"truncated"}
    assert len(calm.requests) == len(loud.requests) == 1, "each environment asks only its own seeker"
    assert calm.requests[0][1].max_tokens == 11 and calm.requests[0][0][0]["content"] == load_protocol("default").seeker_prompt(CARD)
    assert loud.requests[0][0][0]["content"] == f"Shout about this: {CARD.profile}"
    assert [r[0][0] for r in supporter.requests] == [{"role": "system", "content": "Be kind."}] * 2
    assert {r[1].max_tokens for r in supporter.requests} == {22}


async def test_a_stage_closes_once_every_published_message_is_delivered() -> None:
    Ends.heard = []
    async with await assemble({"seeker": ScriptedBackend()}, {"sup": ScriptedBackend()}, termination=MaxRounds(2),
                              observers={"ends": Observer(Ends, (EPISODES_TOPIC,), factory=Ends)}) as stage:
        episode = await stage.environment.reset(CARD)
        while not (await stage.environment.step(episode)).done:
            pass
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TRUNCATED and len(Ends.heard) == 1


def test_the_architecture_page_drives_one_conversation_as_written() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "assemble(" in b)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "docs/architecture.md", "exec"), {"__name__": "__main__"})  # noqa: S102 - the documented example
    lines = printed.getvalue().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["seeker", "supporter"] * 4 + ["seeker"]
    assert all(line.endswith("[0]") for line in lines[:-1]), "the guarded persona recorded the revealed fact"
    assert lines[-1] == "Outcome(kind=<OutcomeKind.TRUNCATED: 'truncated'>, reason='max_rounds=5')"
