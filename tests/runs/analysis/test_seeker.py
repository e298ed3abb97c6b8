"""``esc-eval seeker eval``: stores built by the runner with scripted seekers of known behaviour rank as designed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.persona_text import card_facts
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer

URL = "http://127.0.0.1:9/v1"
ROUNDS = 5
CARDS = builtin_cards("en")[:3]
SUPPORTER_LINES = [
    "Hi, I'm here to listen. What's on your mind today?",
    "That sounds heavy. How long has it been like this for you?",
    "I hear you. What part of it weighs on you the most right now?",
    "Thank you for telling me. Who else knows what you're going through?",
    "It makes sense to feel worn out. What would a good week look like?",
    "I'm glad you shared this. What small thing could help tonight?",
]
FEELINGS = ["Honestly I keep replaying it at night.", "Some days I can't even get out of bed.",
            "My chest gets tight whenever I think about it.", "I'm scared it won't ever change.",
            "I guess I just wanted someone to hear it."]


def _card(messages: Sequence[ChatMessage]):  # type: ignore[no-untyped-def]
    return next(c for c in CARDS if c.profile in messages[0]["content"])


def _turn(messages: Sequence[ChatMessage]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def parrot(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return messages[-1]["content"]


def role_breaker(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return "As an AI language model, I don't have feelings, but I can tell you about stress in general."


def card_reciter(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return _card(messages).profile


def good(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    """One card fact per turn, each framed differently; then feelings, never the same line twice."""
    facts, turn = card_facts(_card(messages)), _turn(messages)
    openers = ["Well, it's hard to say, but", "There's also this:", "And on top of that,", "What hurts most is that", "Also,"]
    if turn < len(facts):
        return f"{openers[turn]} {facts[turn][0].lower()}{facts[turn][1:]}."
    return FEELINGS[turn % len(FEELINGS)]


def supporter(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return SUPPORTER_LINES[_turn(messages) % len(SUPPORTER_LINES)]


SEEKERS: dict[str, Callable[..., str]] = {"parrot": parrot, "breaker": role_breaker, "reciter": card_reciter, "good": good}


async def build_store(path: Path, name: str, script: Callable[..., str]) -> Path:
    config = parse_config({
        "run": {"rounds": ROUNDS, "concurrency": 3},
        "cards": {"language": "en", "limit": len(CARDS)},
        "seeker": {"base_url": URL, "model": name},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}],
    })
    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint(), personas=plan.personas())
    result = await Runner(plan, store, backends={"seeker": ScriptedBackend(script), "a": ScriptedBackend(supporter)}).run()
    assert result.exit_code == 0
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import asyncio

    root = tmp_path_factory.mktemp("seekers")
    return {name: asyncio.run(build_store(root / f"{name}.sqlite", name, script)) for name, script in SEEKERS.items()}


async def figures(stores: dict[str, Path], *extra: str) -> dict[str, dict[str, Any]]:
    rows = {}
    for name, path in stores.items():
        done = await esc_eval("seeker", "eval", str(path), "--format", "json", *extra)
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)
        rows[name] = row
    return rows


async def test_scripted_seekers_rank_as_designed(stores: dict[str, Path]) -> None:
    rows = await figures(stores)
    assert {name: (r["seeker"], r["persona"], r["n_episodes"]) for name, r in rows.items()} == {
        name: (name, "default", len(CARDS)) for name in SEEKERS}
    by = {metric: {name: rows[name][metric] for name in SEEKERS} for metric in rows["good"]}
    # role breaks: the breaker on every turn; the parrot where it echoes the listener's "I'm here to listen"
    # (the opener and the first supporter line: 2 of its 5 turns), which is speaking as the listener
    assert by["role_break_rate"] == {"parrot": 0.4, "breaker": 1.0, "reciter": 0.0, "good": 0.0}
    # parroting: the parrot echoes the supporter word for word; the rest hardly overlap
    assert by["parroting"]["parrot"] == 1.0
    assert max(by["parroting"][n] for n in ("breaker", "reciter", "good")) < 0.2
    # repetition: the good seeker never repeats a line; breaker and reciter say the same thing every turn
    assert by["repeated_turns"]["good"] == 0.0
    assert by["repeated_turns"]["reciter"] == by["repeated_turns"]["breaker"] == (ROUNDS - 1) / ROUNDS
    assert by["distinct_2"]["good"] > by["distinct_2"]["reciter"] and by["distinct_2"]["good"] > by["distinct_2"]["breaker"]
    # card grounding: reciter and good reveal every fact, the reciter all at once in turn 1, the good one gradually
    assert by["fact_coverage"]["reciter"] == by["fact_coverage"]["good"] == 1.0
    assert by["fact_coverage"]["parrot"] == by["fact_coverage"]["breaker"] == 0.0
    assert by["first_fact_turn"]["reciter"] == 1.0 < by["first_fact_turn"]["good"]
    assert by["first_fact_turn"]["parrot"] is None
    # the default persona reports its distress on every seeker turn
    assert all(isinstance(by["distress_start"][n], float) and isinstance(by["distress_end"][n], float) for n in SEEKERS)
    # no judge: no human-likeness
    assert set(by["human_likeness"].values()) == {None}
    # intervals over the three cards: degenerate where every card agrees, around the mean where they differ
    assert rows["reciter"]["ci"]["fact_coverage"] == [1.0, 1.0] and rows["parrot"]["ci"]["first_fact_turn"] is None
    low, high = rows["good"]["ci"]["distinct_2"]
    assert low <= rows["good"]["distinct_2"] <= high


async def test_json_fields_are_stable(stores: dict[str, Path]) -> None:
    done = await esc_eval("seeker", "eval", str(stores["good"]), "--format", "json", "--by", "persona")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    stable = ["seeker", "persona", "n_episodes", "role_break_rate", "parroting", "distinct_2", "fact_coverage",
              "first_fact_turn", "human_likeness"]
    assert list(row)[: len(stable)] == stable and set(row["ci"]) == set(stable[3:]) | {"repeated_turns", "distress_start", "distress_end"}
    assert row["seeker"] == "*" and row["persona"] == "default", "a column not grouped on reads '*'"
    table = await esc_eval("seeker", "eval", str(stores["good"]))
    assert table.returncode == 0 and "first_fact_turn" in table.stdout and "good" in table.stdout


async def test_bad_group_column_is_one_line_exit_2(stores: dict[str, Path]) -> None:
    done = await esc_eval("seeker", "eval", str(stores["good"]), "--by", "supporter")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "supporter" in done.stderr


async def test_human_likeness_through_a_judge_endpoint(stores: dict[str, Path], tmp_path: Path) -> None:
    def rate(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        assert "1. " in prompt and not any(line in prompt for line in SUPPORTER_LINES), "seeker turns only"
        return "0" if "As an AI" in prompt else "4"

    server = await FakeOpenAIServer(responder=rate).start()
    try:
        config = tmp_path / "judge.toml"
        config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "judge"\n')
        rows = await figures({n: stores[n] for n in ("breaker", "good")}, "--judge", str(config))
    finally:
        await server.stop()
    assert rows["breaker"]["human_likeness"] == 0.0 and rows["good"]["human_likeness"] == 4.0
    assert len(server.requests) == 2 * len(CARDS), "one request per episode"


async def test_unrated_episodes_are_counted_not_fatal(stores: dict[str, Path], tmp_path: Path) -> None:
    server = await FakeOpenAIServer(responder=lambda body: "I cannot rate this.").start()
    try:
        config = tmp_path / "judge.toml"
        config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "judge"\n')
        done = await esc_eval("seeker", "eval", str(stores["good"]), "--format", "json", "--judge", str(config))
    finally:
        await server.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["human_likeness"] is None
    assert f"{len(CARDS)} episode(s) got no human-likeness rating" in done.stderr


def test_figures_on_dialogues_of_known_truth() -> None:
    from esc_eval.roles.personas import base_role_break
    from esc_eval.runs.analysis.seeker import distinct_n, episode_figures, fact_timing, overlap, repeated_share, role_breaks

    assert overlap("i feel so alone today", "i feel so alone today") == 1.0
    assert overlap("my boss yelled at me", "how are you feeling") == 0.0
    assert distinct_n(["a b a b"]) == 2 / 3 and distinct_n(["x"]) is None
    assert repeated_share(["Hello there", "hello  THERE", "bye now"]) == 1 / 3
    facts = ("My father passed away last spring", "Work deadlines keep piling up")
    assert fact_timing(facts, ["hi", "work deadlines keep piling up", "my father passed away last spring"], "en") == (1.0, 2.5)
    assert fact_timing(facts, ["hi"], "en") == (0.0, None)
    dialogue = [("supporter", "hello, how are you"), ("seeker", "As an AI, I have no feelings"),
                ("supporter", "I see"), ("seeker", "my father passed away last spring")]
    states = ['{"distress": 7}', '{"distress": 4}']
    fig = episode_figures(dialogue, facts, "en", base_role_break(), states)
    assert (fig.role_break_rate, fig.fact_coverage, fig.first_fact_turn) == (0.5, 0.5, 2.0)
    assert (fig.distress_start, fig.distress_end) == (7.0, 4.0)
    retried = ['{"role_break": null}', '{"role_break": {"cue": "as an ai", "retries": 1, "in_role": true}}']
    assert role_breaks(["fine", "fine again"], retried, base_role_break()) == 0.5, "a break the run retried away still counts"
