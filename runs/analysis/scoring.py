"""Label arithmetic for reports: ESC-Eval's leaderboard value and judge-human agreement (intervals: ``esc_eval.runs.analysis.statistics``).

Pure functions over plain numbers (stdlib only). A score is a label 0..4; -1
(the judge's reply held no label) and ``None`` (not scored) are missing values
and are left out of every statistic. Anything else is a data error.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import TypeVar

from esc_eval.agents.judge.profiles import LABELS, NO_LABEL, to_points

_Key = TypeVar("_Key", bound=Hashable)
"""Any item key (a card index as text, an episode key)."""


def _label(score: object, where: str) -> int | None:
    """``score`` as a label 0..4, or ``None`` when it is missing (-1 or None)."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int) or (score not in LABELS and score != NO_LABEL):
        raise ValueError(f"{where}: expected a label 0..4, -1 or None, got {score!r}")
    return None if score == NO_LABEL else score


def _valid(scores: Sequence[int | None]) -> list[int]:
    labels = (_label(score, f"score {index}") for index, score in enumerate(scores))
    return [label for label in labels if label is not None]


def leaderboard_value(scores: Sequence[int | None]) -> float:
    """ESC-Eval's leaderboard number: mean(score) / 4 * 100 over the valid scores.

    Returns ``nan`` when no score is valid.

    Example:
        >>> leaderboard_value([4, 2, -1, 3])
        75.0
    """
    valid = _valid(scores)
    if not valid:
        return math.nan
    return to_points(sum(valid) / len(valid))


def _labels(value: object, where: str) -> list[int]:
    """The valid labels of one item's dimension: one label, or a sequence of them (one per annotator)."""
    if isinstance(value, (list, tuple)):
        found = [_label(v, f"{where}[{i}]") for i, v in enumerate(value)]
    else:
        found = [_label(value, where)]
    return [label for label in found if label is not None]


def agreement(
    judge: Mapping[_Key, Mapping[str, int | None]],
    human: Mapping[_Key, Mapping[str, int | None | Sequence[int | None]]],
) -> dict[str, dict[str, float | int]]:
    """Per-dimension agreement of judge labels with human labels, as in ESC-Eval's Table 4.

    Over the items (keys) present in both mappings where both hold a valid label
    for the dimension: ``acc`` is the exact-match rate, ``acc_soft`` the rate of
    ``|judge - human| <= 1``, ``n`` the number of such items. A human value may be a
    sequence of labels, one per annotator: the item then scores the share of its
    annotators the judge matches (ACC against each annotator, averaged, each item counting
    once), so no annotator and no end of the scale is preferred. Every dimension that
    appears in an item of both mappings is reported, in order of first appearance in
    ``judge``; with ``n == 0`` the rates are ``nan``.

    Example:
        >>> agreement({"0": {"fluency": 3}, "1": {"fluency": 1}}, {"0": {"fluency": 3}, "1": {"fluency": [3, 1]}})
        {'fluency': {'acc': 0.75, 'acc_soft': 0.75, 'n': 2}}
    """
    shared = [key for key in judge if key in human]
    dims: dict[str, None] = {}
    for key in shared:
        for dim in judge[key]:
            if dim in human[key]:
                dims.setdefault(dim, None)
    result: dict[str, dict[str, float | int]] = {}
    for dim in dims:
        exact = soft = Fraction(0)
        n = 0
        for key in shared:
            ours = _label(judge[key].get(dim), f"judge[{key!r}][{dim!r}]")
            theirs = _labels(human[key].get(dim), f"human[{key!r}][{dim!r}]")
            if ours is None or not theirs:
                continue
            n += 1
            exact += Fraction(sum(ours == label for label in theirs), len(theirs))
            soft += Fraction(sum(abs(ours - label) <= 1 for label in theirs), len(theirs))
        result[dim] = {"acc": float(exact / n) if n else math.nan, "acc_soft": float(soft / n) if n else math.nan, "n": n}
    return result
