"""Rank agreement between seekers on synthetic card tables of known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from esc_eval.runs.analysis.robustness import _tau_b, rank_agreement

SUPPORTERS = ["s1", "s2", "s3", "s4", "s5"]


def table(means_a: list[float], means_b: list[float], *, cards: int = 40, noise: float = 5.0, seed: int = 0):  # type: ignore[no-untyped-def]
    """Each supporter's card values drawn around its true mean, per seeker."""
    rng = np.random.default_rng(seed)

    def seeker(means: list[float]) -> dict[str, dict[str, float]]:
        return {s: {f"c{c}": float(m + rng.normal(0, noise)) for c in range(cards)} for s, m in zip(SUPPORTERS, means)}

    return {"overall": {"A": seeker(means_a), "B": seeker(means_b)}}


def test_same_order_gives_tau_one_and_reversed_minus_one() -> None:
    truth = [90.0, 70.0, 50.0, 30.0, 10.0]
    (same,) = rank_agreement(table(truth, [m + 3 for m in truth]), ["A", "B"], SUPPORTERS, ["overall"])
    assert (same.a, same.b, same.n_supporters, same.n_cards) == ("A", "B", 5, 40)
    assert same.tau == pytest.approx(1.0) and same.ci_low == same.ci_high == 1.0 and same.p_value < 0.05
    (reversed_,) = rank_agreement(table(truth, truth[::-1]), ["A", "B"], SUPPORTERS, ["overall"])
    assert reversed_.tau == pytest.approx(-1.0) and reversed_.ci_high == -1.0


def test_unrelated_rankings_have_an_interval_around_zero() -> None:
    """Every supporter alike under both seekers: the order is noise, so tau's interval spans 0."""
    flat = [50.0] * 5
    (found,) = rank_agreement(table(flat, flat, cards=20, noise=20.0, seed=3), ["A", "B"], SUPPORTERS, ["overall"])
    assert -1 <= found.ci_low < 0 < found.ci_high <= 1 and found.p_value > 0.05


def test_only_cards_both_seekers_played_with_every_supporter_count() -> None:
    data = table([4.0, 3.0, 2.0, 1.0, 0.0], [4.0, 3.0, 2.0, 1.0, 0.0], cards=5, noise=0.0)
    del data["overall"]["B"]["s3"]["c0"]
    (found,) = rank_agreement(data, ["A", "B"], SUPPORTERS, ["overall"])
    assert found.n_cards == 4 and found.tau == pytest.approx(1.0)
    (lonely,) = rank_agreement(data, ["A", "B"], SUPPORTERS[:1], ["overall"])
    assert math.isnan(lonely.tau) and lonely.n_supporters == 1


def test_vectorised_tau_b_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 3, size=(6, 50)).astype(float), rng.integers(0, 3, size=(6, 50)).astype(float)
    ours = _tau_b(x, y)
    for i in range(50):
        expected = kendalltau(x[:, i], y[:, i]).statistic
        assert (math.isnan(ours[i]) and math.isnan(expected)) or math.isclose(ours[i], expected, abs_tol=1e-12)


def test_the_interval_covers_the_true_tau_and_the_p_value_keeps_its_false_positive_rate() -> None:
    """Repeated synthetic runs: the 95% interval holds the population tau (0.6: two of ten pairs swapped)
    in at least ~95% of runs, and with every supporter alike p < 0.05 in at most ~5% of runs."""
    truth_a, truth_b = [50.0, 55.0, 60.0, 65.0, 70.0], [55.0, 50.0, 60.0, 70.0, 65.0]
    assert kendalltau(truth_a, truth_b).statistic == pytest.approx(0.6)
    runs = 200
    covered = sum(
        found.ci_low <= 0.6 <= found.ci_high
        for seed in range(runs)
        for found in rank_agreement(table(truth_a, truth_b, cards=20, noise=20.0, seed=seed), ["A", "B"], SUPPORTERS, ["overall"],
                                    seed=seed, resamples=500)
    )
    assert covered / runs >= 0.9  # 0.96-1.00 in simulations of 20-100 cards (tau is coarse: conservative); 0.9 leaves room for sampling error
    flat = [50.0] * 5
    alarms = sum(
        found.p_value < 0.05
        for seed in range(runs)
        for found in rank_agreement(table(flat, flat, cards=20, noise=20.0, seed=1000 + seed), ["A", "B"], SUPPORTERS, ["overall"],
                                    resamples=10)
    )
    assert alarms / runs <= 0.09  # nominal 0.05 (0.02 measured here); 0.09 is about 2.5 binomial SEs above the nominal
