"""Round trips: a run's store, exported as JSONL (a lossless archive) and imported into a fresh store, is the
same store, table by table, and ``--resume`` takes it; format-2 files still import; ESC-Eval score exports
never hide a failed judgement.

The source store is a real run (``tests.runs.formats.helpers.make_run``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.execution.resume import open_run_store
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store, schema
from tests.runs.formats.helpers import SECRET, backends, cli, content, export, format_2, lines_of, make_run, run_config


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asyncio.run(make_run(tmp_path_factory.mktemp("source") / "run.sqlite"))


def test_the_source_store_holds_what_a_round_trip_must_keep(source: Path) -> None:
    """Else the comparisons below could pass on a store without the hard parts."""
    tables = content(source)
    episodes, turns, scores = tables["episodes"], tables["turns"], tables["scores"]
    assert {e["persona"] for e in episodes} == {"leaves-when-satisfied", "default"} and {e["supporter"] for e in episodes} == {"a", "b"}
    assert {e["outcome"] for e in episodes} == {"terminated", "truncated", "failed"}
    assert all(e["reason"] for e in episodes) and any("supporter b is down" in e["reason"] for e in episodes if e["status"] == "failed")
    assert {e["category"] for e in episodes} != {"unknown"} and all(e["card_id"] and e["seed"] for e in episodes)
    assert any(t["state"] for t in turns) and any(t["prompt_tokens"] for t in turns)
    failed = [s for s in scores if s["status"] == "failed"]
    assert failed and all(s["label"] is None and "empathy adapter not loaded" in s["error"] for s in failed)
    assert all(s["raw"] and s["model"] for s in scores if s["status"] == "ok")
    # the judge's tokens (docs/cost.md): counted by the scripted backend, unknown (NULL) where the request failed
    assert all(s["prompt_tokens"] and s["completion_tokens"] and s["usage"] == "counted" for s in scores if s["status"] == "ok")
    assert all(s["prompt_tokens"] is None and s["completion_tokens"] is None for s in failed)
    assert {t["usage"] for t in turns} == {"reported", "counted"}  # the opener (no request) and the generated lines
    assert any(s["label"] == -1 for s in scores) and {s["round"] for s in scores} >= {-1, 1, 2}
    assert {s["sample"] for s in scores} == {0, 1}  # k = 2 judge samples of each dimension
    assert len(tables["annotations"]) >= 4 and len({a["annotator"] for a in tables["annotations"]}) == 2
    assert tables["events"] and len(tables["runs"]) == 1 and tables["runs"][0]["status"] == "finished"
    meta = {row["key"] for row in tables["meta"]}
    assert meta >= {"config", "fingerprint", "personas", "plugins", "versions", "seed", "created_at", "backends"}
    with Store.open(source, readonly=True) as store:
        assert store.meta("annotation_secret") == SECRET


def test_jsonl_archive_restores_the_store_table_by_table_and_resume_takes_it(source: Path, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = content(source)
    archive = export(source, tmp_path / "out", capsys)
    assert SECRET not in archive.read_text(encoding="utf-8")  # the annotation server's secret never leaves the store
    records = lines_of(archive)
    assert all(r["format_version"] == 3 for r in records) and set(records[0]) == {"format_version", "store"}
    assert len(records) == 1 + len(before["episodes"])
    failed_score = next(s for r in records[1:] for s in r["scores"] if s["status"] == "failed")
    assert failed_score["label"] is None and "empathy adapter not loaded" in failed_score["error"]

    fresh = tmp_path / "fresh.sqlite"
    code, out, err = cli(capsys, "import", fresh, archive)
    assert code == 0, err
    n, failed = len(before["episodes"]), sum(e["status"] == "failed" for e in before["episodes"])
    tables = ", ".join(f"{len(before[t])} {t}" for t in (*schema.episode_tables(), "events", "runs") if before[t] or t in ("turns", "scores"))
    assert f"{n} episodes ({n - failed} done, {failed} failed), {tables}; skipped 0" in out
    assert "--resume" in out
    after = content(fresh)
    assert set(after) == set(before)
    for table in before:  # table by table: row counts and contents
        assert after[table] == before[table], table
    with Store.open(fresh, readonly=True) as store:
        assert store.meta("annotation_secret") is None
        [record] = store.meta("imports")
        assert record["fingerprint"] == store.meta("fingerprint") and record["episodes"] == n

    # --resume takes the imported store: same fingerprint, nothing left to run
    plan = RunPlan.prepare(run_config())
    result = asyncio.run(Runner(plan, open_run_store(plan, fresh, resume=True).store, backends=backends()).run())
    assert result.idle  # nothing planned is missing: no backend was started
    resumed = content(fresh, tables=["episodes", "turns", "scores", "annotations"])
    assert resumed == {t: before[t] for t in resumed}

    # again, and into the store it came from: nothing new, every episode skipped and counted
    for target in (fresh, source):
        snapshot = content(target, tables=["episodes", "turns", "scores", "annotations", "events"])
        code, out, err = cli(capsys, "import", target, archive)
        assert code == 0, err
        assert f"0 episodes (0 done, 0 failed), 0 turns, 0 scores; skipped {n} already in the store" in out
        assert content(target, tables=list(snapshot)) == snapshot


def test_format_2_exports_still_import_judge_samples_included(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 30 item 8: a line with two samples of one dimension imports (format 2 refused it before)."""
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in format_2(lines_of(export(source, tmp_path, capsys)))) + "\n",
                   encoding="utf-8")
    fresh = tmp_path / "old.sqlite"
    code, _, err = cli(capsys, "import", fresh, old)
    assert code == 0, err
    before, after = content(source), content(fresh)
    for table in ("episodes", "turns", "scores"):
        assert after[table] == before[table], table
    assert not after["annotations"] and not after["runs"]  # format 2 never carried them
    with Store.open(fresh, readonly=True) as store:
        assert store.meta("fingerprint") is None and store.meta("origin") == "esc-eval import"


