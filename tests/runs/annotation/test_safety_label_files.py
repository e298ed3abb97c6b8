"""Safety answers in ``.jsonl`` label files: ``--export`` carries them beside the dimension labels, ``--import`` brings
both tables back exactly into a copy of the store, refuses what ``POST /api/safety`` refuses (exit 2, one line, the
store's bytes unchanged) and still reads files of dimension labels only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.annotation.labels import AnnotationError, import_labels
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from esc_eval.runs.store import safety as safety_store
from esc_eval.testing.cli import esc_eval
from tests.runs.annotation.helpers import judged, key, make_store
from tests.runs.annotation.test_refusals import refused

LABELS = [(key(0), "ann", "fluency", 3, 10.0), (key(0), "ann", "empathic", 4, 11.5), (key(0), "bea", "fluency", 1, 12.0),
          (key(3), "ann", "overall", 2, 13.0)]
"""Dimension labels; key(3) has no safety judgement, so only labels there."""
ANSWERS = [(key(0), "ann", "recognised", True, 11.0), (key(0), "ann", "harmful", False, 20.0),
           (key(1), "cid", "resources", False, 14.0),                       # cid answered safety items only
           (key(2), "ann", "false_alarm", True, 15.0), (key(2), "ann", "harmful", False, 15.0)]
"""Safety answers (risk items on keys 0 and 1, control items on key 2), at times that differ within a line."""


def stores(tmp_path: Path) -> tuple[Path, Path]:
    """A judged store with ``LABELS`` and ``ANSWERS``, and a copy of it taken before any was given."""
    source = judged(make_store(tmp_path / "a.sqlite"))
    fresh = tmp_path / "b.sqlite"
    shutil.copyfile(source, fresh)
    with Store.open(source) as store:
        store.add_annotations(LABELS)
        safety_store.add_labels(store, ANSWERS)
    return source, fresh


def tables(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with Store.open(path, readonly=True) as store:
        return sorted(tuple(r) for r in store.annotations()), sorted(tuple(r) for r in safety_store.labels(store))


def line(episode: str, annotator: str = "ann", **fields: Any) -> str:
    return json.dumps({"episode_key": episode, "annotator": annotator, "labels": {}, **fields}) + "\n"


def test_export_then_import_into_a_fresh_copy_gives_both_tables_back_exactly(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    source, fresh = stores(tmp_path)
    out = tmp_path / "labels.jsonl"
    assert main(["annotate", str(source), "--export", str(out)]) == 0
    records = {(r["episode_key"], r["annotator"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {(key(0), "ann"), (key(0), "bea"), (key(1), "cid"), (key(2), "ann"), (key(3), "ann")}
    assert records[key(1), "cid"]["labels"] == {} and records[key(1), "cid"]["safety"] == {"resources": False}
    assert records[key(0), "ann"]["safety"] == {"recognised": True, "harmful": False}
    assert records[key(0), "ann"]["at"] == 20.0                                 # the line's latest, labels or answers
    assert records[key(0), "ann"]["times"] == {"labels": {"fluency": 10.0, "empathic": 11.5}, "safety": {"recognised": 11.0}}
    assert "safety" not in records[key(3), "ann"] and "safety" not in records[key(0), "bea"]
    assert "times" not in records[key(2), "ann"]                                # one time for the whole line
    assert records[key(1), "cid"]["transcript"][0]["role"] == "supporter"     # still a training set

    capsys.readouterr()
    assert main(["annotate", str(fresh), "--import", str(out)]) == 0
    assert f"{len(LABELS)} labels and {len(ANSWERS)} safety answers imported" in capsys.readouterr().out
    assert tables(fresh) == tables(source)
    assert tables(fresh) == (sorted(LABELS), sorted(ANSWERS))

    assert main(["annotate", str(fresh), "--import", str(out)]) == 0           # again: replaces each row with itself
    assert tables(fresh) == (sorted(LABELS), sorted(ANSWERS))


def test_an_answer_in_the_file_replaces_the_same_annotators_answer_as_a_label_does(tmp_path: Path) -> None:
    source, _ = stores(tmp_path)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(line(key(0), labels={"fluency": 0}, safety={"harmful": True}, at=30.0), encoding="utf-8")
    with Store.open(source) as store:
        assert import_labels(store, changed) == 2
    labels, answers = tables(source)
    assert (key(0), "ann", "fluency", 0, 30.0) in labels and (key(0), "ann", "harmful", True, 30.0) in answers
    assert len(labels) == len(LABELS) and len(answers) == len(ANSWERS)         # replaced, not added


def test_the_score_file_export_stays_dimension_labels_only(tmp_path: Path) -> None:
    source, _ = stores(tmp_path)
    scores = tmp_path / "score_bot_en.json"
    assert main(["annotate", str(source), "--export", str(scores), "--annotator", "ann"]) == 0
    assert json.loads(scores.read_text()) == {"0": {"fluency": 3, "empathic": 4}, "3": {"overall": 2}}


def test_annotator_option_exports_and_imports_that_annotators_answers(tmp_path: Path) -> None:
    source, fresh = stores(tmp_path)
    out = tmp_path / "cid.jsonl"
    assert main(["annotate", str(source), "--export", str(out), "--annotator", "cid"]) == 0
    assert [(r["episode_key"], r["labels"], r["safety"]) for r in map(json.loads, out.read_text().splitlines())] == [
        (key(1), {}, {"resources": False})]
    assert main(["annotate", str(fresh), "--import", str(out), "--annotator", "dan"]) == 0
    assert tables(fresh) == ([], [(key(1), "dan", "resources", False, 14.0)])


@pytest.mark.parametrize(("bad", "says"), [
    (line(key(0), safety={"fluency": True}), "field 'safety.fluency': unknown safety item 'fluency'"),         # a dimension
    (line(key(0), safety={"false_alarm": True}), "field 'safety.false_alarm': unknown safety item"),           # control item, risk dialogue
    (line(key(2), safety={"recognised": False}), "field 'safety.recognised': unknown safety item"),           # and the other way round
    (line(key(0), safety={"harmful": 1}), "field 'safety.harmful': value must be true or false, got 1"),
    (line(key(0), safety={"harmful": "yes"}), "field 'safety.harmful': value must be true or false, got 'yes'"),
    (line(key(0), safety={"harmful": None}), "field 'safety.harmful': value must be true or false, got None"),
    (line(key(3), safety={"harmful": False}), "field 'safety.harmful': unknown safety item 'harmful' for this dialogue "
                                              "(it has: none: the safety judge did not take it)"),
    (line(key(0), safety=["harmful"]), "field 'safety' must be an object"),
    (line(key(0), safety={"harmful": False}, times={"safety": {"recognised": 1.0}}), "field 'times.safety'"),
    (line(key(0), safety={"harmful": False}, times={"safety": {"harmful": "noon"}}), "field 'times.safety.harmful'"),
], ids=["dimension", "control-item-on-risk", "risk-item-on-control", "value-1", "value-yes", "value-null", "not-judged",
        "safety-not-object", "time-of-missing-item", "time-not-number"])
async def test_bad_safety_answers_are_refused_with_the_line_and_field_and_nothing_written(tmp_path: Path, bad: str,
                                                                                          says: str) -> None:
    source, _ = stores(tmp_path)
    labels = tmp_path / "labels.jsonl"
    # line 1 is good (a label and an answer): it must not be written either
    labels.write_text(line(key(1), "eve", labels={"fluency": 2}, safety={"recognised": True}) + bad, encoding="utf-8")
    said = await refused(tmp_path, source.name, "--import", labels.name)
    assert f"{labels.name}: line 2: {says}" in said, said
    assert tables(source) == (sorted(LABELS), sorted(ANSWERS))


async def test_a_file_of_dimension_labels_only_still_imports(tmp_path: Path) -> None:
    """The format written before safety answers were exported: no ``safety``, no ``times``."""
    for store in (judged(make_store(tmp_path / "judged.sqlite")), make_store(tmp_path / "plain.sqlite")):
        old = tmp_path / "old.jsonl"
        old.write_text(json.dumps({"episode_key": key(0), "supporter": "bot", "language": "en", "card_index": 0, "annotator": "ann",
                                   "labels": {"fluency": 3, "empathic": 1}, "at": 5.0,
                                   "transcript": [{"role": "supporter", "text": "Hi"}]}) + "\n"
                       + json.dumps({"episode_key": key(3), "annotator": "bea", "labels": {"overall": 4}, "at": 6.0}) + "\n",
                       encoding="utf-8")
        done = await esc_eval("annotate", store.name, "--import", old.name, cwd=tmp_path)
        assert done.returncode == 0 and "3 labels imported" in done.stdout and "safety" not in done.stdout, done.stderr
        assert tables(store) == (sorted([(key(0), "ann", "empathic", 1, 5.0), (key(0), "ann", "fluency", 3, 5.0),
                                         (key(3), "bea", "overall", 4, 6.0)]), [])


async def test_a_file_of_empty_lines_imports_nothing_and_says_so(tmp_path: Path) -> None:
    source = judged(make_store(tmp_path / "s.sqlite"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(line(key(0), safety={}), encoding="utf-8")
    said = await refused(tmp_path, source.name, "--import", empty.name)
    assert "nothing importable" in said and "safety answer" in said


def test_import_labels_refuses_before_writing(tmp_path: Path) -> None:
    source, _ = stores(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(key(0), labels={"fluency": 0}) + line(key(3), safety={"harmful": True}), encoding="utf-8")
    with Store.open(source) as store, pytest.raises(AnnotationError, match=r"line 2: field 'safety.harmful'"):
        import_labels(store, bad)
    assert tables(source) == (sorted(LABELS), sorted(ANSWERS))                # line 1's label is not written either
