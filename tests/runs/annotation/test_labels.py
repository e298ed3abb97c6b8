"""Labels in the store: the additive table, assignment to K annotators, JSONL and ESC-Eval score-file exchange."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from esc_eval.runs.analysis.agreement import human_labels
from esc_eval.runs.annotation.labels import AnnotationError, assignment, export_labels, import_labels
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from tests.runs.annotation.helpers import key, make_store


def test_older_store_gains_the_annotations_table_on_writable_open(tmp_path: Path) -> None:
    path = make_store(tmp_path / "run.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE annotations")
    reader = Store.open(path, readonly=True)
    assert reader.annotations() == []          # a read-only open changes nothing and still reads
    reader.close_sync()
    store = Store.open(path)
    store.add_annotations([(key(0), "ann", "fluency", 3, 1.0)])
    store.add_annotations([(key(0), "ann", "fluency", 2, 2.0)])  # a changed mind replaces
    store.close_sync()
    store = Store.open(path, readonly=True)
    assert [tuple(r) for r in store.annotations()] == [(key(0), "ann", "fluency", 2, 2.0)]
    store.close_sync()


def test_assignment_gives_each_dialogue_k_annotators(tmp_path: Path) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite"))
    everything = {key(i) for i in range(4)}
    assert set(assignment(store, "a", 2)) == everything
    store.add_annotations([(key(0), "a", "fluency", 1, 1.0), (key(0), "b", "fluency", 1, 1.0), (key(1), "c", "fluency", 1, 1.0)])
    assert set(assignment(store, "a", 2)) == everything                 # a keeps what a started
    assert set(assignment(store, "d", 2)) == everything - {key(0)}      # key(0) has its 2
    assert set(assignment(store, "d", 1)) == everything - {key(0), key(1)}
    assert assignment(store, "d", 1) == assignment(store, "d", 1)       # stable across reloads
    store.close_sync()


def test_each_annotator_gets_an_own_shuffled_order(tmp_path: Path) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite", count=12))
    plan = [key(i) for i in range(12)]
    orders = {name: assignment(store, name, 2) for name in ("ann", "bea", "cid")}
    assert all(sorted(order) == plan for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) == 3          # differ between annotators
    assert all(order != plan for order in orders.values())                # and from plan order (grouped by supporter)
    store.add_annotations([(key(i), who, "fluency", 1, 1.0) for i in (0, 5, 7) for who in ("x", "y")])
    assert assignment(store, "ann", 2) == [k for k in orders["ann"] if k not in {key(0), key(5), key(7)}]  # same relative order
    store.close_sync()


def test_jsonl_export_import_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_store(tmp_path / "a.sqlite")
    store = Store.open(source)
    store.add_annotations([(key(0), "ann1", "fluency", 3, 10.0), (key(0), "ann1", "empathic", 4, 11.0),
                           (key(2), "ann2", "fluency", 1, 12.0)])
    store.close_sync()
    out = tmp_path / "labels.jsonl"
    assert main(["annotate", str(source), "--export", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["episode_key"], r["annotator"], r["labels"]) for r in records] == [
        (key(0), "ann1", {"fluency": 3, "empathic": 4}), (key(2), "ann2", {"fluency": 1})]
    assert records[0]["at"] == 11.0 and records[0]["transcript"][1]["role"] == "seeker"
    target = make_store(tmp_path / "b.sqlite")
    assert main(["annotate", str(target), "--import", str(out)]) == 0
    assert "3 labels imported" in capsys.readouterr().out
    store = Store.open(target, readonly=True)
    assert human_labels(store) == {key(0): {"ann1": {"fluency": 3, "empathic": 4}}, key(2): {"ann2": {"fluency": 1}}}
    store.close_sync()


def test_score_file_export_and_import(tmp_path: Path) -> None:
    path = make_store(tmp_path / "run.sqlite")
    store = Store.open(path)
    store.add_annotations([(key(0), "a", "fluency", 3, 1.0), (key(0), "b", "fluency", 1, 1.0), (key(0), "c", "fluency", 1, 1.0),
                           (key(1), "a", "overall", 2, 1.0)])
    scores = tmp_path / "score_bot_en.json"
    assert export_labels(store, scores) == 2
    assert json.loads(scores.read_text()) == {"0": {"fluency": 1}, "1": {"overall": 2}}   # consensus of a, b, c
    assert export_labels(store, tmp_path / "only_a.json", annotator="a") == 2
    assert json.loads((tmp_path / "only_a.json").read_text()) == {"0": {"fluency": 3}, "1": {"overall": 2}}
    (tmp_path / "score_bot_en.json").write_text(json.dumps({"3": {"fluency": 4, "empathic": -1}}))
    assert import_labels(store, scores, annotator="expert") == 1          # -1 is skipped
    assert human_labels(store)[key(3)] == {"expert": {"fluency": 4}}
    store.close_sync()


def test_bad_label_files_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_store(tmp_path / "run.sqlite")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"episode_key": key(0), "annotator": "a", "labels": {"fluency": 3}}) + "\n"
                   + json.dumps({"episode_key": key(1), "annotator": "a", "labels": {"fluency": 7}}) + "\n")
    assert main(["annotate", str(path), "--import", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"episode_key": "nope", "annotator": "a", "labels": {"fluency": 3}}) + "\n")
    store = Store.open(path)
    with pytest.raises(AnnotationError, match="not a finished episode"):
        import_labels(store, unknown)
    assert human_labels(store) == {}                                      # nothing written
    store.close_sync()