_USAGE = {"turns": ("usage", "cached"), "scores": ("prompt_tokens", "completion_tokens", "usage", "cached")}
"""The columns store schema 4 added (docs/cost.md), which exports written before it lack."""


def test_an_export_from_before_usage_imports_with_unknown_judge_tokens(source: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    records = lines_of(export(source, tmp_path, capsys))
    assert any(s["prompt_tokens"] for r in records[1:] for s in r["scores"])  # the new columns travel ...
    for record in records[1:]:
        for table, columns in _USAGE.items():
            record[table] = [{k: v for k, v in row.items() if k not in columns} for row in record[table]]
    old = tmp_path / "before-usage.jsonl"
    old.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    fresh = tmp_path / "before-usage.sqlite"
    code, _, err = cli(capsys, "import", fresh, old)
    assert code == 0, err
    before, after = content(source), content(fresh)
    assert len(after["scores"]) == len(before["scores"]) and len(after["turns"]) == len(before["turns"])
    assert all(s["prompt_tokens"] is None and s["completion_tokens"] is None for s in after["scores"])  # ... and unknown without them
    assert [t["prompt_tokens"] for t in after["turns"]] == [t["prompt_tokens"] for t in before["turns"]]


def test_esc_eval_score_export_refuses_missing_scores_unless_allowed(source: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "run.sqlite"
    shutil.copy(source, store)
    conn = sqlite3.connect(store)
    failed = conn.execute("SELECT COUNT(*), COUNT(DISTINCT s.episode_key) FROM scores s JOIN episodes e ON e.key=s.episode_key"
                          " WHERE e.status='done' AND s.round=-1 AND s.sample=0 AND s.status='failed'").fetchone()
    # one more hole: a judgement that never ran, in a dialogue with no failed one
    gone, card = conn.execute("SELECT e.key, e.card_index FROM episodes e WHERE e.status='done' AND e.supporter='a'"
                              " AND e.persona='default' ORDER BY e.ordinal LIMIT 1").fetchone()
    conn.execute("DELETE FROM scores WHERE episode_key=? AND dimension='fluency' AND round=-1", (gone,))
    conn.commit()
    conn.close()
    assert failed[0] > 0

    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "export", store, "--out", out)
    assert code == 1 and not out.exists()  # refused before writing anything
    assert f"{failed[1] + 1} dialogues lack {failed[0] + 1} judge scores ({failed[0]} failed, 1 never scored)" in err
    assert "--resume --retry-failed" in err and "--allow-missing" in err and len(err.strip().splitlines()) == 1

    code, stdout, err = cli(capsys, "export", store, "--out", out, "--allow-missing")
    assert code == 0 and f"lack {failed[0] + 1} judge scores ({failed[0]} failed, 1 never scored)" in err and "wrote -1" in err
    written = sorted(p.name for p in out.iterdir())
    assert "score_b_en.json" in written and "score_a_en.json" in written
    b = json.loads((out / "score_b_en.json").read_text(encoding="utf-8"))
    assert all(labels["empathic"] == -1 and len(labels) == 7 for labels in b.values())
    a = json.loads((out / "score_a_en.json").read_text(encoding="utf-8"))
    assert [index for index, labels in a.items() if labels["fluency"] == -1] == [str(card)] and all(len(labels) == 7 for labels in a.values())
    assert all(labels["overall"] == -1 for labels in a.values())  # the judge's unparsed answers, -1 as before


def test_jsonl_export_of_a_store_without_holes_is_refused_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store whose judgements all succeeded exports score files without a -1 added and without a warning."""
    from tests.runs.annotation.helpers import make_store

    store = make_store(tmp_path / "s.sqlite", {i: {"fluency": 3, "empathic": i % 5} for i in range(4)})
    code, _, err = cli(capsys, "export", store, "--out", tmp_path / "out")
    assert code == 0 and err == ""
    scores = json.loads((tmp_path / "out" / "score_bot_en.json").read_text(encoding="utf-8"))
    assert scores == {str(i): {"fluency": 3, "empathic": i % 5} for i in range(4)}


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format_version": 2, "key": "a/default/00000-en-001/s0/r0", "card_index": 0, "card_id": "en-001", "language": "en",
        "category": "work", "source": "test", "supporter": "a", "persona": "default", "repeat": 0, "seed": 7, "status": "done",
        "outcome": "truncated", "reason": "max_rounds=1", "attempts": 1, "started_at": 1.0, "ended_at": 2.0,
        "turns": [{"idx": 0, "role": "supporter", "text": "Hi.", "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "at": 1.0},
                  {"idx": 1, "role": "seeker", "text": "Hello.", "prompt_tokens": 3, "completion_tokens": 1, "latency": 0.1, "at": 1.5,
                   "state": {"distress": 3}}],
        "scores": [{"dimension": "fluency", "round": -1, "label": 3, "raw": "Score: 3", "model": "j", "latency": 0.2,
                    "status": "ok", "error": None, "at": 2.5}],
    }
    for name, value in changes.items():
        path = name.split("__")
        target = record
        for part in path[:-1]:
            target = target[part] if not part.isdigit() else target[int(part)]  # type: ignore[index]
        if value is _DROP:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return record


_DROP = object()


@pytest.mark.parametrize(("changes", "message"), [
    ({"format_version": _DROP}, r"line 1: no 'format_version': not an esc-eval JSONL export, or one from before format 2"),
    ({"format_version": 4}, r"line 1: format_version 4 is newer than this esc-eval reads \(3\); upgrade esc-eval"),
    ({"format_version": "2"}, r"line 1: field 'format_version': expected 3, got '2'"),
    ({"format_version": 3}, r"line 1: field 'ordinal' is missing"),
    ({"format_version": 3, "ordinal": 0, "annotations": {}}, r"line 1: field 'annotations': expected a list, got dict"),
    ({"format_version": 3, "ordinal": 0, "annotations": [{"annotator": "x", "dimension": "empathic", "label": 7, "at": 1.0}]},
     r"line 1: field 'annotations\[0\]\.label': expected a label 0\.\.4, got 7"),
    ({"format_version": 3, "ordinal": 0, "annotations": []}, r"a format-3 export without its 'store' line"),
    ({"store": {"meta": {}, "tables": {}}}, r"line 1: field 'store': not part of format 2"),
    ({"key": _DROP}, r"line 1: field 'key' is missing"),
    ({"card_index": "0"}, r"line 1: field 'card_index': expected an integer, got '0'"),
    ({"status": "lost"}, r"line 1: field 'status': expected planned, running, done or failed, got 'lost'"),
    ({"colour": "red"}, r"line 1: field 'colour': unknown to this esc-eval's store \(table episodes\)"),
    ({"ordinal": 4}, r"line 1: field 'ordinal': not part of the format \(the importing store sets it\)"),
    ({"turns": {}}, r"line 1: field 'turns': expected a list, got dict"),
    ({"turns__1__role": "bot"}, r"line 1: field 'turns\[1\]\.role': expected seeker or supporter, got 'bot'"),
    ({"turns__1__latency": None}, r"line 1: field 'turns\[1\]\.latency': expected a number, got None"),
    ({"turns__1__state": [1]}, r"line 1: field 'turns\[1\]\.state': expected an object, got list"),
    ({"turns__1__idx": 0}, r"line 1: field 'turns': two turns have the same idx"),
    ({"scores__0__label": 5}, r"line 1: field 'scores\[0\]\.label': expected a label 0\.\.4, -1 or null, got 5"),
    ({"scores__0__label": True}, r"line 1: field 'scores\[0\]\.label': expected an integer or null, got True"),
    ({"scores__0__status": "maybe"}, r"line 1: field 'scores\[0\]\.status': expected ok or failed, got 'maybe'"),
    ({"scores__0__weight": 2}, r"line 1: field 'scores\[0\]\.weight': unknown to this esc-eval's store \(table scores\)"),
    ({"turns__0__mood": {"a": 1}}, r"line 1: field 'turns\[0\]\.mood': unknown to this esc-eval's store \(table turns\)"),
])
def test_bad_jsonl_lines_name_line_and_field_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               changes: dict[str, Any], message: str) -> None:
    export = tmp_path / "episodes.jsonl"
    export.write_text(json.dumps(_record(**changes)) + "\n", encoding="utf-8")
    store = tmp_path / "new.sqlite"
    code, _, err = cli(capsys, "import", store, export)
    assert code == 2 and not store.exists()
    assert err.startswith(f"esc-eval: error: {export}: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_a_good_record_imports_and_duplicates_and_unfinished_lines_are_handled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "episodes.jsonl"
    export.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(key="k2", status="running", turns=[], scores=[])) + "\n",
                      encoding="utf-8")
    code, out, _ = cli(capsys, "import", tmp_path / "s.sqlite", export)
    assert code == 0 and "1 episodes (1 done, 0 failed), 2 turns, 1 scores; skipped 0 already in the store; 1 unfinished" in out
    tables = content(tmp_path / "s.sqlite")
    assert tables["turns"][1]["state"] == '{"distress": 3}' and tables["scores"][0]["raw"] == "Score: 3"
    assert tables["episodes"][0]["ordinal"] == 0 and tables["episodes"][0]["seed"] == 7

    export.write_text(json.dumps(_record()) + "\n" + json.dumps(_record()) + "\n", encoding="utf-8")
    code, _, err = cli(capsys, "import", tmp_path / "t.sqlite", export)
    assert code == 2 and "line 2: episode 'a/default/00000-en-001/s0/r0' is on line 1 already" in err
    assert not (tmp_path / "t.sqlite").exists()


def test_import_takes_supporter_and_language_its_error_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dialogues = tmp_path / "dialogues.json"
    dialogues.write_text(json.dumps({"0": ["AI assistant：Hi.", "ESC-Role：I can't sleep."]}, ensure_ascii=False), encoding="utf-8")
    store = tmp_path / "s.sqlite"
    code, _, err = cli(capsys, "import", store, dialogues)
    assert code == 2 and "or give --supporter and --language" in err and not store.exists()
    code, out, _ = cli(capsys, "import", store, dialogues, "--supporter", "gpt-4", "--language", "english")
    assert code == 0 and "1 episodes, 0 scores (supporter gpt-4, language en); skipped 0 already in the store" in out
    code, out, _ = cli(capsys, "import", store, dialogues, "--supporter", "gpt-4", "--language", "en")
    assert code == 0 and "0 episodes, 0 scores (supporter gpt-4, language en); skipped 1 already in the store" in out
    assert [e["key"] for e in content(store)["episodes"]] == ["gpt-4/default/en-00000/imported/r0"]

    other = tmp_path / "more.json"
    other.write_text(dialogues.read_text(encoding="utf-8"), encoding="utf-8")
    code, _, err = cli(capsys, "import", tmp_path / "t.sqlite", dialogues, other, "--supporter", "x", "--language", "en")
    assert code == 2 and "names the same supporter and language as" in err and not (tmp_path / "t.sqlite").exists()
    export = tmp_path / "episodes.jsonl"
    export.write_text(json.dumps(_record()) + "\n", encoding="utf-8")
    code, _, err = cli(capsys, "import", tmp_path / "t.sqlite", export, "--supporter", "x")
    assert code == 2 and "--supporter, --language and --scores are for ESC-Eval result files" in err


@pytest.fixture
def later_tables(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The schema as a later esc-eval might have it: an episode table and a store-level table more."""
    from esc_eval.runs.store import schema

    def clear() -> None:
        for cached in (schema.tables, schema.table_columns):
            cached.cache_clear()

    monkeypatch.setattr(schema, "SCHEMA", schema.SCHEMA + """
        CREATE TABLE IF NOT EXISTS notes (episode_key TEXT NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL, weight REAL,
                                          PRIMARY KEY (episode_key, n));
        CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, tag TEXT NOT NULL);""")
    clear()
    yield
    monkeypatch.undo()
    clear()


def test_tables_added_later_travel_without_a_new_format(later_tables: None, source: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "later.sqlite"
    shutil.copy(source, store)
    conn = sqlite3.connect(store)  # the source store, as a later esc-eval would have written it
    conn.executescript("CREATE TABLE notes (episode_key TEXT NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL, weight REAL,"
                       " PRIMARY KEY (episode_key, n)); CREATE TABLE tags (id INTEGER PRIMARY KEY, tag TEXT NOT NULL);")
    key = conn.execute("SELECT key FROM episodes ORDER BY ordinal LIMIT 1").fetchone()[0]
    conn.executemany("INSERT INTO notes VALUES (?,?,?,?)", [(key, 0, "first", 0.5), (key, 1, "second", None)])
    conn.executemany("INSERT INTO tags (id, tag) VALUES (?,?)", [(3, "pilot"), (7, "final")])
    conn.commit()
    conn.close()
    archive = export(store, tmp_path / "out", capsys)
    records = lines_of(archive)
    assert records[0]["store"]["tables"]["tags"] == [{"id": 3, "tag": "pilot"}, {"id": 7, "tag": "final"}]
    assert next(r for r in records[1:] if r["key"] == key)["notes"][1] == {"n": 1, "text": "second", "weight": None}
    fresh = tmp_path / "fresh.sqlite"
    code, out, err = cli(capsys, "import", fresh, archive)
    assert code == 0 and "2 notes" in out and "2 tags" in out, err
    before, after = content(store), content(fresh)
    assert set(after) == set(before) >= {"notes", "tags"}
    assert all(after[table] == before[table] for table in before)
