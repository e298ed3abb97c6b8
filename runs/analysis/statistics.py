"""Statistics a paper can cite: clustered intervals, paired comparisons, judge noise, PPI, power.

Pure functions over numpy arrays on the ×25 scale (a label 0..4 is worth label × 25
points, so every value lies in [0, 100]); ``esc_eval.runs.analysis.report`` gathers the arrays from a
store. The unit of independence is the role card: episodes that share a card (other
personas, repeats) are correlated, so every interval and test resamples or flips
whole cards (Miller 2024, "Adding Error Bars to Evals", arXiv 2411.00640).

* ``cluster_mean``: mean, cluster-robust standard error and a seeded percentile
  bootstrap interval over cards (``scipy.stats.bootstrap``); it cannot leave [0, 100].
* ``paired_comparison``: the mean card-level difference of two supporters, its paired
  bootstrap interval, a sign-flip permutation p-value (``scipy.stats.permutation_test``)
  and win / tie / loss counts; ``holm`` adjusts a family of p-values.
* ``rank_intervals``: 95% bootstrap intervals of each supporter's rank.
* ``judge_noise``: judge (within-episode) variance vs between-episode variance when
  each episode was scored ``k`` times.
* ``ppi_mean``: prediction-powered mean (PPI++, Angelopoulos et al. 2023) from judge
  labels on every episode and human labels on a subset, clustered by card
  (``esc_eval.runs.analysis.ppi``, re-exported here).
* ``cards_needed`` / ``min_detectable_difference``: paired-t power (statsmodels).

Example:
    >>> import numpy as np
    >>> est = cluster_mean(np.array([75.0, 50, 100, 25]), np.array([0, 0, 1, 1]))
    >>> est.mean, est.n_cards
    (62.5, 2)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from esc_eval.runs.analysis.ppi import PPIEstimate, ppi_mean  # noqa: F401  (re-exported: the PPI lives in ppi.py)

RESAMPLES = 2000
"""Bootstrap resamples per interval (Efron's rule of thumb for 95% percentile intervals)."""
SEED = 20240814
"""Every resampling is seeded with this, so a report is the same each time it is made."""
SMALL_N = 10
"""Rows with fewer than this many cards are marked: a bootstrap over so few cards is too narrow."""
ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over episodes with its uncertainty; the interval is ``nan`` with fewer than two cards."""

    mean: float
    se_clustered: float
    ci_low: float
    ci_high: float
    n_episodes: int
    n_cards: int

    @property
    def small(self) -> bool:
        """Fewer than ``SMALL_N`` cards: the interval is a rough guide only."""
        return self.n_cards < SMALL_N


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _card_sums(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per card: the sum of its episodes' values and how many episodes it has."""
    _, index = np.unique(clusters, return_inverse=True)
    return np.bincount(index, weights=values), np.bincount(index).astype(float)


def clustered_se(values: np.ndarray, clusters: np.ndarray) -> float:
    """Cluster-robust standard error of the episode mean (CR1, as statsmodels' OLS ``cov_type='cluster'``).

    ``se² = C/(C-1) · Σ_c (s_c − mean·m_c)² / N²`` with ``s_c`` the sum and ``m_c`` the
    count of card ``c``'s episodes, ``C`` cards and ``N`` episodes; ``nan`` with one card.
    """
    sums, counts = _card_sums(values, clusters)
    cards, total = len(sums), counts.sum()
    if cards < 2:
        return math.nan
    mean = sums.sum() / total
    return float(math.sqrt(cards / (cards - 1) * np.sum((sums - mean * counts) ** 2)) / total)


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def cluster_mean(values: np.ndarray, clusters: np.ndarray, *, seed: int = SEED, resamples: int = RESAMPLES) -> Estimate:
    """Mean of ``values`` (one per episode, in [0, 100]) with a 95% bootstrap interval over cards.

    Whole cards are resampled with replacement (percentile method); each resample's
    statistic is again a mean of values in [0, 100], so the interval stays inside it.

    Args:
        values: one value per episode.
        clusters: the card of each episode (any hashable codes, same length).
    """
    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    sums, counts = _card_sums(values, clusters)
    mean = float(sums.sum() / counts.sum())
    low = high = math.nan
    if len(sums) >= 2:
        if np.allclose(sums / counts, mean):
            low = high = mean
        else:
            result = stats.bootstrap((sums, counts), _ratio, paired=True, vectorized=True, n_resamples=resamples,
                                     confidence_level=LEVEL, method="percentile", random_state=_rng(seed))
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Estimate(mean, clustered_se(values, clusters), _clip(low), _clip(high), len(values), len(sums))


def _clip(x: float) -> float:
    return x if math.isnan(x) else min(100.0, max(0.0, x))


@dataclass(frozen=True)
class Comparison:
    """Supporter a minus supporter b over the cards both played (``nan`` interval/p with fewer than two)."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    ties: int
    losses: int
    n_cards: int


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def permutation_resamples(tests: int) -> int:
    """Sign flips per test: enough that a Holm threshold ``ALPHA / tests`` is reachable 20 times over."""
    return max(1999, math.ceil(20 * tests / ALPHA))


def paired_comparison(a: np.ndarray, b: np.ndarray, *, seed: int = SEED, resamples: int = RESAMPLES,
                      flips: int = 1999) -> Comparison:
    """Compare card-level values of two supporters; ``a[i]`` and ``b[i]`` are the same card.

    ``diff`` is mean(a − b); its interval is a percentile bootstrap over cards; the
    p-value is a two-sided sign-flip permutation test of "no difference" (exact when
    ``2**n_cards <= flips``); wins / ties / losses count cards where a is above / equal
    to / below b.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    wins, ties, losses = int(np.sum(d > 0)), int(np.sum(d == 0)), int(np.sum(d < 0))
    if n == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, 0, 0, 0, 0)
    diff = float(d.mean())
    if n < 2:
        return Comparison(diff, math.nan, math.nan, math.nan, wins, ties, losses, n)
    if np.all(d == d[0]):   # every resample is the same: the bootstrap has nothing to spread
        low = high = diff
    else:
        boot = stats.bootstrap((d,), _mean, vectorized=True, n_resamples=resamples, confidence_level=LEVEL,
                               method="percentile", random_state=_rng(seed))
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    test = stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True, n_resamples=flips,
                                  alternative="two-sided", random_state=_rng(seed + 1), batch=max(1, 2_000_000 // n))
    p = float(test.pvalue)
    return Comparison(diff, low, high, min(1.0, p), wins, ties, losses, n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error); ``nan`` entries stay ``nan`` and are not counted.

    Step-down: the i-th smallest of m p-values is multiplied by m − i + 1, then made
    monotone. The same numbers as statsmodels' ``multipletests(method="holm")`` (the
    tests check it), without its ``gc.collect()`` on every call.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
    return out.tolist()


