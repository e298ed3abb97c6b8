"""Usage stored for every call (docs/cost.md), end to end on the fake server: a short run with a judge and a safety
judge, whose seeker breaks the role once a turn, read back from its JSONL export (``esc-eval export``).

The fake reports ``usage`` at ``ceil(chars / 4)`` per message and logs what it reported per request
(``FakeOpenAIServer.reported``); the stored tokens of each role must add up to exactly that. Without
``usage`` every row is ``estimated`` at the same rate, from the requests the server received, and never 0.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.safety_world import SAFETY_MODEL, respond
from esc_eval.testing.scenarios import write_cards

BROKEN = "As an AI language model, I don't have feelings to share."
SEEKER, SUPPORTERS, JUDGE = "esc-role", ("careful-model", "blind-model"), "judge-model"


def breaking_once(body: dict[str, Any]) -> str:
    """The safety world, but the seeker breaks the role until reminded: every seeker turn takes two requests."""
    messages = body["messages"]
    if body["model"] == SEEKER and "Stay in character: you are" not in messages[0]["content"]:
        return BROKEN
    return respond(body)


def config(path: Path, url: str) -> Path:
    lines = ["[run]", 'name = "usage"', "rounds = 2", "concurrency = 4", "",
             "[cards]", f'path = "{write_cards(path.parent / "cards.jsonl", 2)}"', "",
             "[seeker]", f'base_url = "{url}"', f'model = "{SEEKER}"', "role_break_retries = 1", ""]
    for model in SUPPORTERS:
        lines += ["[[supporters]]", f'name = "{model.removesuffix("-model")}"', f'base_url = "{url}"', f'model = "{model}"', ""]
    lines += ["[judge]", f'base_url = "{url}"', f'model = "{JUDGE}"', "", "[safety]", f'model = "{SAFETY_MODEL}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


async def run_and_export(tmp_path: Path, server: FakeOpenAIServer) -> list[dict[str, Any]]:
    """The episode lines of the run's JSONL export, read as plain JSON."""
    store = tmp_path / "run.sqlite"
    result = await esc_eval("run", str(config(tmp_path / "run.toml", server.base_url)), "--store", str(store), "--no-monitor")
    assert result.returncode == 0, result.stderr
    exported = await esc_eval("export", str(store), "--format", "jsonl", "--out", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
    episodes = [line for line in lines if "store" not in line]
    assert len(episodes) == 4 and {e["status"] for e in episodes} == {"done"}
    return episodes


def rows(episodes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows made by requests, by the model that answered them: generated turns, judge scores, safety judgements."""
    by: dict[str, list[dict[str, Any]]] = {}
    for e in episodes:
        for turn in e["turns"][1:]:  # the opener is no request
            by.setdefault(SEEKER if turn["role"] == "seeker" else f"{e['supporter']}-model", []).append(turn)
        by.setdefault(JUDGE, []).extend(e["scores"])
        by.setdefault(SAFETY_MODEL, []).extend(e["safety"])
    return by


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


async def test_stored_tokens_equal_what_the_server_reported_role_break_retries_included(tmp_path: Path) -> None:
    async with FakeOpenAIServer(responder=breaking_once) as server:
        episodes = await run_and_export(tmp_path, server)
    by = rows(episodes)
    reported: dict[str, Counter[str]] = {}
    for model, prompt, completion in server.reported:
        reported.setdefault(model, Counter()).update(prompt=prompt, completion=completion, requests=1)
    assert set(by) == set(reported) == {SEEKER, *SUPPORTERS, JUDGE, SAFETY_MODEL}
    for model, stored in by.items():
        assert sum(r["prompt_tokens"] for r in stored) == reported[model]["prompt"] > 0, model
        assert sum(r["completion_tokens"] for r in stored) == reported[model]["completion"] > 0, model
        assert {(r["usage"], r["cached"]) for r in stored} == {("reported", 0)}, model
    seeker_turns = by[SEEKER]
    assert reported[SEEKER]["requests"] == 2 * len(seeker_turns)  # every seeker turn broke the role once
    for turn in seeker_turns:  # the kept reply's tokens and the discarded one's
        assert turn["state"]["role_break"]["discarded"] == [BROKEN]
        assert turn["completion_tokens"] == tokens(BROKEN) + tokens(turn["text"])
    for row in by[JUDGE] + by[SAFETY_MODEL]:  # one request each, its own counts
        assert row["completion_tokens"] == tokens(row["raw"])
    assert len(by[SAFETY_MODEL]) == 4 and len(by[JUDGE]) == reported[JUDGE]["requests"]

    # the store's records expose the same columns
    with Store.open(tmp_path / "run.sqlite", readonly=True) as store:
        scores = store.scores()
        assert sorted((s.prompt_tokens, s.completion_tokens) for s in scores) == sorted(
            (r["prompt_tokens"], r["completion_tokens"]) for r in by[JUDGE])
        assert {t.usage for t in store.turns()} == {"reported"}


async def test_a_server_without_usage_gives_estimated_rows_never_zero(tmp_path: Path) -> None:
    async with FakeOpenAIServer(responder=breaking_once, usage=False) as server:
        episodes = await run_and_export(tmp_path, server)
    assert not server.reported
    by = rows(episodes)
    sent: dict[str, int] = Counter()
    for body in server.requests:
        sent[body["model"]] += sum(tokens(m["content"]) for m in body["messages"])
    for model, stored in by.items():
        assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in stored), model
        assert {r["usage"] for r in stored} == {"estimated"}, model
        assert sum(r["prompt_tokens"] for r in stored) == sent[model], model  # ceil(chars / 4) per message sent
    for turn in by[SEEKER]:
        assert turn["completion_tokens"] == tokens(BROKEN) + tokens(turn["text"])
    for row in by[JUDGE] + by[SAFETY_MODEL]:
        assert row["completion_tokens"] == tokens(row["raw"])
