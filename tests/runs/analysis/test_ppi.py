"""The prediction-powered mean on synthetic studies of known truth: clustered coverage, labelling designs, edge cases.

A study draws, per card, a difficulty u ~ N(0, 0.8) label shared by its episodes and a judge bias
v ~ N(0, 0.3) (the judge misreads some cards); per episode, the dialogue's own quality
e ~ N(0, 0.5) and the judge's noise ε ~ N(0, 0.5). Human label = clip(round(2 + u + e), 0, 4),
judge label = clip(round(2 + u + e + 0.6 + v + ε), 0, 4) (a lenient judge), both × 25. The
latent value is symmetric around 2 and so is the clipping, so the human truth is exactly 50
whatever the noise. Every simulation is seeded. ``python -m tests.runs.analysis.test_ppi``
prints the design table quoted in docs/statistics.md and docs/annotation.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from esc_eval.runs.analysis import statistics
from esc_eval.runs.analysis.ppi import PPIEstimate, ppi_mean

TRUTH = 50.0
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _study(rng: np.random.Generator, cards: int, per: int, centre: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Human values, judge values and cards of ``cards`` × ``per`` episodes (card-major order)."""
    latent = centre + rng.normal(0, 0.8, (cards, 1)) + rng.normal(0, 0.5, (cards, per))
    judge = latent + 0.6 + rng.normal(0, 0.3, (cards, 1)) + rng.normal(0, 0.5, (cards, per))
    return (np.clip(np.round(latent), 0, 4).ravel() * 25, np.clip(np.round(judge), 0, 4).ravel() * 25,
            np.repeat(np.arange(cards), per))


def _labelled(rng: np.random.Generator, cards: int, per: int, design: str, budget: int) -> np.ndarray:
    """Which episodes humans label: ``budget`` random episodes, ``budget`` whole cards, or one episode on each of ``budget`` cards."""
    if design == "episodes":
        chosen = rng.choice(cards * per, budget, replace=False)
    elif design == "cards":
        chosen = (rng.choice(cards, budget, replace=False)[:, None] * per + np.arange(per)).ravel()
    else:  # "spread"
        chosen = rng.choice(cards, budget, replace=False) * per + rng.integers(0, per, budget)
    mask = np.zeros(cards * per, dtype=bool)
    mask[chosen] = True
    return mask


def _simulate(cards: int, per: int, design: str, budget: int, studies: int, seed: int) -> tuple[float, float, float]:
    """(coverage treating episodes as independent, coverage clustered by card, mean clustered interval width)."""
    rng = np.random.default_rng(seed)
    naive = clustered = 0
    widths = []
    for _ in range(studies):
        human, judge, card = _study(rng, cards, per)
        m = _labelled(rng, cards, per, design, budget)
        flat = ppi_mean(judge[~m], judge[m], human[m])
        est = ppi_mean(judge[~m], judge[m], human[m], cards_unlabelled=card[~m], cards_labelled=card[m])
        naive += flat.ci_low <= TRUTH <= flat.ci_high
        clustered += est.ci_low <= TRUTH <= est.ci_high
        widths.append(est.ci_high - est.ci_low)
    return naive / studies, clustered / studies, float(np.mean(widths))


AUDIT = [(15, 2, "episodes", 12), (15, 2, "cards", 6), (40, 4, "cards", 10), (40, 4, "episodes", 40)]
"""The issue's four clustered studies: 15 cards × 2 episodes with 12 random episodes or 6 whole cards labelled;
40 × 4 with 10 whole cards or 40 random episodes labelled."""
DESIGNS = [(15, 2, "cards", 6), (15, 2, "episodes", 12), (15, 2, "spread", 12),
           (40, 4, "cards", 10), (40, 4, "episodes", 40), (40, 4, "spread", 40), (60, 1, "episodes", 20)]
LABELLED = {"cards": "{b} whole cards ({e} episodes)", "episodes": "{e} random episodes", "spread": "one episode on each of {b} cards"}


def design_table(studies: int = 4000, seed: int = 30) -> list[str]:
    """Markdown rows: per study size and labelling design, coverage with and without clustering and the width."""
    rows = []
    for i, (cards, per, design, budget) in enumerate(DESIGNS):
        naive, clustered, width = _simulate(cards, per, design, budget, studies, seed + i)
        labelled = LABELLED[design].format(b=budget, e=budget * per if design == "cards" else budget)
        rows.append(f"| {cards} × {per} | {labelled} | {naive:.3f} | {clustered:.3f} | {width:.1f} |")
    return rows


@pytest.mark.parametrize(("cards", "per", "design", "budget"), AUDIT)
def test_clustered_interval_covers_where_the_unclustered_one_does_not(cards: int, per: int, design: str, budget: int) -> None:
    naive, clustered, _ = _simulate(cards, per, design, budget, studies=1000, seed=cards * 100 + budget)
    assert clustered >= 0.92
    assert naive < clustered - 0.03           # episodes treated as independent: too narrow


