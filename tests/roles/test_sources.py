"""Source readers: each shape read, a bad record named by file and line and skipped, an unreadable file refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.roles.sources import SOURCE_READERS, SourceError, detect_shape, read_source


def test_esconv_renders_situation_and_turns_and_skips_an_empty_dialogue(tmp_path: Path) -> None:
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps([
        {"situation": "Lost my job", "emotion_type": "sadness", "problem_type": "job crisis",
         "dialog": [{"speaker": "seeker", "content": "Hi"}, {"speaker": "supporter", "content": " "},
                    {"speaker": "supporter", "content": "Hello, what happened?"}]},
        {"situation": "x", "dialog": []},
        "not a dialogue",
    ]), encoding="utf-8")
    batch = read_source(path)
    assert [i.key for i in batch.items] == ["ESConv:1"] and batch.items[0].dataset == "ESConv"
    assert batch.items[0].text == ("Situation: Lost my job\nEmotion: sadness\nProblem type: job crisis\n"
                                   "seeker: Hi\nsupporter: Hello, what happened?")
    assert [(p.where, p.reason) for p in batch.problems] == [
        (f"{path}: record 2", "empty dialogue"), (f"{path}: record 3", "expected an object, got str")]


def test_jsonl_shapes_are_detected_and_bad_lines_named(tmp_path: Path) -> None:
    dialogues = tmp_path / "ExTES.jsonl"
    dialogues.write_text('{"id": 7, "dialog": [{"role": "user", "content": "I cannot sleep"}]}\n\n'
                         '{"id": 8, "dialog": [{"content": "who said this?"}]}\n{broken\n[1]\n', encoding="utf-8")
    posts = tmp_path / "PsyQA.jsonl"
    posts.write_text('{"id": "q1", "title": "考试焦虑", "text": "每次考试前都睡不着。"}\n{"title": "no id"}\n', encoding="utf-8")
    assert detect_shape(dialogues) == "dialogues" and detect_shape(posts) == "posts"
    batch = read_source(dialogues)
    assert [(i.key, i.text, i.where) for i in batch.items] == [("ExTES:7", "user: I cannot sleep", f"{dialogues}: line 1")]
    assert [p.where for p in batch.problems] == [f"{dialogues}: line {n}" for n in (3, 4, 5)]
    assert batch.problems[0].reason == "turn 1: missing 'role'" and batch.problems[1].reason.startswith("not valid JSON")
    post = read_source(posts)
    assert post.items[0].text == "考试焦虑\n每次考试前都睡不着。" and post.problems[0].reason == "missing 'id'"


def test_unreadable_sources_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_source(tmp_path / "missing.json")
    odd = tmp_path / "data.csv"
    odd.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"data\.csv: cannot tell the source shape"):
        read_source(odd)
    with pytest.raises(SourceError, match="unknown source shape 'tsv'"):
        read_source(odd, "tsv")
    assert SOURCE_READERS.names()[:3] == ["esconv", "dialogues", "posts"]
