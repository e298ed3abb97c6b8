"""Seeker behaviours on a real autogen-core runtime with scripted backends: what the seeker is asked
each round, persona endings (terminated, never truncated), role-break retries and the recorded state."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core import MessageContext, RoutedAgent, message_handler

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import TURNS_TOPIC, ChatMessage, SamplingParams, TurnTaken
from esc_eval.environments.behaviours import NEUTRAL, PersonaBehaviour, load_behaviour, mentions, preview
from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role, Turn
from esc_eval.environments.stage import Observer, SeekerSeat, assemble
from esc_eval.environments.termination import MaxRounds
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.personas import RoleBreakRule, base_role_break, builtin_personas, card_facts, load_persona, persona_from_file
from esc_eval.roles.templates import load_protocol

CARD = builtin_cards("en")[0]
CARD_ZH = builtin_cards("zh")[0]
PROTOCOL = load_protocol("default")
SUPPORTER_LINES = {
    "empathic": "That sounds so hard. I understand why you feel worn out.",
    "advice": "You should try to set a fixed bedtime.",
    "neutral": "Okay. Tell me more.",
}


class Published(RoutedAgent):
    turns: list[TurnTaken] = []

    def __init__(self) -> None:
        super().__init__("records turns")

    @message_handler
    async def on_turn(self, message: TurnTaken, ctx: MessageContext) -> None:
        Published.turns.append(message)


def seeker_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    """A seeker that does what it is told about leaving, and otherwise says the same line."""
    if "end your message with [END]" in messages[0]["content"]:
        return "Thank you, I think I will stop here. Bye. [END]"
    return "I just feel tired all the time."


async def play(persona: str | Any, *, supporter: str = "neutral", rounds: int = 5, card=CARD,  # type: ignore[no-untyped-def]
               seeker: ScriptedBackend | None = None, role_break: RoleBreakRule | None = None) -> tuple[Episode, ScriptedBackend, list[str]]:
    """Run one episode; returns it, the seeker backend and the seeker's system prompt per request."""
    if isinstance(persona, str):
        name, behaviour = load_behaviour(persona)
    else:
        name, behaviour = "custom", persona
    seeker = seeker or ScriptedBackend(seeker_script)
    line = SUPPORTER_LINES[supporter]
    Published.turns = []
    async with await assemble({"seeker": SeekerSeat(seeker, role_break=role_break)}, {"sup": ScriptedBackend(lambda m, p, model: line)},
                              protocol=PROTOCOL, observers={"published": Observer(Published, (TURNS_TOPIC,))},
                              termination=MaxRounds(rounds), behaviours={name: behaviour}) as stage:
        episode = await stage.environment.run(Episode(f"k-{name}", card, "sup", name))
    return episode, seeker, [messages[0]["content"] for messages, _, _ in seeker.requests]


def added(prompt: str, card=CARD) -> str:  # type: ignore[no-untyped-def]
    """What the persona appended to the protocol's seeker prompt."""
    base = PROTOCOL.seeker_prompt(card)
    assert prompt.startswith(base)
    return prompt[len(base):]


def distress(text: str) -> int:
    return int(text.split("(distress ")[1].split(" ")[0])


# Per built-in: the supporter it meets, and what must show in the directives of each round.
EXPECTED: dict[str, tuple[str, Callable[[list[str]], None]]] = {
    "guarded": ("empathic", lambda d: (
        all("Do not share any concrete detail" in x for x in d[:2]),
        "So far you may share only these parts" in d[2] and "Her mother" in d[2].split("Keep the rest")[0],
        "every part of your situation" in d[4],
        all("slow to trust" in x for x in d),
    )),
    "advice-resistant": ("advice", lambda d: (
        all("resist advice" in x and "Yes, but" in x for x in d),
        [distress(x) for x in d] == [6, 7, 8, 9, 10],
    )),
    "escalating": ("neutral", lambda d: (
        [distress(x) for x in d] == [5, 6, 7, 8, 9],
        "worry you have not mentioned" not in d[1] and "worry you have not mentioned" in d[2],
    )),
    "recovering": ("empathic", lambda d: (
        [distress(x) for x in d] == [8, 6, 4, 2, 0],
        "way forward" not in d[2] and "way forward" in d[3],
    )),
    "terse": ("neutral", lambda d: all("very short" in x and "volunteer" in x for x in d)),
    "rambling": ("neutral", lambda d: all("at length" in x and "side stories" in x for x in d)),
    "leaves-when-satisfied": ("empathic", lambda d: (
        [distress(x) for x in d] == [5, 3, 1], "end your message with [END]" in d[-1] and "feel better" in d[-1],
    )),
    "leaves-when-unheard": ("neutral", lambda d: (
        [distress(x) for x in d] == [6, 7, 8], "not really hearing you" in d[-1],
    )),
}


