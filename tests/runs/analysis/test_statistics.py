"""The report's estimators on synthetic data of known truth: error rates, power, coverage, bounds.

Labels are drawn as ``card difficulty + Binomial(2, p)``: a card adds 0, 1 or 2 (shared by
every supporter and episode on it, which is what makes episodes of a card correlated)
and a supporter adds Binomial(2, p), so the true mean label is 1 + 2p and a supporter's
true leaderboard value is 25·(1 + 2p). Every simulation is seeded.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from esc_eval.runs.analysis import statistics
from esc_eval.runs.analysis.comparisons import compare, power, ranks
from esc_eval.runs.analysis.statistics import (
    cards_needed,
    cluster_mean,
    clustered_se,
    holm,
    judge_noise,
    min_detectable_difference,
    paired_comparison,
    ppi_mean,
    rank_intervals,
)

DIMENSIONS = [f"d{i}" for i in range(7)]


def _study(rng: np.random.Generator, cards: int, ps: dict[str, float], episodes: int = 1) -> dict[str, np.ndarray]:
    """Per supporter, cards × episodes values (×25) sharing each card's difficulty."""
    difficulty = rng.integers(0, 3, size=(cards, 1))
    return {s: (difficulty + rng.binomial(2, p, size=(cards, episodes))) * 25.0 for s, p in ps.items()}


def _table(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {s: {str(c): float(v[c].mean()) for c in range(len(v))} for s, v in values.items()}


@pytest.mark.slow
def test_no_true_difference_is_declared_in_at_most_5_percent_of_studies() -> None:
    """Two supporters of one distribution, 7 dimensions, 200 studies: family-wise false positives after Holm."""
    rng = np.random.default_rng(17)
    declared = 0
    for _ in range(200):
        cards = {d: _table(_study(rng, 30, {"a": 0.5, "b": 0.5})) for d in DIMENSIONS}
        found = compare(cards, ["a", "b"], DIMENSIONS)
        assert len(found) == 7
        declared += any(c.significant for c in found)
    assert declared <= 10, f"{declared} of 200 studies declared a difference that is not there"


def test_a_10_point_difference_with_60_cards_is_found_in_80_percent() -> None:
    """p = 0.6 vs 0.4: true values 55 vs 45. The sd of a card's difference is 24.5 points, so a paired
    test over 60 cards has ~88% power in theory; the pipeline must reach 80%."""
    rng = np.random.default_rng(23)
    found = 0
    for _ in range(200):
        (c,) = compare({"d": _table(_study(rng, 60, {"a": 0.6, "b": 0.4}))}, ["a", "b"], ["d"])
        found += c.significant and c.diff > 0
    assert found >= 160, f"found in {found} of 200 studies"


def test_bootstrap_interval_covers_the_known_mean_93_to_97_percent() -> None:
    """40 cards × 2 episodes (personas) each; the true mean is 25·(1 + 2·0.6) = 55."""
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(40), 2)
    covered = 0
    studies = 600
    for seed in range(studies):
        values = _study(rng, 40, {"a": 0.6}, episodes=2)["a"].ravel()
        estimate = cluster_mean(values, clusters, seed=seed)
        covered += estimate.ci_low <= 55.0 <= estimate.ci_high
    assert 0.93 <= covered / studies <= 0.97, covered / studies


def test_ignoring_the_cards_would_undercover() -> None:
    """Why the bootstrap resamples cards: with 4 episodes a card, treating episodes as independent is too narrow."""
    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(30), 4)
    clustered = naive = 0
    for seed in range(300):
        values = _study(rng, 30, {"a": 0.5}, episodes=4)["a"].ravel()
        est = cluster_mean(values, clusters, seed=seed)
        clustered += est.ci_low <= 50.0 <= est.ci_high
        each = cluster_mean(values, np.arange(len(values)), seed=seed)
        naive += each.ci_low <= 50.0 <= each.ci_high
        assert est.se_clustered > each.se_clustered
    assert naive / 300 < 0.85 < 0.92 < clustered / 300


def test_intervals_never_leave_0_to_100() -> None:
    rng = np.random.default_rng(11)
    for seed in range(300):
        cards = int(rng.integers(2, 25))
        p = rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])
        values = rng.binomial(4, p, size=cards * 2) * 25.0
        est = cluster_mean(values, np.repeat(np.arange(cards), 2), seed=seed)
        assert 0.0 <= est.ci_low <= est.mean <= est.ci_high <= 100.0
        labelled = rng.binomial(4, p, size=cards) * 25.0
        ppi = ppi_mean(rng.binomial(4, p, size=3 * cards) * 25.0, labelled, np.clip(labelled + 25, 0, 100))
        assert 0.0 <= ppi.ci_low <= ppi.mean <= ppi.ci_high <= 100.0
    # the example: values 100 and 50 gave a normal interval [26.0, 124.0]
    est = cluster_mean(np.array([100.0, 50.0]), np.array([0, 1]))
    assert (est.ci_low, est.ci_high) == (50.0, 100.0) and est.small


