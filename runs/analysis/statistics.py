"""Statistics a paper can cite: clustered intervals, paired comparisons, judge noise, PPI, power.

Pure functions over numpy arrays on the ×25 scale (a label 0..4 is worth label × 25
points, so every value lies in [0, 100]); ``esc_eval.runs.analysis.report`` gathers the arrays from a
store. The unit of independence is the role card: episodes that share a card (other
personas, repeats) are correlated, so every interval and test resamples or flips
whole cards (Miller 2024, "Adding Error Bars to Evals", arXiv 2411.00640).

* ``cluster_mean``: a supporter's score (the mean over cards of each card's mean value:
  every card counts once), its standard error and a t interval over card means (t(C−1),
  ``scipy.stats.t``) inside [0, 100], widened when the cards show no spread.
* ``paired_comparisons``: the mean card-level difference of two supporters, a sign-flip
  p-value (exact up to 20 cards) and the interval that inverts the same test
  (``esc_eval.runs.analysis.signflip``), win / tie / loss counts; ``holm`` adjusts a family
  of p-values; ``underpowered`` says when a family can never declare a pair.
* ``rank_intervals``: 95% bootstrap intervals of each supporter's rank (ties symmetric).
* ``judge_noise``: judge (within-episode) variance vs between-episode variance when
  each episode was scored ``k`` times, and the judge's share of the score's variance.
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

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from esc_eval.agents.judge.profiles import POINTS
from esc_eval.runs.analysis.ppi import PPIEstimate, ppi_mean  # noqa: F401  (re-exported: the PPI lives in ppi.py)

RESAMPLES = 2000
"""Bootstrap resamples of the rank intervals (Efron's rule of thumb for 95% percentile intervals)."""
SEED = 20240814
"""Every resampling is seeded with this, so a report is the same each time it is made."""
SMALL_N = 10
"""Rows with fewer than this many cards are flagged ``small_n``: the interval rests on a handful of cards."""
ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A supporter's score with its uncertainty; the interval is ``nan`` with fewer than two cards.

    ``mean`` weighs every card once: the mean over cards of the card's mean value (the
    report's one estimand); ``mean_episodes`` weighs every episode once (the same number
    when every card has as many episodes). ``no_spread``: every card has the same value, and
    the interval was widened (``t_interval``).
    """

    mean: float
    se_clustered: float
    ci_low: float
    ci_high: float
    n_episodes: int
    n_cards: int
    mean_episodes: float = math.nan
    no_spread: bool = False

    @property
    def small(self) -> bool:
        """Fewer than ``SMALL_N`` cards: the interval is a rough guide only."""
        return self.n_cards < SMALL_N

    @property
    def flags(self) -> tuple[str, ...]:
        """``small_n`` and ``no_spread``, where due."""
        return tuple(name for name, on in (("small_n", self.small), ("no_spread", self.no_spread)) if on)


def card_means(values: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Per card (in sorted card order): the mean of its episodes' values."""
    _, index = np.unique(clusters, return_inverse=True)
    return np.bincount(index, weights=values) / np.bincount(index)


def clustered_se(values: np.ndarray, clusters: np.ndarray) -> float:
    """Standard error of the mean over cards of card means: sd(card means) / √C; ``nan`` with one card.

    It is the cluster-robust (CR1) standard error of the episode regression weighted by one
    over the card's episodes (statsmodels' WLS, ``cov_type='cluster'``; the tests check it).
    """
    means = card_means(np.asarray(values, dtype=float), np.asarray(clusters))
    return float(np.std(means, ddof=1) / math.sqrt(len(means))) if len(means) >= 2 else math.nan


STEP = POINTS
"""One label on the ×25 scale: how far a card is moved when the cards show no spread."""


