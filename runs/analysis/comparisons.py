"""Which supporters differ: paired comparisons over shared cards, rank intervals and power, per dimension.

Input is one table per dimension: supporter -> {card: the supporter's mean value on
that card (×25 scale, over its episodes on the card)}; a supporter's score is the mean of
its column, as in the leaderboard. Two supporters are compared on the cards both played;
p-values are Holm-adjusted over every pair × dimension (one family), so "differs" means
family-wise α = 0.05. The tables become one cards × (dimension, supporter) matrix, so every
pair's sign-flip test shares the same random draws (``esc_eval.runs.analysis.signflip``).
The estimators live in ``esc_eval.runs.analysis.statistics``; this module only pairs cards up
and collects the results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from esc_eval.runs.analysis import statistics

CardTable = Mapping[str, Mapping[str, Mapping[str, float]]]
"""dimension -> supporter -> card -> value."""


@dataclass(frozen=True)
class PairComparison:
    """``diff`` = mean(a) − mean(b) over ``n_cards`` shared cards, on the ×25 scale.

    ``flags``: ``small_n`` (fewer than 10 shared cards), ``no_spread`` (every card's
    difference is the same; interval and p widened, ``statistics.paired_comparisons``),
    ``underpowered`` (with this many cards even the smallest p the test can give stays
    above 0.05 after Holm: the pair can never be declared different). ``exact``: the
    p-value counted every sign pattern; otherwise it is a Monte Carlo estimate whose
    smallest value ``floor`` means "p ≤ floor".
    """

    a: str
    b: str
    dimension: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    wins: int
    ties: int
    losses: int
    n_cards: int
    exact: bool = True
    floor: float = math.nan
    flags: tuple[str, ...] = ()

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm < statistics.ALPHA

    @property
    def at_floor(self) -> bool:
        """The p-value is the Monte Carlo floor: the truth is at most that, not equal to it."""
        return not self.exact and self.p_value <= self.floor


@dataclass(frozen=True)
class Rank:
    """A supporter's rank on one dimension (1 = highest mean) and its 95% bootstrap interval."""

    supporter: str
    mean: float
    rank: int
    low: int
    high: int


@dataclass(frozen=True)
class PowerRow:
    """Planning for one pair (or, with one supporter, ``b`` empty: two independent supporters like it)."""

    a: str
    b: str
    dimension: str
    sd_diff: float
    n_cards: int
    cards_needed: float
    min_detectable: float
    tests: int = 1
    cards_needed_family: float = math.nan
    """Cards needed when the pair is one of ``tests`` comparisons adjusted by Holm (α / tests, and the sign-flip minimum)."""


def _shared(table: Mapping[str, Mapping[str, float]], a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    cards = [card for card in table[a] if card in table[b]]
    return np.array([table[a][c] for c in cards]), np.array([table[b][c] for c in cards])


def card_matrix(cards: CardTable, supporters: Sequence[str], dimensions: Sequence[str]) -> tuple[np.ndarray, dict[tuple[str, str], int]]:
    """The card tables as one matrix: rows are cards (sorted), columns (dimension, supporter); ``nan`` where not played."""
    columns = {(d, s): i for i, (d, s) in enumerate((d, s) for d in dimensions for s in supporters)}
    rows = {c: i for i, c in enumerate(sorted({c for d in dimensions for s in supporters for c in cards.get(d, {}).get(s, {})}))}
    matrix = np.full((len(rows), len(columns)), math.nan)
    for (d, s), j in columns.items():
        found = cards.get(d, {}).get(s, {})
        if found:
            matrix[[rows[c] for c in found], j] = list(found.values())
    return matrix, columns


def compare(cards: CardTable, supporters: Sequence[str], dimensions: Sequence[str]) -> list[PairComparison]:
    """Every pair of ``supporters`` (in the order given) on every dimension, Holm-adjusted together."""
    pairs = [(a, b, d) for d in dimensions for a, b in combinations(supporters, 2) if d in cards]
    matrix, columns = card_matrix(cards, supporters, dimensions)
    raw = statistics.paired_comparisons(matrix, [(columns[(d, a)], columns[(d, b)]) for a, b, d in pairs], tests=len(pairs))
    adjusted = statistics.holm([c.p_value for c in raw])
    out = []
    for (a, b, d), c, p_holm in zip(pairs, raw, adjusted):
        flags = [name for name, on in (("small_n", c.n_cards < statistics.SMALL_N), ("no_spread", c.no_spread),
                                       ("underpowered", statistics.underpowered(c.n_cards, len(pairs), exact=c.exact,
                                                                                floor=c.floor))) if on]
        out.append(PairComparison(a, b, d, c.diff, c.ci_low, c.ci_high, c.p_value, p_holm, c.wins, c.ties, c.losses,
                                  c.n_cards, c.exact, c.floor, tuple(flags)))
    return out


def ranks(cards: CardTable, supporters: Sequence[str], dimensions: Sequence[str]) -> dict[str, list[Rank]]:
    """Per dimension, the supporters by mean (highest first) with bootstrap rank intervals over cards.

    Every dimension is resampled with the same cards, in one pass over the card matrix.
    """
    present = {d: [s for s in supporters if cards.get(d, {}).get(s)] for d in dimensions}
    shown = [d for d in dimensions if present[d]]
    if not shown:
        return {}
    matrix, columns = card_matrix(cards, supporters, shown)
    groups = [[columns[(d, s)] for s in present[d]] for d in shown]
    found = statistics.rank_intervals(matrix, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a column of a supporter without cards: not shown
        means = np.nanmean(matrix, axis=0)
    out: dict[str, list[Rank]] = {}
    for d, group in zip(shown, groups):
        rows = [Rank(s, float(means[j]), *found[j]) for s, j in zip(present[d], group)]
        out[d] = sorted(rows, key=lambda r: (r.rank, r.supporter))
    return out


def power(cards: CardTable, supporters: Sequence[str], dimensions: Sequence[str], delta: float) -> list[PowerRow]:
    """Cards needed to detect ``delta`` points at 80% power, and the difference detectable with the cards at hand.

    ``cards_needed`` is for one comparison at α = 0.05; ``cards_needed_family`` for one of the
    report's pairs × dimensions adjusted by Holm (``tests`` of them: α / tests for the first).

    With two supporters or more: per pair, from the sd of their card-level differences.
    With one: from its card-level sd, as if a second, uncorrelated supporter had the same
    spread (sd of a difference = √2 · sd), which is pessimistic: real supporters share
    the cards' difficulty, and pairing removes it.
    """
    rows = []
    for d in dimensions:
        table = cards.get(d, {})
        present = [s for s in supporters if table.get(s)]
        if len(present) == 1:
            values = np.array(list(table[present[0]].values()))
            sd = math.sqrt(2) * float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
            pairs: list[tuple[str, str, float, int]] = [(present[0], "", sd, len(values))]
        else:
            pairs = []
            for a, b in combinations(present, 2):
                x, y = _shared(table, a, b)
                pairs.append((a, b, float(np.std(x - y, ddof=1)) if len(x) >= 2 else math.nan, len(x)))
        for a, b, sd, n in pairs:
            rows.append(PowerRow(a, b, d, sd, n, statistics.cards_needed(delta, sd),
                                 statistics.min_detectable_difference(n, sd)))
    tests = max(1, len(list(combinations(supporters, 2))) * sum(1 for d in dimensions if cards.get(d)))
    return [PowerRow(r.a, r.b, r.dimension, r.sd_diff, r.n_cards, r.cards_needed, r.min_detectable, tests,
                     statistics.cards_needed(delta, r.sd_diff, tests=tests)) for r in rows]