def test_every_builtin_but_default_has_an_expectation() -> None:
    assert set(EXPECTED) == {n for n in builtin_personas() if not n.startswith("risk-")} - {"default"}  # risk-: test_risk_personas


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_builtin_changes_what_the_seeker_is_asked_per_round(name: str) -> None:
    supporter, expect = EXPECTED[name]
    episode, _, prompts = await play(name, supporter=supporter)
    directives = [added(p) for p in prompts]
    assert all(d.startswith(f"\n\nHow you behave in this reply (round {i}):\n") for i, d in enumerate(directives, 1))
    # the rounds differ beyond their header: the persona's instructions move with the conversation,
    # or (terse, rambling) its style is asked for every round
    bodies = [d.split("\n", 3)[3] for d in directives]
    assert len(set(bodies)) > 1 or name in ("terse", "rambling")
    checks = expect(directives)
    assert all(checks if isinstance(checks, tuple) else (checks,)), (name, directives)
    # the hidden state is recorded on every seeker turn
    seeker_turns = [t for t in episode.turns if t.role is Role.SEEKER]
    assert all(t.state is not None and t.state["persona"] == name for t in seeker_turns)
    assert [t.state["round"] for t in seeker_turns if t.state] == list(range(1, len(seeker_turns) + 1))


async def test_default_persona_asks_exactly_what_the_protocol_asks() -> None:
    episode, _, prompts = await play("default", supporter="advice", rounds=3)
    assert prompts == [PROTOCOL.seeker_prompt(CARD)] * 3
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TRUNCATED
    last = episode.turns[-2]
    assert last.role is Role.SEEKER and last.state is not None
    assert last.state["distress"] == 5 and last.state["advice"] is True and last.state["unhelpful"] == 2


async def test_chinese_cards_get_chinese_directives() -> None:
    _, _, prompts = await play("guarded", supporter="neutral", rounds=2, card=CARD_ZH)
    assert added(prompts[0], CARD_ZH).startswith("\n\n这一轮的表现方式（第1轮）：")
    assert "先不要透露" in prompts[0]


async def test_satisfied_persona_ends_terminated_before_the_round_limit() -> None:
    episode, _, _ = await play("leaves-when-satisfied", supporter="empathic", rounds=5)
    assert episode.outcome == Outcome.terminated("persona satisfied")
    assert episode.rounds == 2 and episode.turns[-1].role is Role.SEEKER and "[END]" in episode.turns[-1].text
    assert episode.turns[-1].state is not None and episode.turns[-1].state["leaving"] == "satisfied"
    assert episode.turns[-1].state["marker"] is True


async def test_unheard_persona_ends_terminated_and_says_why() -> None:
    episode, _, _ = await play("leaves-when-unheard", supporter="neutral", rounds=5)
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TERMINATED
    assert episode.outcome.reason == "persona unheard: 2 replies without empathy"
    advised, _, _ = await play("leaves-when-unheard", supporter="advice", rounds=5)
    assert advised.outcome == Outcome.terminated("persona unheard: advice 2 times in a row")


async def test_a_seeker_that_ignores_the_marker_still_leaves_as_terminated() -> None:
    stubborn = ScriptedBackend(lambda m, p, model: "I guess so.")
    episode, _, prompts = await play("leaves-when-unheard", supporter="neutral", seeker=stubborn)
    assert "[END]" in prompts[-1] and all("[END]" not in t.text for t in episode.turns)
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TERMINATED
    assert episode.outcome.reason.startswith("persona unheard")


async def test_an_unprompted_marker_ends_only_personas_with_ending_rules() -> None:
    eager = ScriptedBackend(lambda m, p, model: "That's all. [END]")
    episode, _, _ = await play("leaves-when-satisfied", supporter="neutral", seeker=eager)
    assert episode.outcome == Outcome.terminated("persona left") and episode.rounds == 0
    plain, _, _ = await play("terse", supporter="neutral", rounds=2, seeker=ScriptedBackend(lambda m, p, model: "x [END]"))
    assert plain.outcome is not None and plain.outcome.kind is OutcomeKind.TRUNCATED


