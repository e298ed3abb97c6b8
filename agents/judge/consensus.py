"""One label from several annotators' labels of one item, by a rule with no direction.

Judge training (``esc_eval.agents.judge.training``) learns from it and an ESC-Eval score file
exported from annotations (``esc-eval annotate --export score.json``) holds it; the report's
judge-human agreement does not need it (it compares the judge with each annotator).

The rule is the same read from either end of the scale (``consensus(4 − x) = 4 − consensus(x)``)
and does not depend on the annotators' order: the most frequent label; on a tie, the mean of
all the item's labels rounded to the nearest label, a half to the even label (0, 2 or 4; the
scale's ends are even, so rounding halves to even is its own mirror image).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction


def consensus(labels: Sequence[int]) -> int:
    """One label for an item labelled by several annotators (rule in the module docstring).

    Examples:
        >>> consensus([3, 3, 1])
        3
        >>> consensus([1, 3, 4])      # all tied; mean 2.67 -> 3
        3
        >>> consensus([1, 3])         # tied; mean 2 -> 2
        2
        >>> consensus([3, 4]), consensus([0, 1])   # mean 3.5 -> 4 and its mirror image 0.5 -> 0
        (4, 0)
    """
    if not labels:
        raise ValueError("consensus of no labels")
    counts = Counter(labels)
    top = max(counts.values())
    tied = [label for label, count in counts.items() if count == top]
    if len(tied) == 1:
        return tied[0]
    return round(Fraction(sum(labels), len(labels)))   # exact mean; round() takes a half to the even integer
