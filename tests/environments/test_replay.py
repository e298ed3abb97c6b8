"""Replaying a finished dialogue gives exactly the requests the run sent the seeker (what seeker training trains on)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.environments.behaviours import load_behaviour
from esc_eval.environments.episode import Episode, Role
from esc_eval.environments.replay import seeker_examples
from esc_eval.environments.stage import assemble
from esc_eval.environments.termination import MaxRounds
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.templates import load_protocol

CARD = builtin_cards("en")[2]
PROTOCOL = load_protocol("default")
SUPPORTER = ["That sounds so hard, I understand.", "You should try to talk to him.", "Okay.", "I'm sorry, that must hurt."]


def seeker(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return f"line {sum(m['role'] == 'assistant' for m in messages)}: my dad still won't talk to me."


def supporter(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return SUPPORTER[sum(m["role"] == "assistant" for m in messages) % len(SUPPORTER)]


@pytest.mark.parametrize("persona", ["default", "escalating", "guarded"])
async def test_replayed_prompts_are_the_ones_the_run_sent(persona: str) -> None:
    name, behaviour = load_behaviour(persona)
    backend = ScriptedBackend(seeker)
    async with await assemble({"seeker": backend}, {"sup": ScriptedBackend(supporter)}, protocol=PROTOCOL, termination=MaxRounds(4),
                              behaviours={name: behaviour}) as stage:
        episode = await stage.environment.run(Episode("k", CARD, "sup", name))
    sent = [messages for messages, _, _ in backend.requests]
    assert len(sent) >= 4

    transcript = [(turn.role.value, turn.text) for turn in episode.turns]
    examples = seeker_examples(PROTOCOL, load_behaviour(persona)[1], CARD, transcript, name)
    assert [e.messages for e in examples] == sent
    assert [e.reply for e in examples] == [t.text for t in episode.turns if t.role is Role.SEEKER]
    assert [transcript[e.turn][0] for e in examples] == ["seeker"] * len(examples)
    if persona != "default":
        assert examples[0].messages[0]["content"] != examples[-1].messages[0]["content"], "the persona's directives change per round"


def test_a_dialogue_without_an_opener_starts_with_the_seeker() -> None:
    _, behaviour = load_behaviour("default")
    examples = seeker_examples(PROTOCOL, behaviour, CARD, [("seeker", "hi"), ("supporter", "hello"), ("seeker", "it's my dad")])
    assert [len(e.messages) for e in examples] == [1, 3]
    assert examples[1].messages[1:] == [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello"}]