def role_breaking(times: int) -> ScriptedBackend:
    """A seeker that drops the role on its first ``times`` requests."""
    calls = {"n": 0}

    def script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        calls["n"] += 1
        return "As an AI language model, I don't have problems." if calls["n"] <= times else "I can't sleep lately."

    return ScriptedBackend(script)


async def test_a_role_break_is_retried_with_a_reminder_and_recorded() -> None:
    seeker = role_breaking(1)
    episode, _, prompts = await play("terse", rounds=2, seeker=seeker)
    assert len(prompts) == 3  # round 1 asked twice, round 2 once
    assert "Stay in character: you are" not in prompts[0] and "Stay in character: you are" in prompts[1]
    assert prompts[1].startswith(prompts[0])
    first = episode.turns[1]
    assert first.role is Role.SEEKER and first.text == "I can't sleep lately."
    assert first.state is not None and first.state["role_break"] == {
        "cue": "as an ai", "retries": 1, "in_role": True, "discarded": ["As an AI language model, I don't have problems."],
    }
    assert first.state["role_breaks"] == 1
    assert episode.turns[3].state is not None and episode.turns[3].state["role_break"] is None
    published = [t for t in Published.turns if t.role == "seeker"]
    assert json.loads(published[0].state)["role_break"]["retries"] == 1
    assert all(t.state == "" for t in Published.turns if t.role == "supporter")



def words(messages: Sequence[ChatMessage]) -> int:
    return sum(len(m["content"].split()) for m in messages)


async def test_a_role_break_retry_keeps_its_tokens_in_the_turn() -> None:
    """The discarded reply was paid for: the kept turn counts both requests (the scripted backend's tokens are words)."""
    seeker = role_breaking(1)
    episode, _, _ = await play("terse", rounds=1, seeker=seeker)
    (broken, _, _), (kept, _, _) = seeker.requests[:2]
    first = episode.turns[1]
    assert first.prompt_tokens == words(broken) + words(kept) > words(kept)
    assert first.completion_tokens == len("As an AI language model, I don't have problems.".split()) + len("I can't sleep lately.".split())
    assert first.usage == "counted" and not first.cached
    [published] = [t for t in Published.turns if t.role == "seeker"]
    assert (published.prompt_tokens, published.completion_tokens, published.usage) == (
        first.prompt_tokens, first.completion_tokens, "counted")


async def test_retries_are_bounded_and_the_last_reply_is_kept_flagged() -> None:
    seeker = role_breaking(100)
    episode, _, prompts = await play("terse", rounds=1, seeker=seeker, role_break=base_role_break(retries=2))
    assert len(prompts) == 3
    state = episode.turns[1].state
    assert state is not None and state["role_break"]["retries"] == 2 and state["role_break"]["in_role"] is False
    assert len(state["role_break"]["discarded"]) == 2
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.TRUNCATED


async def test_a_persona_sets_its_own_retries(tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text("extends: terse\nrole_break: {retries: 0}\n", encoding="utf-8")
    behaviour = PersonaBehaviour(persona_from_file(path))
    episode, _, prompts = await play(behaviour, rounds=1, seeker=role_breaking(5), role_break=base_role_break(retries=3))
    assert len(prompts) == 1
    assert episode.turns[1].state is not None and episode.turns[1].state["role_break"]["in_role"] is False


async def test_the_global_rule_covers_behaviours_without_one() -> None:
    episode, _, prompts = await play(NEUTRAL, rounds=1, seeker=role_breaking(1), role_break=base_role_break(retries=1))
    assert len(prompts) == 2 and episode.turns[1].text == "I can't sleep lately."
    assert episode.turns[1].state is not None and episode.turns[1].state["role_break"]["retries"] == 1
    without, _, prompts = await play(NEUTRAL, rounds=1, seeker=role_breaking(1))
    assert len(prompts) == 1 and without.turns[1].state is None  # no rule: nothing detected, nothing recorded


class Countdown:
    """A Python behaviour: counts turns, asks for a number, ends after two seeker lines."""

    description = "counts down"

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, bool]] = []

    def directives(self, episode: Episode) -> str:
        return f"\n\nSay the number {3 - episode.state.get('said', 0)}."

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        self.seen.append((turn.index, turn.role.value, turn.generated))
        if turn.role is Role.SEEKER:
            episode.state["said"] = episode.state.get("said", 0) + 1

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        return Outcome.terminated("counted") if episode.state.get("said") == 2 else None