def rank_intervals(table: np.ndarray, *, seed: int = SEED, resamples: int = RESAMPLES) -> list[tuple[int, int, int]]:
    """Per supporter: (rank, low, high) with rank 1 the highest mean, the interval from a bootstrap over cards.

    Args:
        table: cards × supporters of card-level values, ``nan`` where a supporter did not play a card.
    """
    table = np.asarray(table, dtype=float)
    cards, supporters = table.shape
    observed = _ranks(np.nanmean(table, axis=0)[None, :])[0]
    index = _rng(seed).integers(0, cards, size=(resamples, cards))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # a resample may hold no card of some supporter
        means = np.nanmean(table[index], axis=1)           # resamples × supporters
    ranks = _ranks(means)
    low = np.percentile(ranks, 2.5, axis=0, method="lower")
    high = np.percentile(ranks, 97.5, axis=0, method="higher")
    return [(int(observed[s]), int(low[s]), int(high[s])) for s in range(supporters)]


def _ranks(means: np.ndarray) -> np.ndarray:
    """Competition ranks per row, 1 for the highest mean; ``nan`` means rank last."""
    filled = np.where(np.isnan(means), -np.inf, np.round(means, 9))   # equal means tie, whatever the float order
    return 1 + np.sum(filled[:, None, :] > filled[:, :, None], axis=2)


@dataclass(frozen=True)
class JudgeNoise:
    """Variance of one label split into the judge's share and the episodes' share (×25 scale, points²)."""

    var_judge: float
    var_between: float
    samples: float
    n_episodes: int

    @property
    def judge_share(self) -> float:
        total = self.var_judge + self.var_between
        return self.var_judge / total if total > 0 else math.nan


def judge_noise(samples: Sequence[Sequence[float]]) -> JudgeNoise:
    """One-way random-effects split of label variance, from episodes scored several times.

    ``var_judge`` is the pooled within-episode variance (the same dialogue, other judge
    seeds); ``var_between`` the variance of the episodes' true values, by the method of
    moments: var(episode means) − var_judge / k̄, floored at 0. Only episodes with two
    labels or more carry judge variance; ``nan`` when there are none.
    """
    groups = [np.asarray(s, dtype=float) for s in samples if len(s)]
    repeated = [g for g in groups if len(g) >= 2]
    if not repeated:
        return JudgeNoise(math.nan, math.nan, 1.0 if groups else math.nan, len(groups))
    within = sum(float(np.sum((g - g.mean()) ** 2)) for g in repeated) / sum(len(g) - 1 for g in repeated)
    means = np.array([g.mean() for g in groups])
    k = round(float(len(groups) / np.sum([1 / len(g) for g in groups])), 6)   # harmonic mean of samples per episode
    between = max(0.0, float(np.var(means, ddof=1)) - within / k) if len(groups) >= 2 else math.nan
    return JudgeNoise(within, between, k, len(groups))


def cards_needed(delta: float, sd_diff: float, *, power: float = 0.8) -> float:
    """Cards (shared by two supporters) a paired t-test needs to detect ``delta`` points at ``power``.

    ``sd_diff`` is the standard deviation of the card-level differences; two-sided,
    α = 0.05 for one comparison. ``inf`` when ``delta`` is 0, ``nan`` when ``sd_diff`` is.
    """
    if math.isnan(sd_diff):
        return math.nan
    if delta == 0:
        return math.inf
    if sd_diff == 0:
        return 2.0
    from statsmodels.stats.power import TTestPower

    return float(math.ceil(TTestPower().solve_power(effect_size=abs(delta) / sd_diff, alpha=ALPHA, power=power,
                                                    alternative="two-sided")))


def min_detectable_difference(n_cards: int, sd_diff: float, *, power: float = 0.8) -> float:
    """The smallest difference (points) a paired t-test over ``n_cards`` cards finds at ``power``."""
    if n_cards < 2 or math.isnan(sd_diff):
        return math.nan
    from statsmodels.stats.power import TTestPower

    effect = TTestPower().solve_power(nobs=n_cards, alpha=ALPHA, power=power, alternative="two-sided")
    return float(effect * sd_diff)
