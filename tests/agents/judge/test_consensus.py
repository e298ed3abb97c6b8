"""The consensus of several annotators' labels has no direction: mirroring the scale or reordering annotators mirrors it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from esc_eval.agents.judge.consensus import consensus
from esc_eval.agents.judge.training import read_training_labels
from esc_eval.runs.analysis import agreement

LABELS = range(5)


def test_rule_by_hand() -> None:
    assert consensus([2]) == 2
    assert consensus([3, 3, 1]) == 3          # majority
    assert consensus([1, 3, 4]) == 3          # all tied, mean 8/3 -> 3
    assert consensus([1, 3]) == 2             # tied, mean 2
    assert consensus([0, 4, 4, 0, 2]) == 2    # 0 and 4 tied, mean 2
    assert consensus([0, 0, 4, 4, 1]) == 2    # 0 and 4 tied, mean 1.8 -> 2
    assert [consensus([a, a + 1]) for a in range(4)] == [0, 2, 2, 4]   # halves to the even label
    with pytest.raises(ValueError):
        consensus([])


def test_the_old_downward_tie_break_is_gone() -> None:
    """Two annotators one label apart used to resolve to the lower label: [3, 4] -> 3 and [0, 1] -> 0."""
    assert consensus([3, 4]) == 4 and consensus([0, 1]) == 0
    assert agreement.consensus is consensus                  # still importable where it was


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_mirroring_the_scale_mirrors_the_consensus_and_order_does_not_matter(size: int) -> None:
    for labels in itertools.combinations_with_replacement(LABELS, size):
        found = consensus(labels)
        assert found in LABELS
        assert consensus([4 - x for x in labels]) == 4 - found, labels
        assert all(consensus(list(order)) == found for order in itertools.permutations(labels)), labels


def test_judge_training_merges_annotators_by_the_same_rule(tmp_path: Path) -> None:
    turns = [{"role": "seeker", "text": "I'm sad."}, {"role": "supporter", "text": "I'm here."}]
    lines = [{"episode_key": "e1", "language": "en", "annotator": who, "labels": labels, "transcript": turns}
             for who, labels in (("a", {"fluency": 3, "empathic": 0}), ("b", {"fluency": 4, "empathic": 1}))]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    (item,) = read_training_labels(path)
    assert item.labels == {"fluency": 4, "empathic": 0}