def t_interval(card_values: np.ndarray, *, low: float = 0.0, high: float = 100.0, step: float = STEP) -> tuple[float, float]:
    """mean ± t(C−1)·sd/√C over card values, widened towards skew (``_t``), intersected with [low, high]; ``nan`` with one card.

    With no spread (every card the same value v) the t interval has zero width, which would
    claim certainty that C equal cards do not give: it is then the hull of the t intervals
    of the same cards with one card moved one label (``step``) up, and down (kept in
    [low, high]); ``step`` 0 leaves it at zero width (figures with no label scale).
    """
    x = np.asarray(card_values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    if np.ptp(x) == 0 and step > 0:
        found = [_t(moved, low, high) for moved in one_label_off(x, low, high, step)]
        return min(f[0] for f in found), max(f[1] for f in found)
    return _t(x, low, high)


def _t(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The t interval joined with Johnson's (1978) skewness-corrected one (centre + μ₃/(6·s²·C)), clipped.

    Near the ends of the scale card means are skewed (a ceiling at 100), and the plain t
    interval's coverage drops to 0.93 at 10 cards; the shifted interval moves towards the
    long tail. The hull contains the t interval and is 0.5% wider on average.
    """
    n, centre, sd = len(x), float(x.mean()), float(np.std(x, ddof=1))
    half = _t_quantile(n - 1) * sd / math.sqrt(n)
    shift = float(np.mean((x - centre) ** 3)) / (6 * sd ** 2 * n) if sd > 0 else 0.0
    return max(low, centre - half + min(0.0, shift)), min(high, centre + half + max(0.0, shift))


@functools.lru_cache(maxsize=256)
def _t_quantile(df: int) -> float:
    """t(df)'s two-sided ``LEVEL`` quantile: a report asks it per cell (~300 on a large store), for a few distinct card counts."""
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def one_label_off(x: np.ndarray, low: float, high: float, step: float = STEP) -> list[np.ndarray]:
    """``x`` with its first card moved one label (``step``) up, and down (each kept in [low, high])."""
    moved = []
    for shift in (step, -step):
        y = x.copy()
        y[0] = min(high, max(low, y[0] + shift))
        moved.append(y)
    return moved


def cluster_mean(values: np.ndarray, clusters: np.ndarray, *, step: float = STEP) -> Estimate:
    """A supporter's score from one value per episode (in [0, 100]) and the card of each episode.

    The score is the mean over cards of each card's mean value; its interval is the t
    interval over card means with a skewness correction (``t_interval``), inside [0, 100];
    with fewer than two cards there is none. It covers 0.94-0.95 of the time at 10-20 cards
    in the clustered simulations of docs/statistics.md, where a percentile bootstrap over
    cards covered 0.87-0.93.

    Args:
        values: one value per episode.
        clusters: the card of each episode (any hashable codes, same length).
        step: how far a card is moved to widen an interval with no spread (one label on the
            ×25 scale); 0 for figures on another scale (no widening, no flag).
    """
    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    means = card_means(values, clusters)
    low, high = t_interval(means, step=step)
    se = float(np.std(means, ddof=1) / math.sqrt(len(means))) if len(means) >= 2 else math.nan
    return Estimate(float(means.mean()), se, low, high, len(values), len(means), float(values.mean()),
                    step > 0 and len(means) >= 2 and bool(np.ptp(means) == 0))


def _clip(x: float) -> float:
    return x if math.isnan(x) else min(100.0, max(0.0, x))


@dataclass(frozen=True)
class Comparison:
    """Supporter a minus supporter b over the cards both played (``nan`` interval/p with fewer than two).

    The interval inverts the sign-flip test that gives ``p_value`` (``signflip``): it excludes
    0 exactly when ``p_value`` < 0.05. ``exact``: every sign pattern was counted; otherwise
    ``floor`` is the smallest p the Monte Carlo draws can show ("p ≤ floor"). ``no_spread``:
    every card's difference is the same, and interval and p are those of the same cards with
    one card moved one label up or down, whichever is wider / larger.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    ties: int
    losses: int
    n_cards: int
    exact: bool = True
    floor: float = math.nan
    no_spread: bool = False


def paired_comparisons(table: np.ndarray, pairs: Sequence[tuple[int, int]], *, tests: int | None = None,
                       seed: int = SEED) -> list[Comparison]:
    """Compare pairs of columns of ``table`` (cards × supporters, ``nan`` where a supporter did not play a card).

    ``diff`` is the mean over shared cards of a − b; wins / ties / losses count cards where a
    is above / equal to / below b. ``tests`` is the size of the family the p-values will be
    Holm-adjusted over (default: these pairs): it sets the Monte Carlo draws beyond
    ``signflip.EXACT_CARDS`` cards so that Holm can still reject.
    """
    from esc_eval.runs.analysis import signflip

    table = np.asarray(table, dtype=float)
    draws = signflip.draws_for(tests or len(pairs))
    found = signflip.family(table, pairs, draws=draws, seed=seed)
    out = []
    for (a, b), test in zip(pairs, found):
        shared = ~np.isnan(table[:, a]) & ~np.isnan(table[:, b])
        d = table[shared, a] - table[shared, b]
        n = len(d)
        spread = n >= 2 and bool(np.ptp(d) == 0)
        if spread:
            moved = [signflip.family(np.column_stack([y, np.zeros(n)]), [(0, 1)], draws=draws, seed=seed)[0]
                     for y in one_label_off(d, -100.0, 100.0)]
            test = signflip.SignFlip(max(m.p_value for m in moved), min(m.ci_low for m in moved), max(m.ci_high for m in moved),
                                     test.exact, test.floor)
        out.append(Comparison(float(d.mean()) if n else math.nan, test.ci_low, test.ci_high, test.p_value,
                              int(np.sum(d > 0)), int(np.sum(d == 0)), int(np.sum(d < 0)), n, test.exact, test.floor, spread))
    return out


def paired_comparison(a: np.ndarray, b: np.ndarray, *, tests: int = 1, seed: int = SEED) -> Comparison:
    """``paired_comparisons`` of two aligned arrays of card values (``a[i]`` and ``b[i]`` are the same card)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, 0, 0, 0, 0)
    return paired_comparisons(np.column_stack([a, b]), [(0, 1)], tests=tests, seed=seed)[0]


def underpowered(n_cards: int, tests: int, *, exact: bool = True, floor: float = math.nan) -> bool:
    """Whether the smallest Holm-adjusted p attainable with ``n_cards`` cards, among ``tests``, exceeds α.

    The sign-flip test's smallest p is 2/2ⁿ (exact) or its Monte Carlo floor; Holm multiplies
    the smallest p of the family by ``tests``. Such a comparison can never be declared.
    """
    if n_cards < 2:
        return True
    smallest = 2 / 2 ** n_cards if exact else floor
    return smallest * tests > ALPHA


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


def rank_intervals(table: np.ndarray, *, seed: int = SEED, resamples: int = RESAMPLES,
                   groups: Sequence[Sequence[int]] | None = None) -> list[tuple[int, int, int]]:
    """Per supporter: (rank, low, high) with rank 1 the highest mean, the interval from a bootstrap over cards.

    In each resample a supporter's rank is 1 + the supporters above it + half those tied with
    it (a tie is half a place for each side, so tied supporters get mirror-image intervals);
    ``low`` / ``high`` are the 2.5th / 97.5th percentiles rounded outwards. Each resample is
    held as how often it drew each card, so every column's means come from one matrix product.

    Args:
        table: cards × supporters of card-level values, ``nan`` where a supporter did not play a card.
        groups: columns ranked among themselves (one dimension's supporters each), all
            resampled with the same cards; default: all columns, one group.
    """
    table = np.asarray(table, dtype=float)
    cards, columns = table.shape
    drawn = _rng(seed).integers(0, cards, size=(resamples, cards)) + cards * np.arange(resamples)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=resamples * cards).reshape(resamples, cards).astype(float)
    present = ~np.isnan(table)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # a column without cards (a supporter absent from a dimension)
        means = (counts @ np.where(present, table, 0.0)) / (counts @ present)     # resamples × columns
        observed_means = np.nanmean(table, axis=0)
    found: list[tuple[int, int, int]] = [(0, 0, 0)] * columns
    for group in groups if groups is not None else [range(columns)]:
        index = list(group)
        observed = _ranks(observed_means[None, index])[0]
        ranks = _mid_ranks(means[:, index])
        low = np.floor(np.percentile(ranks, 2.5, axis=0, method="lower"))
        high = np.ceil(np.percentile(ranks, 97.5, axis=0, method="higher"))
        for k, column in enumerate(index):
            found[column] = (int(observed[k]), int(low[k]), int(high[k]))
    return found


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _filled(means: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(means), -np.inf, np.round(means, 9))   # equal means tie, whatever the float order; nan last