async def test_a_python_behaviour_gets_every_turn_and_can_end_the_episode() -> None:
    behaviour = Countdown()
    episode, _, prompts = await play(behaviour, rounds=5)
    assert [added(p) for p in prompts] == ["\n\nSay the number 3.", "\n\nSay the number 2."]
    assert behaviour.seen == [(0, "supporter", False), (1, "seeker", True), (2, "supporter", True), (3, "seeker", True)]
    assert episode.outcome == Outcome.terminated("counted")
    assert [t.state for t in episode.turns if t.role is Role.SEEKER] == [{"said": 1}, {"said": 2}]


@pytest.mark.parametrize("method", ["directives", "on_turn", "wants_to_end"])
async def test_a_crashing_behaviour_fails_its_episode_only(method: str) -> None:
    class Broken(Countdown):
        def directives(self, episode: Episode) -> str:
            if method == "directives" and episode.turns[-1].index >= 2:
                raise RuntimeError("boom")
            return super().directives(episode)

        def on_turn(self, episode: Episode, turn: Turn) -> None:
            if method == "on_turn" and turn.generated:
                raise RuntimeError("boom")
            super().on_turn(episode, turn)

        def wants_to_end(self, episode: Episode) -> Outcome | None:
            if method == "wants_to_end":
                raise RuntimeError("boom")
            return None

    episode, _, prompts = await play(Broken(), rounds=3)
    assert episode.outcome is not None and episode.outcome.kind is OutcomeKind.FAILED
    assert episode.outcome.reason == "persona custom error: RuntimeError: boom"
    assert len(prompts) == 1 and len(episode.turns) == (3 if method == "directives" else 2)  # opener, seeker (, supporter)
    assert [t.index for t in Published.turns] == list(range(len(episode.turns)))  # every line added was published


async def test_an_unknown_persona_is_an_error_not_a_neutral_seeker() -> None:
    seeker = ScriptedBackend()
    async with await assemble({"seeker": seeker}, {"sup": ScriptedBackend()}, termination=MaxRounds(1),
                              behaviours=dict([load_behaviour("guarded")])) as stage:
        with pytest.raises(KeyError, match="unknown persona 'somebody-else' \\(known: guarded\\)"):
            await stage.environment.run(Episode("k", CARD, "sup", "somebody-else"))
        with pytest.raises(KeyError, match="unknown persona 'default'"):  # not registered either: no silent neutral seeker
            await stage.environment.reset(CARD)
        episode = await stage.environment.reset(CARD, "guarded")
        while not (await stage.environment.step(episode)).done:
            pass
    assert len(seeker.requests) == 1 and seeker.requests[0][0][0]["content"] != PROTOCOL.seeker_prompt(CARD)  # the persona spoke


async def test_an_environment_without_behaviours_plays_only_the_default_persona_as_the_protocol_says() -> None:
    seeker = ScriptedBackend()
    async with await assemble({"seeker": seeker}, {"sup": ScriptedBackend()}, termination=MaxRounds(1)) as stage:
        episode = await stage.environment.reset(CARD)
        await stage.environment.step(episode)
        with pytest.raises(KeyError, match="unknown persona 'guarded' \\(known: default\\)"):
            await stage.environment.reset(CARD, "guarded")
    assert seeker.requests[0][0][0]["content"] == PROTOCOL.seeker_prompt(CARD) and episode.state == {}


def test_preview_follows_the_imagined_supporter() -> None:
    _, behaviour = load_behaviour("leaves-when-satisfied")
    rounds, outcome = preview(behaviour, CARD, opener=PROTOCOL.opener("en"), rounds=5, supporter="empathic")
    assert [r.state["distress"] for r in rounds] == [5, 3, 1] and outcome == Outcome.terminated("persona satisfied")
    rounds, outcome = preview(behaviour, CARD, rounds=3, supporter="neutral")
    assert len(rounds) == 3 and outcome is None


def test_revealed_facts_are_tracked_by_word_overlap() -> None:
    facts = card_facts(CARD)
    assert mentions(facts[0], "My mom was diagnosed with dementia recently; she forgets our conversations.", "en")
    assert not mentions(facts[0], "I'm just tired.", "en")
    zh = card_facts(CARD_ZH)
    assert mentions(zh[1], "我丈夫总是两头劝和，从来不表态。", "zh")
    assert not mentions(zh[1], "我最近很累。", "zh")
    behaviour = PersonaBehaviour(load_persona("guarded"))
    episode = Episode("k", CARD, "sup", "guarded")
    behaviour.on_turn(episode, episode.add(Role.SEEKER, "My mother has dementia and she forgets recent conversations."))
    assert episode.state["revealed"] == [0]
