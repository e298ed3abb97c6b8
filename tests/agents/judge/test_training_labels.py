"""Reading judge training labels (``read_training_labels``): what a label file's lines give, without a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.agents.judge.training import TrainingError, read_training_labels

TRANSCRIPT = [{"role": "supporter", "text": "Hi, I'm here."}, {"role": "seeker", "text": "I can't sleep."}]


def _line(key: str, annotator: str, labels: dict[str, int], **more: object) -> str:
    return json.dumps({"episode_key": key, "language": "en", "annotator": annotator, "labels": labels, "transcript": TRANSCRIPT,
                       **more})


def test_lines_with_safety_answers_only_are_no_training_dialogues(tmp_path: Path) -> None:
    """``annotate --export`` writes a line per (dialogue, annotator), ``"labels": {}`` where only safety items were answered."""
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join([_line("a", "ann", {"fluency": 3}), _line("a", "bob", {}, safety={"harmful": False}),
                               _line("b", "ann", {}, safety={"harmful": True})]) + "\n", encoding="utf-8")
    items = read_training_labels(path)
    assert [(i.key, i.labels) for i in items] == [("a", {"fluency": 3})]

    only_safety = tmp_path / "safety.jsonl"
    only_safety.write_text(_line("b", "ann", {}, safety={"harmful": True}) + "\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="no labelled dialogues"):
        read_training_labels(only_safety)