def test_small_and_degenerate_inputs() -> None:
    one = cluster_mean(np.array([75.0, 25.0]), np.array(["c", "c"]))
    assert one.mean == 50.0 and one.n_cards == 1 and one.n_episodes == 2
    assert math.isnan(one.ci_low) and math.isnan(one.se_clustered)
    assert math.isnan(cluster_mean(np.array([]), np.array([])).mean)
    same = cluster_mean(np.full(12, 75.0), np.arange(12))
    assert (same.ci_low, same.ci_high, same.small) == (75.0, 75.0, False)
    assert statistics.SMALL_N == 10 and cluster_mean(np.arange(9.0), np.arange(9)).small
    assert not cluster_mean(np.arange(10.0), np.arange(10)).small


def test_clustered_se_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    values = rng.integers(0, 5, 90) * 25.0
    clusters = rng.integers(0, 17, 90)
    fit = sm.OLS(values, np.ones(len(values))).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    assert clustered_se(values, clusters) == pytest.approx(float(fit.bse[0]), rel=1e-9)


def test_paired_comparison_counts_and_exact_p() -> None:
    a = np.array([100.0, 75, 50, 50, 75])
    b = np.array([50.0, 75, 25, 75, 50])
    c = paired_comparison(a, b, flips=9999)
    d = a - b                                            # 50, 0, 25, -25, 25
    assert (c.diff, c.wins, c.ties, c.losses, c.n_cards) == (15.0, 3, 1, 1, 5)
    # exact (2**5 <= flips): the share of the 32 sign patterns whose |mean| reaches the observed one
    means = [abs(np.mean(np.array(signs) * d)) for signs in itertools.product((-1, 1), repeat=5)]
    assert c.p_value == pytest.approx(np.mean(np.array(means) >= 15.0 - 1e-9))
    assert -100 <= c.ci_low <= c.diff <= c.ci_high <= 100


def test_holm_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    assert holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)
    rng = np.random.default_rng(6)
    for m in (1, 2, 7, 40):
        p = rng.random(m) ** 3
        assert holm(p.tolist()) == pytest.approx(multipletests(p, method="holm")[1].tolist())


def test_rank_intervals_separate_clear_winners_and_overlap_ties() -> None:
    rng = np.random.default_rng(2)
    table = np.column_stack([rng.normal(m, 10, 50) for m in (20.0, 50.0, 51.0)])
    found = rank_intervals(table)
    assert found[0] == (3, 3, 3)
    assert {found[1][0], found[2][0]} == {1, 2} and found[1][1:] == (1, 2) and found[2][1:] == (1, 2)
    sorted_ranks = ranks({"d": {s: {str(i): v for i, v in enumerate(table[:, k])} for k, s in enumerate("abc")}}, list("abc"), ["d"])
    assert [r.supporter for r in sorted_ranks["d"]][-1] == "a"


def test_judge_noise_recovers_known_variances() -> None:
    """Episode truths with sd 20, judge noise sd 10, 3 samples each, 3000 episodes."""
    rng = np.random.default_rng(4)
    truth = rng.normal(50, 20, 3000)
    samples = truth[:, None] + rng.normal(0, 10, (3000, 3))
    noise = judge_noise(samples.tolist())
    assert noise.var_judge == pytest.approx(100, rel=0.08)
    assert noise.var_between == pytest.approx(400, rel=0.08)
    assert noise.judge_share == pytest.approx(0.2, abs=0.03) and noise.samples == pytest.approx(3)
    assert math.isnan(judge_noise([[50.0], [75.0]]).var_judge)


def test_power_numbers() -> None:
    # a standard table value: effect size 0.5, paired t, 80% power, alpha 0.05 two-sided -> 34 pairs
    assert cards_needed(10.0, 20.0) == 34
    assert cards_needed(0.0, 20.0) == math.inf and math.isnan(cards_needed(5.0, math.nan))
    mde = min_detectable_difference(34, 20.0)
    assert 9.0 < mde <= 10.0
    assert min_detectable_difference(60, 24.5) < min_detectable_difference(30, 24.5)


def test_power_rows_from_card_tables() -> None:
    rng = np.random.default_rng(1)
    cards = {"d": _table(_study(rng, 60, {"a": 0.6, "b": 0.4}))}
    (row,) = power(cards, ["a", "b"], ["d"], 10.0)
    assert (row.a, row.b, row.n_cards) == ("a", "b", 60)
    assert row.sd_diff == pytest.approx(24.5, rel=0.2)
    assert 30 <= row.cards_needed <= 80 and 5 < row.min_detectable < 15
    (alone,) = power({"d": {"a": cards["d"]["a"]}}, ["a"], ["d"], 10.0)
    assert alone.b == "" and alone.sd_diff > row.sd_diff      # unpaired is pessimistic: the card difficulty stays in