@pytest.mark.slow
def test_design_table_in_the_docs() -> None:
    """4000 studies per row: the clustered interval covers ≥ 0.92 in every design, and spreading the labels over
    as many cards as possible gives the narrowest interval, whole cards the widest; the docs quote these rows."""
    rows = design_table()
    for row in rows:
        assert float(row.strip("|").split("|")[3]) >= 0.92, row
    widths = [float(row.strip("|").split("|")[4]) for row in rows]
    assert widths[2] < widths[1] < widths[0] and widths[5] < widths[4] < widths[3]
    for page in ("statistics.md", "annotation.md"):
        text = (DOCS / page).read_text(encoding="utf-8")
        missing = [row for row in rows if row not in text]
        assert not missing, f"docs/{page} does not quote {missing} (python -m tests.runs.analysis.test_ppi)"


def test_one_episode_per_card_is_the_unclustered_ppi() -> None:
    """No cards given, or every card holding one episode: PPI++'s point estimate, λ and variance
    var(h − λj)/n + λ²·var(j_U)/N, with a t(n − 1) interval."""
    rng = np.random.default_rng(5)
    human = rng.normal(50, 12, 80)
    judge = human + 8 + rng.normal(0, 6, 80)
    y, f_l, f_u = human[:20], judge[:20], judge[20:]
    lam = np.cov(y, f_l)[0, 1] / ((1 + 20 / 60) * np.var(judge, ddof=1))
    mean = y.mean() + lam * (f_u.mean() - f_l.mean())
    half = stats.t.ppf(0.975, 19) * math.sqrt(np.var(y - lam * f_l, ddof=1) / 20 + lam ** 2 * np.var(f_u, ddof=1) / 60)
    for est in (ppi_mean(f_u, f_l, y), ppi_mean(f_u, f_l, y, cards_unlabelled=np.arange(20, 80), cards_labelled=np.arange(20))):
        assert est.mean == pytest.approx(mean) and est.weight == pytest.approx(lam)
        assert est.ci_low == pytest.approx(mean - half) and est.ci_high == pytest.approx(mean + half)
        assert (est.n_labelled, est.n_unlabelled, est.n_cards) == (20, 60, 20)


