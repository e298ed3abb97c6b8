"""Imports never merge silently: another run's export, an episode changed since, a score file of another
model are refused (exit 2, one line) and leave the store byte-identical; ESC-Eval files of several
personas import back as supporter + persona.

Two real runs (``Runner`` with scripted backends, stores made as ``esc-eval run`` makes them) share
their episode keys but not their dialogues: ``alpha`` plays 3 rounds, ``beta`` 2 -- the case where
"skipped 12 already in the store" used to drop 12 different dialogues.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest

from esc_eval.runs.formats.archive import export_jsonl
from esc_eval.runs.store import Store
from tests.runs.formats.helpers import cli, content, format_2, lines_of, make_run

TABLES = ["episodes", "turns", "scores", "annotations", "events", "runs"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    return {"alpha": asyncio.run(make_run(folder / "alpha.sqlite", rounds=3)),
            "beta": asyncio.run(make_run(folder / "beta.sqlite", rounds=2))}


@pytest.fixture(scope="module")
def archives(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    out = {}
    for name, path in runs.items():
        with Store.open(path, readonly=True) as store:
            [out[name]] = export_jsonl(store, folder / name)
    return out


def fingerprint(path: Path) -> str:
    with Store.open(path, readonly=True) as store:
        return str(store.meta("fingerprint"))


def refused(capsys: pytest.CaptureFixture[str], store: Path, *args: object) -> str:
    """Run ``esc-eval import STORE ARGS``; assert exit 2, one line, and a byte-identical store with nothing beside it."""
    before = store.read_bytes() if store.exists() else None
    code, out, err = cli(capsys, "import", store, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert (store.read_bytes() if store.exists() else None) == before
    assert not store.with_name(store.name + "-wal").exists() and not store.with_name(store.name + "-shm").exists()
    return err


def test_the_two_runs_share_keys_but_not_dialogues(runs: dict[str, Path]) -> None:
    alpha, beta = (content(runs[name], tables=["episodes", "turns"]) for name in ("alpha", "beta"))
    assert [e["key"] for e in alpha["episodes"]] == [e["key"] for e in beta["episodes"]]
    assert len(alpha["turns"]) != len(beta["turns"]) and fingerprint(runs["alpha"]) != fingerprint(runs["beta"])


def test_another_runs_export_is_refused_unless_merge_and_a_changed_episode_even_then(
        runs: dict[str, Path], archives: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "alpha.sqlite"
    shutil.copy(runs["alpha"], target)
    err = refused(capsys, target, archives["beta"])
    assert f"has run {fingerprint(runs['beta'])}, but {target} holds run {fingerprint(runs['alpha'])}" in err
    assert "would mix two runs" in err and "--merge" in err

    err = refused(capsys, target, archives["beta"], "--merge")  # same keys, other dialogues: never skipped
    named = re.search(rf"episode '([^']+)' is in {re.escape(str(target))} already with different content \(", err)
    assert named and named[1] in {e["key"] for e in content(runs["alpha"], tables=["episodes"])["episodes"]}
    assert "nothing imported" in err

    old = tmp_path / "alpha-v2.jsonl"  # a format-2 export has no fingerprint: refused without --merge, however equal
    old.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in format_2(lines_of(archives["alpha"]))) + "\n", encoding="utf-8")
    assert "has no run fingerprint" in refused(capsys, target, old)
    snapshot = content(target, tables=TABLES)
    code, out, err = cli(capsys, "import", target, old, "--merge")
    n = len(snapshot["episodes"])
    assert code == 0, err
    assert f"0 episodes (0 done, 0 failed), 0 turns, 0 scores; skipped {n} already in the store" in out
    assert content(target, tables=TABLES) == snapshot


def test_a_store_without_fingerprint_takes_any_import_but_never_a_changed_episode(
        archives: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = tmp_path / "made.sqlite"  # a store made by importing ESC-Eval files: no fingerprint
    result = tmp_path / "result_gpt_en.json"
    result.write_text(json.dumps({"0": ["AI assistant：Hi.", "ESC-Role：I can't sleep."]}, ensure_ascii=False), encoding="utf-8")
    assert cli(capsys, "import", made, result)[0] == 0
    code, out, err = cli(capsys, "import", made, archives["beta"])
    assert code == 0, err
    beta = lines_of(archives["beta"])
    with Store.open(made, readonly=True) as store:
        assert store.meta("fingerprint") is None  # a store with episodes never takes over an archive's run
        record = store.meta("imports")[-1]
        assert record["fingerprint"] == beta[0]["store"]["meta"]["fingerprint"] and record["meta"]["config"]
        assert record["runs"] == beta[0]["store"]["tables"]["runs"]  # another store's invocations: on record, not in `runs`
        assert not store.table_rows("runs") and len(store.episodes()) == 1 + len(beta) - 1
    assert f"{len(beta[0]['store']['tables']['events'])} events; skipped 0" in out
    err = refused(capsys, made, archives["alpha"], "--merge")
    assert "already with different content" in err


def test_an_esc_eval_file_changed_since_its_import_is_refused_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, score = tmp_path / "result_gpt_en.json", tmp_path / "score_gpt_en.json"
    result.write_text(json.dumps({"0": ["AI assistant：Hi.", "ESC-Role：I can't sleep."], "1": ["AI assistant：Hi.", "ESC-Role：Work."]},
                                 ensure_ascii=False), encoding="utf-8")
    score.write_text(json.dumps({"0": {"empathic": 3}, "1": {"empathic": 2}}), encoding="utf-8")
    store = tmp_path / "s.sqlite"
    assert cli(capsys, "import", store, result, "--scores", score)[0] == 0
    code, out, _ = cli(capsys, "import", store, result, "--scores", score)
    assert code == 0 and "0 episodes, 0 scores (supporter gpt, language en) with" in out and "skipped 2 already in the store" in out
    code, out, _ = cli(capsys, "import", store, result)  # without its score file the file says nothing about scores
    assert code == 0 and "skipped 2" in out

    score.write_text(json.dumps({"0": {"empathic": 3}, "1": {"empathic": 4}}), encoding="utf-8")
    err = refused(capsys, store, result, "--scores", score, "--merge")
    assert "episode 'gpt/default/en-00001/imported/r0' is in" in err and "scores differ at dimension empathic" in err
    result.write_text(json.dumps({"0": ["AI assistant：Hi.", "ESC-Role：I sleep fine."]}, ensure_ascii=False), encoding="utf-8")
    err = refused(capsys, store, result)
    assert "episode 'gpt/default/en-00000/imported/r0'" in err and "turns differ at idx 1" in err


def test_a_score_file_named_for_another_model_is_refused_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, score = tmp_path / "result_alpha_en.json", tmp_path / "score_beta_en.json"
    result.write_text(json.dumps({"0": ["AI assistant：Hi.", "ESC-Role：Hello."]}, ensure_ascii=False), encoding="utf-8")
    score.write_text(json.dumps({"0": {"fluency": 2}}), encoding="utf-8")
    err = refused(capsys, tmp_path / "new.sqlite", result, "--scores", score)
    assert "score_beta_en.json: is named for beta (en), not alpha (en)" in err and "--force" in err
    assert not (tmp_path / "new.sqlite").exists()
    existing = tmp_path / "existing.sqlite"
    assert cli(capsys, "import", existing, result)[0] == 0
    refused(capsys, existing, result, "--scores", score)
    code, out, err = cli(capsys, "import", tmp_path / "forced.sqlite", result, "--scores", score, "--force")
    assert code == 0 and "1 episodes, 1 scores (supporter alpha, language en)" in out, err


def test_esc_eval_files_of_several_personas_import_back_as_supporter_and_persona(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "esc"
    code, _, err = cli(capsys, "export", runs["alpha"], "--out", out, "--allow-missing")
    assert code == 0, err
    results = sorted(p.name for p in out.glob("result_*.json"))
    assert results == ["result_a+leaves-when-satisfied_en.json", "result_a_en.json",
                       "result_b+leaves-when-satisfied_en.json", "result_b_en.json"]
    back = tmp_path / "back.sqlite"
    code, text, err = cli(capsys, "import", back, *sorted(out.glob("result_*.json")), "--scores", *sorted(out.glob("score_*.json")))
    assert code == 0, err
    assert "(supporter a, persona leaves-when-satisfied, language en)" in text
    with Store.open(runs["alpha"], readonly=True) as source, Store.open(back, readonly=True) as store:
        imported = {(e.supporter, e.persona, e.card_index): store.transcript(e.key) for e in store.episodes()}
        played = {(e.supporter, e.persona, e.card_index): source.transcript(e.key) for e in source.episodes(status="done")}
    assert imported == played and {s for s, _, _ in imported} == {"a", "b"}