def _ranks(means: np.ndarray) -> np.ndarray:
    """Competition ranks per row, 1 for the highest mean; ``nan`` means rank last."""
    filled = _filled(means)
    return 1 + np.sum(filled[:, None, :] > filled[:, :, None], axis=2)


def _mid_ranks(means: np.ndarray) -> np.ndarray:
    """Ranks per row with ties sharing their places (two tied for first: 1.5 each)."""
    filled = _filled(means)
    above = np.sum(filled[:, None, :] > filled[:, :, None], axis=2)
    tied = np.sum(filled[:, None, :] == filled[:, :, None], axis=2) - 1
    return 1 + above + tied / 2


@dataclass(frozen=True)
class JudgeNoise:
    """Variance of one label split into the judge's share and the episodes' share (×25 scale, points²).

    ``mean_share`` is the judge's share of the *score's* variance (se²): averaging k samples
    per episode and several episodes and cards shrinks the judge's part of it far more than
    its part of one label's variance (``judge_share``); ``nan`` when unknown.
    """

    var_judge: float
    var_between: float
    samples: float
    n_episodes: int
    mean_share: float = math.nan

    @property
    def judge_share(self) -> float:
        total = self.var_judge + self.var_between
        return self.var_judge / total if total > 0 else math.nan


def judge_noise(samples: Sequence[Sequence[float]], clusters: Sequence[object] | None = None) -> JudgeNoise:
    """One-way random-effects split of label variance, from episodes scored several times.

    ``var_judge`` is the pooled within-episode variance (the same dialogue, other judge
    seeds); ``var_between`` the variance of the episodes' true values, by the method of
    moments: var(episode means) − var_judge / k̄, floored at 0. Only episodes with two
    labels or more carry judge variance; ``nan`` when there are none.

    With ``clusters`` (the card of each episode, aligned with ``samples``), ``mean_share`` is
    the judge's part of the score's variance: the score is the mean over C cards of the mean
    over a card's m_c episodes of k_e labels, so the judge adds var_judge · Σ_c Σ_e 1/k_e / m_c² / C²
    to it, out of sd(card means)² / C (capped at 1).
    """
    kept = [(np.asarray(s, dtype=float), c) for s, c in zip(samples, clusters if clusters is not None else [None] * len(samples))
            if len(s)]
    groups = [g for g, _ in kept]
    repeated = [g for g in groups if len(g) >= 2]
    if not repeated:
        return JudgeNoise(math.nan, math.nan, 1.0 if groups else math.nan, len(groups))
    within = sum(float(np.sum((g - g.mean()) ** 2)) for g in repeated) / sum(len(g) - 1 for g in repeated)
    means = np.array([g.mean() for g in groups])
    k = round(float(len(groups) / np.sum([1 / len(g) for g in groups])), 6)   # harmonic mean of samples per episode
    between = max(0.0, float(np.var(means, ddof=1)) - within / k) if len(groups) >= 2 else math.nan
    share = math.nan
    if clusters is not None:
        _, index = np.unique(np.array([str(c) for _, c in kept]), return_inverse=True)
        episodes = np.bincount(index)
        inverse_k = np.bincount(index, weights=[1 / len(g) for g in groups])
        cards = len(episodes)
        judge_part = within * float(np.sum(inverse_k / episodes ** 2)) / cards ** 2
        total = float(np.var(np.bincount(index, weights=means) / episodes, ddof=1)) / cards if cards >= 2 else math.nan
        share = min(1.0, judge_part / total) if total > 0 else math.nan
    return JudgeNoise(within, between, k, len(groups), share)


