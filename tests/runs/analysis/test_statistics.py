"""The report's estimators on synthetic data of known truth: coverage, error rates, power, bounds, CI/p agreement.

Two generators. ``_study``: labels are ``card difficulty + Binomial(2, p)`` (a card adds 0, 1 or 2,
shared by every supporter and episode on it), so a supporter's true value is 25·(1 + 2p).
``Scenario``: the audit's clustered scenarios: label = clip(round(μ + card effect + episode effect
+ judge noise), 0, 4), with m episodes a card and k judge samples an episode; the true value is
computed exactly from normal probabilities. Every simulation is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

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
    rank_intervals,
    t_interval,
    underpowered,
)

DIMENSIONS = [f"d{i}" for i in range(7)]


def _study(rng: np.random.Generator, cards: int, ps: dict[str, float], episodes: int = 1) -> dict[str, np.ndarray]:
    """Per supporter, cards × episodes values (×25) sharing each card's difficulty."""
    difficulty = rng.integers(0, 3, size=(cards, 1))
    return {s: (difficulty + rng.binomial(2, p, size=(cards, episodes))) * 25.0 for s, p in ps.items()}


def _table(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {s: {str(c): float(v[c].mean()) for c in range(len(v))} for s, v in values.items()}


@dataclass(frozen=True)
class Scenario:
    """Clustered labels: μ + card effect (uniform on ±spread and 0) + episode effect + judge noise, rounded, clipped to 0..4."""

    name: str
    mu: float
    spread: float
    sd_episode: float
    sd_judge: float
    episodes: int = 2
    samples: int = 1

    def truth(self) -> float:
        """25 × the expected label: exact, from the normal distribution of episode + judge effects."""
        sd = math.hypot(self.sd_episode, self.sd_judge)
        expected = 0.0
        for shift in (-self.spread, 0.0, self.spread):
            edges = stats.norm.cdf((np.array([0.5, 1.5, 2.5, 3.5]) - self.mu - shift) / sd)
            expected += float(np.sum(1 - edges)) / 3         # E[label] = Σ_j P(label ≥ j), j = 1..4
        return 25 * expected

    def draw(self, rng: np.random.Generator, cards: int) -> tuple[np.ndarray, np.ndarray]:
        """Episode values (mean of k labels × 25) and their cards."""
        card = rng.choice([-self.spread, 0.0, self.spread], size=(cards, 1, 1))
        episode = rng.normal(0, self.sd_episode, size=(cards, self.episodes, 1))
        judge = rng.normal(0, self.sd_judge, size=(cards, self.episodes, self.samples))
        labels = np.clip(np.round(self.mu + card + episode + judge), 0, 4)
        return labels.mean(axis=2).ravel() * 25, np.repeat(np.arange(cards), self.episodes)


SCENARIOS = [
    Scenario("moderate clustering", 2.0, 0.6, 0.7, 0.5),
    Scenario("strong clustering", 2.0, 1.5, 0.4, 0.3),
    Scenario("k = 3 judge samples", 2.0, 1.0, 0.4, 0.8, samples=3),
    Scenario("near the top", 3.4, 0.6, 0.5, 0.6),
]


def _coverage(scenario: Scenario, cards: int, studies: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    truth = scenario.truth()
    covered = 0
    for _ in range(studies):
        estimate = cluster_mean(*scenario.draw(rng, cards))
        assert 0.0 <= estimate.ci_low <= estimate.mean <= estimate.ci_high <= 100.0
        covered += estimate.ci_low <= truth <= estimate.ci_high
    return covered / studies


def test_scenario_truth_is_the_long_run_mean() -> None:
    """The exact truth of each scenario agrees with a large simulation (so coverage is measured against the right number)."""
    rng = np.random.default_rng(0)
    for scenario in SCENARIOS:
        values, _ = scenario.draw(rng, 40_000)
        assert values.mean() == pytest.approx(scenario.truth(), abs=0.25), scenario.name


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_mean_interval_covers_at_10_and_20_cards(scenario: Scenario) -> None:
    """1,500 studies per cell (the slow test runs 5,000): ≥ 0.93 at 10 cards, ≥ 0.94 at 20 (binomial sd ≈ 0.006)."""
    assert _coverage(scenario, 10, 1500, seed=1) >= 0.93
    assert _coverage(scenario, 20, 1500, seed=2) >= 0.935


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_mean_interval_coverage_audit(scenario: Scenario) -> None:
    """The audit's cells, 5,000 studies each: the numbers docs/statistics.md's coverage table quotes."""
    assert _coverage(scenario, 10, 5000, seed=11) >= 0.93
    assert _coverage(scenario, 20, 5000, seed=12) >= 0.94


def test_mean_interval_contains_the_t_interval_over_card_means() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        cards = int(rng.integers(2, 30))
        values, clusters = SCENARIOS[int(rng.integers(0, 4))].draw(rng, cards)
        est = cluster_mean(values, clusters)
        means = np.array([values[clusters == c].mean() for c in range(cards)])
        if np.ptp(means) == 0:
            continue
        low, high = stats.t.interval(0.95, cards - 1, loc=means.mean(), scale=stats.sem(means))
        assert est.ci_low <= max(0.0, low) + 1e-9 and est.ci_high >= min(100.0, high) - 1e-9
        assert est.mean == pytest.approx(means.mean()) and est.se_clustered == pytest.approx(stats.sem(means))


def test_one_estimand_each_card_counts_once() -> None:
    """The issue's unbalanced example: card means 40 ... the score is the mean of card means, not of episodes."""
    values = np.array([100.0] * 10 + [0.0] * 15)                  # 4 on cards 0-9, three extra 0-episodes on cards 0-4
    clusters = np.array(list(range(10)) + [c for c in range(5) for _ in range(3)])
    est = cluster_mean(values, clusters)
    assert est.mean == pytest.approx((5 * 25 + 5 * 100) / 10)     # cards 0-4: (100 + 0 + 0 + 0) / 4 = 25
    assert est.mean_episodes == pytest.approx(40.0)
    assert est.n_cards == 10 and est.n_episodes == 25


def test_clustered_se_matches_statsmodels_weighted_cluster_robust() -> None:
    """sd(card means)/√C is the CR1 standard error of WLS with weights 1/(the card's episodes)."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    values = rng.integers(0, 5, 90) * 25.0
    clusters = rng.integers(0, 17, 90)
    weights = 1 / np.bincount(clusters)[clusters]
    fit = sm.WLS(values, np.ones(len(values)), weights=weights).fit(cov_type="cluster", cov_kwds={"groups": clusters})
    assert clustered_se(values, clusters) == pytest.approx(float(fit.bse[0]), rel=1e-9)
    assert cluster_mean(values, clusters).mean == pytest.approx(float(fit.params[0]))


def test_intervals_never_leave_0_to_100() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        cards = int(rng.integers(2, 25))
        p = rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])
        est = cluster_mean(rng.binomial(4, p, size=cards * 2) * 25.0, np.repeat(np.arange(cards), 2))
        assert 0.0 <= est.ci_low <= est.mean <= est.ci_high <= 100.0
        assert est.ci_high > est.ci_low                               # never a zero-width interval


def test_no_spread_is_flagged_and_widened_by_one_label() -> None:
    """Ten cards all at 50: the t interval of nine 50s and one 75 (or 25): 50 ± 2.5 ± t(9)·2.5, not [50, 50]."""
    est = cluster_mean(np.full(10, 50.0), np.arange(10))
    assert est.no_spread and est.flags == ("no_spread",)
    half = stats.t.ppf(0.975, 9) * 25 / 10                            # sd of nine 50s and a 75 is 25/√10; se = 25/10
    skew = stats.moment([75.0] + [50.0] * 9, 3) / (6 * 62.5 * 10)     # Johnson's shift: μ₃ / (6 s² C), s² = 625/10
    assert (est.ci_low, est.ci_high) == pytest.approx((47.5 - half - skew, 52.5 + half + skew))
    top = cluster_mean(np.full(12, 100.0), np.arange(12))              # at the top only the card moved down counts
    assert top.ci_high == 100.0 and top.ci_low < 100 - 25 / 12 - stats.t.ppf(0.975, 11) * 25 / 12 < 100
    assert t_interval(np.array([75.0])) == (pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True))
    spread = cluster_mean(np.arange(10.0), np.arange(10))
    assert not spread.no_spread and spread.flags == ()


def test_small_and_degenerate_inputs() -> None:
    one = cluster_mean(np.array([75.0, 25.0]), np.array(["c", "c"]))
    assert one.mean == 50.0 and one.n_cards == 1 and one.n_episodes == 2
    assert math.isnan(one.ci_low) and math.isnan(one.se_clustered) and one.flags == ("small_n",)
    assert math.isnan(cluster_mean(np.array([]), np.array([])).mean)
    assert statistics.SMALL_N == 10 and cluster_mean(np.arange(9.0), np.arange(9)).small
    assert not cluster_mean(np.arange(10.0), np.arange(10)).small


# -- paired comparisons ---------------------------------------------------------------------------------------------


def _paired_study(rng: np.random.Generator, cards: int, quality: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Two supporters on the same cards (shared card effect), two episodes a card; card means of each."""
    card = rng.choice([-1.0, 0.0, 1.0], size=(cards, 1))
    out = []
    for q in quality:
        labels = np.clip(np.round(2.0 + q + card + rng.normal(0, 0.8, size=(cards, 2))), 0, 4)
        out.append(labels.mean(axis=1) * 25)
    return out[0], out[1]


def _paired_truth(quality: tuple[float, float]) -> float:
    return Scenario("a", 2.0 + quality[0], 1.0, 0.8, 0.0).truth() - Scenario("b", 2.0 + quality[1], 1.0, 0.8, 0.0).truth()


@pytest.mark.parametrize(("cards", "studies"), [(10, 1500), (15, 600)])
def test_paired_interval_covers_and_agrees_with_p(cards: int, studies: int) -> None:
    """A true difference of ~10 points and a null: coverage ≥ 0.93, and in every study 0 ∉ CI exactly when p < 0.05."""
    rng = np.random.default_rng(cards)
    for quality in ((0.4, 0.0), (0.3, 0.3)):
        truth = _paired_truth(quality)
        covered = rejected = 0
        for _ in range(studies):
            c = paired_comparison(*_paired_study(rng, cards, quality))
            covered += c.ci_low <= truth <= c.ci_high
            assert (c.ci_low > 0 or c.ci_high < 0) == (c.p_value < 0.05), c
            assert c.exact and -100 <= c.ci_low <= c.diff <= c.ci_high <= 100
            rejected += c.p_value < 0.05
        assert covered / studies >= 0.93, (quality, covered / studies)
        if quality[0] == quality[1]:
            assert rejected / studies <= 0.06                   # the null is rejected at most at its level


@pytest.mark.slow
def test_paired_interval_coverage_audit() -> None:
    """4,000 studies at 10 cards, 600 at 20 (exact over 2²⁰ sign patterns each): coverage ≥ 0.93, CI and p agree in all."""
    for cards, studies in ((10, 4000), (20, 600)):
        rng = np.random.default_rng(100 + cards)
        truth = _paired_truth((0.4, 0.0))
        covered = 0
        for _ in range(studies):
            c = paired_comparison(*_paired_study(rng, cards, (0.4, 0.0)))
            covered += c.ci_low <= truth <= c.ci_high
            assert (c.ci_low > 0 or c.ci_high < 0) == (c.p_value < 0.05)
        assert covered / studies >= 0.93, (cards, covered / studies)


def test_no_true_difference_is_declared_in_at_most_5_percent_of_studies_small() -> None:
    """Two supporters of one distribution, 7 dimensions, 12 cards (exact tests), 150 studies: family-wise error after Holm."""
    rng = np.random.default_rng(17)
    declared = 0
    for _ in range(150):
        cards = {d: _table(_study(rng, 12, {"a": 0.5, "b": 0.5})) for d in DIMENSIONS}
        found = compare(cards, ["a", "b"], DIMENSIONS)
        declared += any(c.significant for c in found)
    assert declared <= 12, f"{declared} of 150 studies declared a difference that is not there"   # 5%: 7.5 expected


@pytest.mark.slow
def test_no_true_difference_is_declared_in_at_most_5_percent_of_studies() -> None:
    """Three supporters of one distribution, 7 dimensions (21 tests), 30 cards (Monte Carlo), 300 studies."""
    rng = np.random.default_rng(17)
    declared = 0
    for _ in range(300):
        cards = {d: _table(_study(rng, 30, {"a": 0.5, "b": 0.5, "c": 0.5})) for d in DIMENSIONS}
        found = compare(cards, ["a", "b", "c"], DIMENSIONS)
        assert len(found) == 21 and not any(c.exact for c in found)
        declared += any(c.significant for c in found)
    assert declared <= 20, f"{declared} of 300 studies declared a difference that is not there"


def test_a_10_point_difference_with_60_cards_is_found_in_80_percent() -> None:
    """p = 0.6 vs 0.4: true values 55 vs 45; a paired test over 60 cards has ~88% power in theory."""
    rng = np.random.default_rng(23)
    found = 0
    for _ in range(100):
        (c,) = compare({"d": _table(_study(rng, 60, {"a": 0.6, "b": 0.4}))}, ["a", "b"], ["d"])
        found += c.significant and c.diff > 0
    assert found >= 80, f"found in {found} of 100 studies"


def test_exact_p_by_enumeration_and_the_floor() -> None:
    a = np.array([100.0, 75, 50, 50, 75])
    b = np.array([50.0, 75, 25, 75, 50])
    c = paired_comparison(a, b)
    assert (c.diff, c.wins, c.ties, c.losses, c.n_cards) == (15.0, 3, 1, 1, 5)
    d = a - b
    exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    assert c.p_value == pytest.approx(exact.pvalue) and c.exact
    # 15 cards all one way: the exact p is 2/2¹⁵ = 6.1e-5, not a Monte Carlo floor; exact up to 20 cards
    assert paired_comparison(np.arange(15.0) + 10, np.zeros(15)).p_value == pytest.approx(2 / 2 ** 15)
    twenty = paired_comparison(np.arange(20.0) + 10, np.zeros(20))
    assert twenty.exact and twenty.p_value == pytest.approx(2 / 2 ** 20)
    beyond = paired_comparison(np.arange(21.0) + 10, np.zeros(21), tests=637)
    assert not beyond.exact and beyond.p_value == beyond.floor and beyond.floor * 637 < 0.05   # Holm can still reject
    assert beyond.ci_low > 0


def test_monte_carlo_p_and_interval_agree_with_enumeration() -> None:
    """At 20 cards the Monte Carlo test (forced by a 21st card equal in both) lands near the exact one."""
    rng = np.random.default_rng(5)
    a, b = _paired_study(rng, 20, (0.3, 0.0))
    exact = paired_comparison(a, b)
    drawn = paired_comparison(np.append(a, 50.0), np.append(b, 50.0), tests=1000)     # 79,999 draws: sd of p ≈ 0.0015
    assert not drawn.exact and drawn.p_value == pytest.approx(exact.p_value, abs=0.006)
    # one card more with difference 0 shifts the mean by a factor 20/21 and keeps the interval's ends near
    assert drawn.ci_low == pytest.approx(exact.ci_low * 20 / 21, abs=1.0)
    assert drawn.ci_high == pytest.approx(exact.ci_high * 20 / 21, abs=1.0)


def test_no_spread_and_underpowered_comparisons() -> None:
    """The issue's case: 9 cards, a = 100 vs b = 50 on every card, 21 tests: p 0.0039 but Holm can never reach 0.05."""
    c = paired_comparison(np.full(9, 100.0), np.full(9, 50.0), tests=21)
    assert c.no_spread and c.p_value == pytest.approx(2 / 512)
    assert c.ci_low > 0 and c.ci_high > c.ci_low                  # widened: one card at 25 or 75 points
    assert underpowered(9, 21) and not underpowered(10, 21) and underpowered(5, 1)
    (row,) = compare({"d": {"a": {str(i): 100.0 for i in range(9)}, "b": {str(i): 50.0 for i in range(9)}}}, ["a", "b"], ["d"])
    assert set(row.flags) == {"small_n", "no_spread"}             # one test: 2/512 < 0.05, resolvable
    same = paired_comparison(np.full(12, 50.0), np.full(12, 50.0))
    assert same.no_spread and same.p_value == 1.0 and same.ci_low < 0 < same.ci_high
    nine = {d: {"a": {str(i): 100.0 for i in range(9)}, "b": {str(i): 50.0 for i in range(9)},
                "c": {str(i): 75.0 for i in range(9)}} for d in DIMENSIONS}
    found = compare(nine, ["a", "b", "c"], DIMENSIONS)
    assert len(found) == 21 and all("underpowered" in c.flags for c in found) and not any(c.significant for c in found)


def test_holm_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    assert holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)
    rng = np.random.default_rng(6)
    for m in (1, 2, 7, 40):
        p = rng.random(m) ** 3
        assert holm(p.tolist()) == pytest.approx(multipletests(p, method="holm")[1].tolist())


# -- ranks, judge noise, power --------------------------------------------------------------------------------------


def test_rank_intervals_separate_clear_winners_and_overlap_ties() -> None:
    rng = np.random.default_rng(2)
    table = np.column_stack([rng.normal(m, 10, 50) for m in (20.0, 50.0, 51.0)])
    found = rank_intervals(table)
    assert found[0] == (3, 3, 3)
    assert {found[1][0], found[2][0]} == {1, 2} and found[1][1:] == (1, 2) and found[2][1:] == (1, 2)
    sorted_ranks = ranks({"d": {s: {str(i): v for i, v in enumerate(table[:, k])} for k, s in enumerate("abc")}}, list("abc"), ["d"])
    assert [r.supporter for r in sorted_ranks["d"]][-1] == "a"


def test_rank_intervals_are_symmetric_on_ties() -> None:
    """A leads B on a few cards and ties on the rest: whatever one's interval says about the other, the other's mirrors it."""
    a = np.array([75.0] * 3 + [50.0] * 12)
    b = np.array([50.0] * 15)
    (rank_a, low_a, high_a), (rank_b, low_b, high_b) = rank_intervals(np.column_stack([a, b]))
    assert (rank_a, rank_b) == (1, 2)
    assert (low_a, high_a) == (1, 2) and (low_b, high_b) == (1, 2)   # ties in some resamples: both could be first or second
    apart = rank_intervals(np.column_stack([a + 40, b]))
    assert apart == [(1, 1, 1), (2, 2, 2)]


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


def test_judge_share_of_the_mean_is_smaller_than_of_a_label() -> None:
    """Cards (sd 15) × 2 episodes (sd 10) × 3 samples (judge sd 20): judge var of a card mean 400/6 out of 225 + 50 + 400/6."""
    rng = np.random.default_rng(8)
    cards = 4000
    card = np.repeat(rng.normal(50, 15, cards), 2)
    truth = card + rng.normal(0, 10, 2 * cards)
    samples = truth[:, None] + rng.normal(0, 20, (2 * cards, 3))
    noise = judge_noise(samples.tolist(), np.repeat(np.arange(cards), 2).tolist())
    assert noise.judge_share == pytest.approx(400 / (400 + 325), abs=0.03)
    assert noise.mean_share == pytest.approx((400 / 6) / (225 + 50 + 400 / 6), abs=0.03)


def test_power_numbers() -> None:
    # a standard table value: effect size 0.5, paired t, 80% power, alpha 0.05 two-sided -> 34 pairs
    assert cards_needed(10.0, 20.0) == 34
    assert cards_needed(0.0, 20.0) == math.inf and math.isnan(cards_needed(5.0, math.nan))
    mde = min_detectable_difference(34, 20.0)
    assert 9.0 < mde <= 10.0
    assert min_detectable_difference(60, 24.5) < min_detectable_difference(30, 24.5)
    # one of 21 Holm-adjusted tests: α / 21 for the smallest p, and never fewer cards than a sign-flip p of 2/2ⁿ allows
    assert statistics.signflip_cards(21) == 10 and 2 / 2 ** 10 * 21 <= 0.05 < 2 / 2 ** 9 * 21
    assert cards_needed(10.0, 20.0, tests=21) > 34 and cards_needed(10.0, 0.0, tests=21) == 10


def test_power_rows_from_card_tables() -> None:
    rng = np.random.default_rng(1)
    cards = {"d": _table(_study(rng, 60, {"a": 0.6, "b": 0.4}))}
    (row,) = power(cards, ["a", "b"], ["d"], 10.0)
    assert (row.a, row.b, row.n_cards) == ("a", "b", 60)
    assert row.sd_diff == pytest.approx(24.5, rel=0.2)
    assert 30 <= row.cards_needed <= 80 and 5 < row.min_detectable < 15
    assert row.tests == 1 and row.cards_needed_family == row.cards_needed
    (alone,) = power({"d": {"a": cards["d"]["a"]}}, ["a"], ["d"], 10.0)
    assert alone.b == "" and alone.sd_diff > row.sd_diff      # unpaired is pessimistic: the card difficulty stays in


def coverage_table(studies: int = 5000) -> str:
    """The coverage table of docs/statistics.md (markdown): ``python -m tests.runs.analysis.test_statistics``."""
    lines = ["| scenario | truth | 5 cards | 10 cards | 20 cards | 40 cards |", "|---|---:|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        cells = [f"{_coverage(scenario, cards, studies, seed=cards):.3f}" for cards in (5, 10, 20, 40)]
        lines.append(f"| {scenario.name} | {scenario.truth():.1f} | " + " | ".join(cells) + " |")
    lines += ["", "| paired, true difference | cards | studies | coverage | 0 ∉ CI while p ≥ 0.05 | p < 0.05 |", "|---|---:|---:|---:|---:|---:|"]
    for quality in ((0.4, 0.0), (0.3, 0.3)):
        truth = _paired_truth(quality)
        for cards, count in ((5, studies), (10, studies), (20, studies // 5)):
            rng = np.random.default_rng(cards)
            covered = disagree = rejected = 0
            for _ in range(count):
                c = paired_comparison(*_paired_study(rng, cards, quality))
                covered += c.ci_low <= truth <= c.ci_high
                disagree += (c.ci_low > 0 or c.ci_high < 0) != (c.p_value < 0.05)
                rejected += c.p_value < 0.05
            lines.append(f"| {truth:.1f} | {cards} | {count} | {covered / count:.3f} | {disagree} | {rejected / count:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(coverage_table())