def test_clustered_variance_is_statsmodels_cr1_of_each_part() -> None:
    """Whole cards labelled (no card in both parts): the variance is the CR1 variance of the labelled mean of
    h − λj plus λ² times that of the unlabelled judge mean, each as statsmodels' OLS ``cov_type='cluster'``."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(8)
    human, judge, card = _study(rng, 30, 3)
    m = np.isin(card, rng.choice(30, 12, replace=False))
    est = ppi_mean(judge[~m], judge[m], human[m], cards_unlabelled=card[~m], cards_labelled=card[m])

    def cr1(values: np.ndarray, groups: np.ndarray) -> float:
        fit = sm.OLS(values, np.ones(len(values))).fit(cov_type="cluster", cov_kwds={"groups": groups})
        return float(fit.bse[0]) ** 2

    variance = cr1(human[m] - est.weight * judge[m], card[m]) + est.weight ** 2 * cr1(judge[~m], card[~m])
    half = stats.t.ppf(0.975, 11) * math.sqrt(variance)
    assert 0 < est.weight < 1 and est.n_cards == 12
    assert est.ci_low == pytest.approx(est.mean - half) and est.ci_high == pytest.approx(est.mean + half)


def test_balanced_cards_keep_the_point_estimate_and_unbalanced_ones_count_each_card_once() -> None:
    """Equal episodes per card: the same point estimate as without cards. Unequal: each card weighs 1, so on
    cards of 1 episode at difficulty −1 and cards of 4 episodes at +1 the target is the card-weighted mean
    (0.5·E[label | −1] + 0.5·E[label | +1]) × 25, computed here from the normal distribution: the estimates
    average to within 2 points of it (1.4 over 3000 studies), more than 10 points from the episode-weighted mean."""
    rng = np.random.default_rng(12)
    human, judge, card = _study(rng, 20, 3)
    m = _labelled(rng, 20, 3, "episodes", 15)
    flat = ppi_mean(judge[~m], judge[m], human[m])
    clustered = ppi_mean(judge[~m], judge[m], human[m], cards_unlabelled=card[~m], cards_labelled=card[m])
    assert clustered.mean == pytest.approx(flat.mean) and clustered.weight == pytest.approx(flat.weight)

    def expected_label(centre: float) -> float:
        edges = stats.norm.cdf(np.array([0.5, 1.5, 2.5, 3.5]), loc=centre, scale=math.hypot(0.8, 0.5))
        return float(np.sum(1 - edges))          # E[clipped rounded label] = Σ_k P(label ≥ k)

    by_card, by_episode = 12.5 * (expected_label(1) + expected_label(3)), 25 * (expected_label(1) + 4 * expected_label(3)) / 5
    covered, means = 0, []
    for _ in range(400):
        small_h, small_j, _ = _study(rng, 10, 1, centre=1.0)
        big_h, big_j, _ = _study(rng, 10, 4, centre=3.0)
        human, judge = np.concatenate([small_h, big_h]), np.concatenate([small_j, big_j])
        card = np.concatenate([np.arange(10), 10 + np.repeat(np.arange(10), 4)])
        m = np.zeros(50, dtype=bool)
        m[rng.choice(50, 25, replace=False)] = True
        est = ppi_mean(judge[~m], judge[m], human[m], cards_unlabelled=card[~m], cards_labelled=card[m])
        covered += est.ci_low <= by_card <= est.ci_high
        means.append(est.mean)
    assert by_episode - by_card > 10
    assert abs(np.mean(means) - by_card) < 2 and covered / 400 >= 0.92   # λ fitted on the same labels: O(1/n) bias


def test_ppi_corrects_a_biased_judge_with_valid_intervals() -> None:
    """Independent episodes (one per card): human truth mean 50; the judge reads 12 points high with noise;
    60 of 600 episodes have human labels."""
    rng = np.random.default_rng(9)
    covered = judge_covered = 0
    ratios = []
    for _ in range(500):
        human = np.clip(rng.normal(50, 20, 600), 0, 100)
        judge = np.clip(human + 12 + rng.normal(0, 8, 600), 0, 100)
        est = ppi_mean(judge[60:], judge[:60], human[:60])
        covered += est.ci_low <= TRUTH <= est.ci_high       # clipping at 0 and 100 is symmetric around 50
        judge_covered += abs(judge.mean() - TRUTH) <= 1.96 * judge.std(ddof=1) / math.sqrt(600)
        classic = 1.96 * np.std(human[:60], ddof=1) / math.sqrt(60)
        ratios.append((est.ci_high - est.ci_low) / (2 * classic))
        assert 0 < est.weight <= 1 and est.n_labelled == 60 and est.n_unlabelled == 540
    assert 0.92 <= covered / 500 <= 0.98
    assert judge_covered == 0                       # the uncorrected judge is confidently wrong
    assert np.median(ratios) < 0.6                  # a good judge makes the interval much narrower than humans alone


def test_intervals_stay_in_0_to_100_at_the_edges_of_the_scale() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        cards, p = int(rng.integers(2, 15)), rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])
        judge = rng.binomial(4, p, size=3 * cards) * 25.0
        human = np.clip(judge + 25 * rng.integers(-1, 2, size=3 * cards), 0, 100)
        card = np.repeat(np.arange(cards), 3)
        m = np.arange(3 * cards) % 3 == 0
        est = ppi_mean(judge[~m], judge[m], human[m], cards_unlabelled=card[~m], cards_labelled=card[m])
        assert 0.0 <= est.ci_low <= est.mean <= est.ci_high <= 100.0


def test_small_and_degenerate_inputs() -> None:
    assert math.isnan(ppi_mean(np.array([1.0, 2.0]), np.array([50.0]), np.array([50.0])).mean)
    everyone = ppi_mean(np.array([]), np.array([50.0, 75.0]), np.array([25.0, 75.0]))
    assert everyone.mean == 50.0 and everyone.weight == 0.0 and everyone.n_cards == 2
    one_card = ppi_mean(np.array([75.0, 100.0]), np.array([50.0, 75.0]), np.array([25.0, 75.0]),
                        cards_unlabelled=np.array(["b", "c"]), cards_labelled=np.array(["a", "a"]))
    assert one_card.mean == pytest.approx(50.0 + one_card.weight * 25) and math.isnan(one_card.ci_low)
    judge_on_one_card = ppi_mean(np.array([50.0, 75.0]), np.array([50.0, 75.0]), np.array([25.0, 75.0]),
                                 cards_unlabelled=np.array(["c", "c"]), cards_labelled=np.array(["a", "b"]))
    assert judge_on_one_card.weight == 0.0 and judge_on_one_card.mean == 50.0   # the humans' mean: U has no variance
    with pytest.raises(ValueError, match="3 unlabelled judge values need 3 cards"):
        ppi_mean(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0]), np.array([1.0, 2.0]), cards_unlabelled=np.array([0, 1]))


def test_the_name_stays_importable_from_statistics() -> None:
    assert statistics.ppi_mean is ppi_mean and statistics.PPIEstimate is PPIEstimate


if __name__ == "__main__":
    print("\n".join(design_table()))