def cards_needed(delta: float, sd_diff: float, *, power: float = 0.8, tests: int = 1) -> float:
    """Cards (shared by two supporters) a paired t-test needs to detect ``delta`` points at ``power``.

    ``sd_diff`` is the standard deviation of the card-level differences; two-sided, at
    α = 0.05 / ``tests`` (the level Holm demands of the smallest p in a family of ``tests``,
    so planning with it is safe), and never fewer than ``signflip_cards(tests)``, below which
    the sign-flip test cannot reach that level at all. ``inf`` when ``delta`` is 0, ``nan``
    when ``sd_diff`` is.
    """
    if math.isnan(sd_diff):
        return math.nan
    if delta == 0:
        return math.inf
    if sd_diff == 0:
        return float(signflip_cards(tests))
    from statsmodels.stats.power import TTestPower

    found = TTestPower().solve_power(effect_size=abs(delta) / sd_diff, alpha=ALPHA / tests, power=power, alternative="two-sided")
    return float(max(math.ceil(found), signflip_cards(tests)))


def signflip_cards(tests: int) -> int:
    """The fewest shared cards whose smallest sign-flip p, 2/2ⁿ, survives Holm over ``tests`` tests (2/2ⁿ · tests ≤ 0.05)."""
    return max(2, math.ceil(math.log2(2 * tests / ALPHA)))


def min_detectable_difference(n_cards: int, sd_diff: float, *, power: float = 0.8) -> float:
    """The smallest difference (points) a paired t-test over ``n_cards`` cards finds at ``power``."""
    if n_cards < 2 or math.isnan(sd_diff):
        return math.nan
    from statsmodels.stats.power import TTestPower

    effect = TTestPower().solve_power(nobs=n_cards, alpha=ALPHA, power=power, alternative="two-sided")
    return float(effect * sd_diff)
