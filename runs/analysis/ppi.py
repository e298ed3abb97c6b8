"""Prediction-powered mean (PPI++): the judge scored every episode, humans some; the card is the unit of independence.

Angelopoulos, Duchi & Zrnic 2023 ("PPI++", power-tuned λ): the human mean on the labelled
episodes, shifted by λ times the judge's gap between unlabelled and labelled episodes. Episodes
of one card (other personas, repeats) are correlated, so the variance is card-clustered (CR1,
each part's card sums with its own ``C/(C-1)``, as statsmodels' WLS ``cov_type='cluster'``; the
tests check it) and the interval is a t interval with (labelled cards − 1) degrees of freedom.
Each episode weighs 1 / (its card's episodes), so each card counts once: the estimand is the
leaderboard's, the mean over cards of the card's mean human label × 25.

Example:
    >>> import numpy as np
    >>> est = ppi_mean(np.array([75.0, 100]), np.array([50.0, 75]), np.array([25.0, 75]))
    >>> round(est.mean, 2), est.n_cards
    (68.75, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class PPIEstimate:
    """A prediction-powered mean: judge everywhere, corrected by the human-judge gap on a labelled subset."""

    mean: float
    ci_low: float
    ci_high: float
    n_labelled: int
    n_unlabelled: int
    weight: float
    """λ of PPI++: 0 ignores the judge (the human mean), 1 is classic PPI."""
    n_cards: int = 0
    """Cards with a labelled episode; the interval's t has ``n_cards - 1`` degrees of freedom."""


def _clip(x: float) -> float:
    return x if math.isnan(x) else min(100.0, max(0.0, x))


def _cr1(n_clusters: int) -> float:
    """CR1's small-sample factor C/(C-1); 0 for a part with no cards, so that it adds no variance."""
    return n_clusters / (n_clusters - 1) if n_clusters >= 2 else 0.0


def ppi_mean(judge_unlabelled: np.ndarray, judge_labelled: np.ndarray, human: np.ndarray, *,
             cards_unlabelled: np.ndarray | None = None, cards_labelled: np.ndarray | None = None) -> PPIEstimate:
    """PPI++ mean with a 95% card-clustered t interval, clipped to [0, 100].

    ``θ = h̄_L + λ·(j̄_U − j̄_L)`` (card-weighted means of human values h and judge values j
    on the labelled set L and the unlabelled set U), ``λ = cov(h, j) / ((1 + n/N)·var(j))``
    clipped to [0, 1]. Its variance is the CR1 sum over cards of each episode's linearised
    contribution; with one episode per card (no ``cards_*``) it is
    ``var(h − λ·j)/n + λ²·var(j_U)/N``, the unclustered PPI++ variance. ``nan`` with fewer
    than two labelled episodes; the interval is ``nan`` with fewer than two labelled cards.
    Unlabelled episodes on fewer than two cards cannot carry a variance: the result is then
    the humans' mean alone (λ = 0).

    Args:
        judge_unlabelled: judge values of the episodes without human labels (N).
        judge_labelled / human: judge and human values of the labelled episodes (n, paired).
        cards_unlabelled / cards_labelled: the card of each episode (any codes; a card may hold
            labelled and unlabelled episodes); omitted, every episode is its own card.
    """
    f_u, f_l, y = (np.asarray(x, dtype=float) for x in (judge_unlabelled, judge_labelled, human))
    n, big_n = len(y), len(f_u)
    card_u = np.arange(n, n + big_n) if cards_unlabelled is None else np.asarray(cards_unlabelled)
    card_l = np.arange(n) if cards_labelled is None else np.asarray(cards_labelled)
    if len(f_l) != n or len(card_l) != n or len(card_u) != big_n:
        raise ValueError(f"ppi_mean: {n} human values need {n} judge values and cards; "
                         f"{big_n} unlabelled judge values need {big_n} cards")
    if n < 2:
        return PPIEstimate(math.nan, math.nan, math.nan, n, big_n, math.nan)
    _, card = np.unique(np.concatenate([card_l, card_u]), return_inverse=True)
    w = 1.0 / np.bincount(card)[card]                  # each card weighs 1 in total
    cl, cu, w_l, w_u = card[:n], card[n:], w[:n], w[n:]
    c_l, c_u = len(np.unique(cl)), len(np.unique(cu))
    weight = 0.0
    if c_u >= 2:
        var_f = float(np.var(np.concatenate([f_l, f_u]), ddof=1))
        cov = float(np.cov(y, f_l, ddof=1)[0, 1])
        weight = min(1.0, max(0.0, cov / ((1 + n / big_n) * var_f))) if var_f > 0 else 0.0
    rectified = y - weight * f_l
    mean_l = float(np.sum(w_l * rectified) / w_l.sum())
    mean_u = float(np.sum(w_u * f_u) / w_u.sum()) if c_u >= 2 else 0.0
    mean = mean_l + weight * mean_u
    if c_l < 2:
        return PPIEstimate(_clip(mean), math.nan, math.nan, n, big_n, weight, c_l)
    part_l = np.bincount(cl, weights=w_l * (rectified - mean_l) / w_l.sum(), minlength=len(w))
    part_u = (np.bincount(cu, weights=weight * w_u * (f_u - mean_u) / w_u.sum(), minlength=len(w))
              if c_u >= 2 else np.zeros_like(part_l))
    variance = float(np.sum((math.sqrt(_cr1(c_l)) * part_l + math.sqrt(_cr1(c_u)) * part_u) ** 2))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, c_l - 1)) * math.sqrt(variance)
    return PPIEstimate(_clip(mean), _clip(mean - half), _clip(mean + half), n, big_n, weight, c_l)
