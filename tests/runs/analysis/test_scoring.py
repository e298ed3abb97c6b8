"""Report statistics, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from esc_eval.runs.analysis.scoring import agreement, leaderboard_value


def test_leaderboard_value_is_mean_over_four_times_100():
    assert leaderboard_value([4, 4, 4, 4]) == 100.0
    assert leaderboard_value([0, 0]) == 0.0
    # (3 + 2 + 4 + 1) / 4 = 2.5 -> 62.5
    assert leaderboard_value([3, 2, 4, 1]) == pytest.approx(62.5)


def test_leaderboard_value_skips_missing_labels():
    # -1 and None are left out: (4 + 2 + 3) / 3 = 3 -> 75
    assert leaderboard_value([4, -1, 2, None, 3]) == pytest.approx(75.0)
    assert math.isnan(leaderboard_value([-1, None]))
    assert math.isnan(leaderboard_value([]))


@pytest.mark.parametrize("bad", [5, -2, 2.5, "3", True])
def test_leaderboard_value_rejects_non_labels(bad):
    with pytest.raises(ValueError, match="score 1"):
        leaderboard_value([3, bad])


def test_agreement_exact_and_soft():
    judge = {
        "0": {"fluency": 3, "empathic": 2},
        "1": {"fluency": 4, "empathic": 0},
        "2": {"fluency": 1, "empathic": -1},  # no label: left out of empathic
        "3": {"fluency": 2, "empathic": 2},  # no human item: left out
    }
    human = {
        "0": {"fluency": 3, "empathic": 3},
        "1": {"fluency": 2, "empathic": 0},
        "2": {"fluency": 2, "empathic": 4},
        "9": {"fluency": 0, "empathic": 0},
    }
    result = agreement(judge, human)
    # fluency pairs (3,3) (4,2) (1,2): exact 1/3, within one 2/3
    assert result["fluency"]["n"] == 3
    assert result["fluency"]["acc"] == pytest.approx(1 / 3)
    assert result["fluency"]["acc_soft"] == pytest.approx(2 / 3)
    # empathic pairs (2,3) (0,0): exact 1/2, within one 2/2
    assert result["empathic"] == {"acc": 0.5, "acc_soft": 1.0, "n": 2}
    assert list(result) == ["fluency", "empathic"]


def test_agreement_with_no_valid_pairs():
    result = agreement({"0": {"overall": -1}}, {"0": {"overall": 2}})
    assert result["overall"]["n"] == 0
    assert math.isnan(result["overall"]["acc"]) and math.isnan(result["overall"]["acc_soft"])
    assert agreement({"0": {"overall": 2}}, {"1": {"overall": 2}}) == {}


def test_agreement_rejects_bad_labels_naming_the_item():
    with pytest.raises(ValueError, match=r"human\['0'\]\['tech'\]"):
        agreement({"0": {"tech": 1}}, {"0": {"tech": 7}})


def test_agreement_against_each_annotator_averaged_per_item():
    judge = {"0": {"x": 3}, "1": {"x": 1}, "2": {"x": 2}}
    human: dict[str, dict[str, list[int | None]]] = {"0": {"x": [3, 4]}, "1": {"x": [1, 1, 4]}, "2": {"x": [-1, None]}}
    # item 0: exact 1/2, soft 2/2; item 1: exact 2/3, soft 2/3; item 2 has no valid human label
    assert agreement(judge, human)["x"] == {"acc": pytest.approx((1 / 2 + 2 / 3) / 2), "acc_soft": pytest.approx(5 / 6), "n": 2}
    assert agreement({"0": {"x": 2}}, {"0": {"x": [2]}}) == agreement({"0": {"x": 2}}, {"0": {"x": 2}})
    with pytest.raises(ValueError, match=r"human\['0'\]\['x'\]\[1\]"):
        agreement({"0": {"x": 2}}, {"0": {"x": [2, 9]}})


def test_agreement_has_no_direction():
    """Reordering each item's annotators or mirroring the scale (label -> 4 - label) leaves the rates unchanged."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        items = [str(i) for i in range(rng.randint(1, 8))]
        judge = {k: {"x": rng.randint(0, 4)} for k in items}
        human = {k: {"x": [rng.randint(0, 4) for _ in range(rng.randint(1, 3))]} for k in items}
        found = agreement(judge, human)
        reordered = {k: {"x": v["x"][::-1]} for k, v in human.items()}
        mirrored = agreement({k: {"x": 4 - v["x"]} for k, v in judge.items()}, {k: {"x": [4 - x for x in v["x"]]} for k, v in human.items()})
        assert agreement(judge, reordered) == found
        assert mirrored == found
