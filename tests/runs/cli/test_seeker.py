"""``esc-eval seeker eval SOURCE --reference HUMAN.json``: the command's shape, its pairs and its refusals.

The dialogues here are generated (no ESConv needed); the validity of the figures is
``tests/runs/analysis/test_realism.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.loaders import builtin_cards
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval

CARDS = builtin_cards("en")[:4]
SEEKER_LINES = ["i don't know, my job has been awful lately", "Maybe I'm just tired.", "But I already tried that.",
                "My mom keeps telling me to move on?", "yeah that makes sense", "I feel so alone at night",
                "Thanks, I feel a bit better now.", "we broke up last month and i can't stop thinking about it"]
SUPPORTER_LINES = ["Hello, what is on your mind?", "You could try talking to a friend.", "That sounds really hard.",
                   "How long has this been going on?", "I hear you."]
REALISM_KEYS = {"reference", "n_reference", "rounds", "auc", "auc_ci", "index", "features", "pairs"}


def _dialogues(count: int, seed: int, seeker: Sequence[str] = SEEKER_LINES) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        dialog = [{"speaker": "supporter", "content": rng.choice(SUPPORTER_LINES)}]
        for _ in range(rng.randint(4, 7)):
            dialog += [{"speaker": "seeker", "content": rng.choice(seeker)}]
            if rng.random() < 0.3:  # a turn split in two utterances, as ESConv often has
                dialog += [{"speaker": "seeker", "content": rng.choice(seeker)}]
            dialog += [{"speaker": "supporter", "content": rng.choice(SUPPORTER_LINES)}]
        found.append({"dialog": dialog})
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seeker-cli")
    paths = {"human": root / "human.json", "people": root / "people.json", "zh": root / "zh.json"}
    paths["human"].write_text(json.dumps(_dialogues(40, 1)), encoding="utf-8")
    paths["people"].write_text(json.dumps(_dialogues(40, 2)), encoding="utf-8")
    paths["zh"].write_text(json.dumps(_dialogues(20, 3, ["我最近工作压力很大，不知道怎么办。", "谢谢你，我感觉好多了"]),
                                      ensure_ascii=False), encoding="utf-8")
    paths["report"] = root / "build-report.json"
    paths["report"].write_text(json.dumps({"counts": {}, "cards": [{"id": c.id, "item": f"human:{n}"} for n, c in enumerate(CARDS, 1)]}),
                               encoding="utf-8")
    paths["store"] = asyncio.run(_store(root / "run.sqlite"))
    return paths


def _seeker(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return SEEKER_LINES[sum(m["role"] == "assistant" for m in messages) % len(SEEKER_LINES)]


def _supporter(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return SUPPORTER_LINES[sum(m["role"] == "assistant" for m in messages) % len(SUPPORTER_LINES)]


async def _store(path: Path) -> Path:
    config = parse_config({"run": {"rounds": 5, "concurrency": 4}, "cards": {"language": "en", "limit": len(CARDS)},
                           "seeker": {"base_url": "http://127.0.0.1:9/v1", "model": "scripted"},
                           "supporters": [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "a"}]})
    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint(), personas=plan.personas())
    result = await Runner(plan, store, backends={"seeker": ScriptedBackend(_seeker), "a": ScriptedBackend(_supporter)}).run()
    assert result.exit_code == 0
    return path


@pytest.mark.slow  # three runs of the command: ~50 s on the shared 2-core machine
async def test_a_dialogues_file_against_a_reference(files: dict[str, Path]) -> None:
    done = await esc_eval("seeker", "eval", str(files["people"]), "--reference", str(files["human"]), "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (row["seeker"], row["persona"], row["n_episodes"]) == ("people", None, 40)
    realism = row["realism"]
    assert set(realism) == REALISM_KEYS and realism["n_reference"] == 40 and realism["pairs"] == []
    assert realism["rounds"] == 7, "the most seeker turns a source dialogue has, split turns merged"
    low, high = realism["auc_ci"]
    assert 0 <= low <= realism["auc"] <= high <= 1 and 0 <= realism["index"] <= 100
    assert set(realism["features"]["agreement"]) == {"simulated", "human", "distance", "normalised"}
    again = await esc_eval("seeker", "eval", str(files["people"]), "--reference", str(files["human"]), "--format", "json")
    assert again.stdout == done.stdout, "same seed, same figures"
    table = await esc_eval("seeker", "eval", str(files["people"]), "--reference", str(files["human"]))
    assert table.returncode == 0 and "realism" in table.stdout and f"{realism['index']:.0f}" in table.stdout


async def test_pairs_from_the_cards_report(files: dict[str, Path]) -> None:
    done = await esc_eval("seeker", "eval", str(files["store"]), "--reference", str(files["human"]),
                          "--cards-report", str(files["report"]), "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    pairs = row["realism"]["pairs"]
    assert sorted(p["card"] for p in pairs) == sorted(c.id for c in CARDS)
    human = json.loads(files["human"].read_text(encoding="utf-8"))
    with Store.open(files["store"], readonly=True) as store:
        keys = {e.key: e.card_id for e in store.episodes(status="done")}
    for pair in pairs:
        assert keys[pair["episode"]] == pair["card"], "the episode played the card it is paired by"
        number = int(pair["item"].split(":")[1])
        first = next(u["content"] for u in human[number - 1]["dialog"] if u["speaker"] == "seeker")
        assert pair["human"][0].startswith(first), "the person the card came from, in their own words"
        assert pair["simulated"][0] == SEEKER_LINES[0]
        assert pair["distance"] >= 0 and all(d is None or d >= 0 for d in pair["distances"].values())


@pytest.mark.parametrize("case", ["language", "report-alone", "bad-reference", "unmatched-report", "missing-reference"])
async def test_refusals_are_one_line_exit_2(files: dict[str, Path], tmp_path: Path, case: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"dialog": [{"speaker": "listener", "content": "hi"}]}]), encoding="utf-8")
    other = tmp_path / "build-report.json"
    other.write_text(json.dumps({"cards": [{"id": c.id, "item": f"elsewhere:{n}"} for n, c in enumerate(CARDS)]}), encoding="utf-8")
    args, says = {
        "language": ((str(files["people"]), "--reference", str(files["zh"])), "'zh'"),
        "report-alone": ((str(files["store"]), "--cards-report", str(files["report"])), "--reference"),
        "bad-reference": ((str(files["people"]), "--reference", str(bad)), "record 1: dialog turn 1"),
        "unmatched-report": ((str(files["store"]), "--reference", str(files["human"]), "--cards-report", str(other)), "human:1"),
        "missing-reference": ((str(files["people"]), "--reference", str(tmp_path / "nope.json")), "no such file"),
    }[case]
    done = await esc_eval("seeker", "eval", *args, "--format", "json")
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
