"""Several seekers in one run (``[[seekers]]``): the plan crosses seekers x supporters x cards, the store
records each episode's seeker, and ``seeker eval``, ``report``, exports and resume keep the seekers apart.

The seekers and supporters are scripted to known behaviour: ``steady`` stays in role, ``breaker`` breaks
role on every turn; the judge prefers supporter ``a`` when ``steady`` plays and ``b`` when ``breaker`` does,
so the two seekers rank the supporters in reverse order (Kendall's tau = -1 on every card).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.resume import open_run_store
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval

URL = "http://127.0.0.1:9/v1"
CARDS, ROUNDS = 3, 2
SEEKERS, SUPPORTERS = ("steady", "breaker"), ("a", "b")
BREAK = "As an AI language model, I don't have feelings, but stress is common."
FEELINGS = ["I keep replaying it at night.", "Some days I can't get out of bed.", "My chest gets tight about it."]


def steady(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return FEELINGS[sum(m["role"] == "assistant" for m in messages) % len(FEELINGS)]


def breaker(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return BREAK


def supporter(name: str):  # type: ignore[no-untyped-def]
    def script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return f"Supporter {name} hears you, turn {len(messages)}."
    return script


def judge(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    prompt = " ".join(m["content"] for m in messages)
    prefers = "b" if "As an AI language model" in prompt else "a"
    return "Score: 4" if f"Supporter {prefers} " in prompt else "Score: 1"


def config(**run: Any):  # type: ignore[no-untyped-def]
    return parse_config({
        "run": {"rounds": ROUNDS, "concurrency": 2, **run},
        "cards": {"language": "en", "limit": CARDS},
        "seekers": [{"name": name, "base_url": URL, "model": f"{name}-model"} for name in SEEKERS],
        "supporters": [{"name": name, "base_url": URL, "model": name} for name in SUPPORTERS],
        "judge": {"base_url": URL, "model": "judge"},
    })


def backends() -> dict[str, ScriptedBackend]:
    return {"seeker:steady": ScriptedBackend(steady), "seeker:breaker": ScriptedBackend(breaker),
            **{name: ScriptedBackend(supporter(name)) for name in SUPPORTERS}, "judge": ScriptedBackend(judge)}


async def run(path: Path, *, create: bool, stop_after: int | None = None) -> tuple[Any, dict[str, ScriptedBackend]]:
    plan = RunPlan.prepare(config())
    store = open_run_store(plan, path, resume=not create).store  # a resume checks the fingerprint as `esc-eval run --resume` does
    used = backends()
    runner = Runner(plan, store, backends=used)
    if stop_after is not None:
        ended = runner.progress.ended

        def stop(message):  # type: ignore[no-untyped-def]
            ended(message)
            if runner.progress.done == stop_after:
                runner.stop_admitting()

        runner.progress.ended = stop  # type: ignore[method-assign]
    return await runner.run(), used


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    path = tmp_path_factory.mktemp("seekers") / "run.sqlite"
    result, _ = asyncio.run(run(path, create=True))
    assert result.exit_code == 0
    return path


def test_the_plan_crosses_seekers_supporters_and_cards_card_major() -> None:
    planned = [p for p, _ in RunPlan.prepare(config()).episodes()]
    assert len(planned) == len(SEEKERS) * len(SUPPORTERS) * CARDS
    assert [(p.card_index, p.seeker, p.supporter) for p in planned[:4]] == [
        (0, "steady", "a"), (0, "steady", "b"), (0, "breaker", "a"), (0, "breaker", "b")]
    assert planned[0].key == "steady/a/default/00000-en-001/s0/r0"
    assert len({p.key for p in planned}) == len({p.seed for p in planned}) == len(planned)


def test_the_store_holds_every_seekers_episodes(store_path: Path) -> None:
    with Store.open(store_path, readonly=True) as store:
        episodes = store.episodes()
        assert store.seekers() == list(SEEKERS)
        transcripts = {e.key: store.transcript(e.key) for e in episodes}
        plugins = store.meta("plugins")
    assert len(episodes) == len(SEEKERS) * len(SUPPORTERS) * CARDS and {e.status for e in episodes} == {"done"}
    assert {(e.seeker, e.supporter) for e in episodes} == {(k, s) for k in SEEKERS for s in SUPPORTERS}
    for e in episodes:  # each seeker's own backend played its episodes
        seeker_lines = [text for role, text in transcripts[e.key] if role == "seeker"]
        assert len(seeker_lines) == ROUNDS and (set(seeker_lines) == {BREAK}) == (e.seeker == "breaker"), e.key
    assert plugins["backends"] == {"seeker:steady": "openai", "seeker:breaker": "openai", "a": "openai", "b": "openai", "judge": "openai"}


async def test_seeker_eval_reports_a_row_per_seeker(store_path: Path) -> None:
    done = await esc_eval("seeker", "eval", str(store_path), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["seeker"]: row for row in json.loads(done.stdout)}
    assert set(rows) == set(SEEKERS)
    assert {name: row["n_episodes"] for name, row in rows.items()} == {"steady": 6, "breaker": 6}
    assert rows["breaker"]["role_break_rate"] == 1.0 and rows["steady"]["role_break_rate"] == 0.0


async def test_report_gives_a_section_per_seeker_and_their_rank_agreement(store_path: Path) -> None:
    done = await esc_eval("report", str(store_path), "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["by"] == ["seeker", "supporter"]
    fluency = {tuple(r["group"].values()): r["scores"]["fluency"]["value"] for r in data["rows"]}
    assert fluency == {("steady", "a"): 100.0, ("steady", "b"): 25.0, ("breaker", "a"): 25.0, ("breaker", "b"): 100.0}
    agreement = {r["dimension"]: r for r in data["seeker_agreement"]}
    assert set(agreement) == set(data["dimensions"][i]["key"] for i in range(len(data["dimensions"])))
    overall = agreement["overall"]
    assert (overall["a"], overall["b"], overall["kendall_tau"], overall["n_supporters"], overall["n_cards"]) == (
        "steady", "breaker", -1.0, 2, CARDS)
    assert overall["ci_low"] == overall["ci_high"] == -1.0
    assert overall["too_few_supporters"] and overall["p_value"] is None  # 2 supporters: no p could reach 0.05
    table = await esc_eval("report", str(store_path))
    assert table.returncode == 0 and "rank agreement between seekers" in table.stdout and "steady ~ breaker" in table.stdout
    by_supporter = json.loads((await esc_eval("report", str(store_path), "--by", "supporter", "--format", "json")).stdout)
    assert [tuple(r["group"].values()) for r in by_supporter["rows"]] == [("a",), ("b",)]


async def test_esc_eval_export_never_mixes_seekers_in_one_file(store_path: Path, tmp_path: Path) -> None:
    done = await esc_eval("export", str(store_path), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2 seekers played this store" in done.stderr
    names = sorted(p.name for p in tmp_path.glob("result_*.json"))
    assert names == sorted(f"result_{s}-with-{k}_en.json" for s in SUPPORTERS for k in SEEKERS)
    breaker_file = json.loads((tmp_path / "result_a-with-breaker_en.json").read_text(encoding="utf-8"))
    assert list(breaker_file) == ["0", "1", "2"]
    assert all(any(BREAK in line for line in lines) for lines in breaker_file.values())


async def test_jsonl_round_trip_carries_the_seeker(store_path: Path, tmp_path: Path) -> None:
    assert (await esc_eval("export", str(store_path), "--format", "jsonl", "--out", str(tmp_path))).returncode == 0
    _, *lines = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]  # store line first
    assert {line["seeker"] for line in lines} == set(SEEKERS)
    copy = tmp_path / "copy.sqlite"
    done = await esc_eval("import", str(copy), str(tmp_path / "episodes.jsonl"))
    assert done.returncode == 0, done.stderr
    with Store.open(store_path, readonly=True) as old, Store.open(copy, readonly=True) as new:
        assert {(e.key, e.seeker) for e in new.episodes()} == {(e.key, e.seeker) for e in old.episodes()}
    newer = ("seeker", "ordinal", "annotations", "safety", "safety_annotations")
    old_line = {k: v for k, v in lines[0].items() if k not in newer}  # a file from before [[seekers]]
    old_line["format_version"] = 2
    (tmp_path / "old.jsonl").write_text(json.dumps(old_line) + "\n", encoding="utf-8")
    assert (await esc_eval("import", str(tmp_path / "old.sqlite"), str(tmp_path / "old.jsonl"))).returncode == 0
    with Store.open(tmp_path / "old.sqlite", readonly=True) as imported:
        assert [e.seeker for e in imported.episodes()] == [""]


async def test_resuming_a_half_done_run_adds_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    first, _ = await run(path, create=True, stop_after=5)
    assert 5 <= first.progress.done < 12, "the first attempt stopped early"
    with Store.open(path, readonly=True) as store:
        before = {e.key: e for e in store.episodes() if e.status == "done"}
        scored = {(s.episode_key, s.dimension) for s in store.scores()}
    second, used = await run(path, create=False)
    assert second.exit_code == 0 and second.progress.skipped == len(before)
    assert second.progress.done == 12 - len(before)
    left = {k: len(SUPPORTERS) * CARDS - sum(e.seeker == k for e in before.values()) for k in SEEKERS}
    asked = {k: len(used[f"seeker:{k}"].requests) for k in SEEKERS}
    # only the unfinished episodes were played again; each breaker line is asked for 1 + 2 times (role-break retries)
    assert asked == {"steady": left["steady"] * ROUNDS, "breaker": left["breaker"] * ROUNDS * 3}
    with Store.open(path, readonly=True) as store:
        episodes = store.episodes()
        scores = store.scores()
        assert len(episodes) == 12 and {e.status for e in episodes} == {"done"}
        assert all(e.attempts == 1 for e in episodes if e.key in before), "a finished episode ran again"
        assert all(len(store.transcript(e.key)) == 2 * ROUNDS + 1 for e in episodes)
    assert len(scores) == len({(s.episode_key, s.dimension) for s in scores}) == 12 * 7
    assert scored <= {(s.episode_key, s.dimension) for s in scores}
    assert {(e.seeker, e.supporter) for e in episodes} == {(k, s) for k in SEEKERS for s in SUPPORTERS}


async def test_a_config_with_two_seekers_runs_through_the_cli_on_a_real_server(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """From the TOML file on: one backend per seeker endpoint, each episode's seeker lines from its own model."""
    server = await fake_server(responder=lambda body: f"line from {body['model']}")
    config = tmp_path / "run.toml"
    config.write_text("\n".join([
        "[run]", "rounds = 2", "concurrency = 4", "", "[cards]", 'language = "en"', "limit = 2", "",
        *(f'[[seekers]]\nname = "{name}"\nbase_url = "{server.base_url}"\nmodel = "{name}-model"\n' for name in ("x", "y")),
        *(f'[[supporters]]\nname = "{name}"\nbase_url = "{server.base_url}"\nmodel = "{name}-model"\n' for name in ("a", "b", "c")),
    ]), encoding="utf-8")
    store_path = tmp_path / "run.sqlite"
    done = await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor")
    assert done.returncode == 0, done.stderr
    with Store.open(store_path, readonly=True) as store:
        episodes = store.episodes(status="done")
        lines = {e.key: {text for role, text in store.transcript(e.key) if role == "seeker"} for e in episodes}
    assert len(episodes) == 2 * 3 * 2
    assert all(lines[e.key] == {f"line from {e.seeker}-model"} for e in episodes)
    monitor = await esc_eval("monitor", str(store_path), "--once")
    assert monitor.returncode == 0, monitor.stderr
    again = await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor", "--resume")
    assert again.returncode == 0, again.stderr
    with Store.open(store_path, readonly=True) as store:
        assert [e.attempts for e in store.episodes()] == [1] * 12, "a resume of a finished run plays nothing again"
