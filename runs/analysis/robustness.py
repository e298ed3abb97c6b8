"""Whether a supporter ranking holds under another seeker: Kendall's tau between the rankings two seekers give.

A run with several seekers (``[[seekers]]``) plays every supporter with every seeker on the same
cards. For each pair of seekers and each dimension, the supporters' means over the cards both
seekers played with every supporter are ranked, and the two rankings compared with Kendall's
tau-b (``scipy.stats.kendalltau``, with its p-value against "unrelated rankings"); its 95%
interval is a percentile bootstrap that resamples those cards (the same draw for both seekers,
as they played the same cards). Tau 1: the seekers order the supporters alike; 0: unrelated;
-1: reversed. With few supporters tau takes few values, so its interval is coarse, and with n
supporters no p-value can fall below 2/n! (0.33 with 3, 0.083 with 4): below ``MIN_SUPPORTERS``
the p-value is left out (``too_few``) and reports say "too few supporters to tell".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from esc_eval.runs.analysis.statistics import LEVEL, RESAMPLES, SEED

MIN_SUPPORTERS = 5
"""Fewest supporters whose ranking can show a tau with p < 0.05 (the smallest exact p is 2/n!)."""

SeekerTable = Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]
"""dimension -> seeker -> supporter -> card -> value (the supporter's mean on the card with that seeker, ×25 scale)."""


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau-b between the supporter rankings of seekers ``a`` and ``b`` on one dimension (``nan``: undefined)."""

    a: str
    b: str
    dimension: str
    tau: float
    ci_low: float
    ci_high: float
    p_value: float
    n_supporters: int
    n_cards: int

    @property
    def too_few(self) -> bool:
        """Too few supporters for any p-value below 0.05: the p-value says nothing."""
        return self.n_supporters < MIN_SUPPORTERS


def rank_agreement(table: SeekerTable, seekers: Sequence[str], supporters: Sequence[str], dimensions: Sequence[str], *,
                   seed: int = SEED, resamples: int = RESAMPLES) -> list[RankAgreement]:
    """One ``RankAgreement`` per pair of ``seekers`` and dimension, pairs in the given order.

    Only cards on which both seekers have a value for every supporter count; with fewer than two
    supporters, or no such card, tau is ``nan``.
    """
    found = []
    for dimension in dimensions:
        by_seeker = table.get(dimension, {})
        for a, b in combinations(seekers, 2):
            found.append(_agreement(a, b, dimension, by_seeker.get(a, {}), by_seeker.get(b, {}), supporters, seed, resamples))
    return found


def _agreement(a: str, b: str, dimension: str, values_a: Mapping[str, Mapping[str, float]], values_b: Mapping[str, Mapping[str, float]],
               supporters: Sequence[str], seed: int, resamples: int) -> RankAgreement:
    from scipy.stats import kendalltau

    cards = sorted(set.intersection(*(set(values_a.get(s, {})) & set(values_b.get(s, {})) for s in supporters))) if supporters else []
    if len(supporters) < 2 or not cards:
        return RankAgreement(a, b, dimension, math.nan, math.nan, math.nan, math.nan, len(supporters), len(cards))
    first = np.array([[values_a[s][c] for c in cards] for s in supporters])    # supporters x cards
    second = np.array([[values_b[s][c] for c in cards] for s in supporters])
    result = kendalltau(first.mean(axis=1), second.mean(axis=1))
    draws = np.random.default_rng(seed).integers(0, len(cards), size=(resamples, len(cards)))
    taus = _tau_b(first[:, draws].mean(axis=2), second[:, draws].mean(axis=2))
    taus = taus[~np.isnan(taus)]
    tail = (1 - LEVEL) / 2 * 100
    low, high = (np.percentile(taus, [tail, 100 - tail]) if taus.size else (math.nan, math.nan))
    return RankAgreement(a, b, dimension, float(result.statistic), float(low), float(high), float(result.pvalue),
                         len(supporters), len(cards))


def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the columns of ``x`` and ``y`` (supporters x resamples), all resamples at once; ``nan`` if one is all ties.

    tau-b = sum of concordance signs / sqrt(untied pairs in x * untied pairs in y), as ``scipy.stats.kendalltau``.
    """
    i, j = np.triu_indices(x.shape[0], k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(axis=0) / np.sqrt((sx != 0).sum(axis=0) * (sy != 0).sum(axis=0))


__all__ = ["MIN_SUPPORTERS", "RankAgreement", "SeekerTable", "rank_agreement"]
