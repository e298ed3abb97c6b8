"""Humans on the safety items: Cohen's kappa with its card-clustered interval and the PPI-corrected missed rate,
both on synthetic data of known truth at the sizes people annotate (20-100 episodes), and the report: safety
answers show under ``safety`` and never move the quality figures (ACC, alpha, the corrected means).

``python -m tests.runs.analysis.test_safety_agreement`` prints the coverage tables docs/safety.md quotes.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa

from esc_eval.agents.judge.safety import CONTROL, RISK
from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.analysis.safety import Verdict
from esc_eval.runs.analysis.safety_agreement import _kappa, cluster_kappa, corrected_missed
from esc_eval.runs.store import Store
from esc_eval.runs.store import safety as safety_store
from tests.runs.viewer.helpers import PERSONAS, SUPPORTERS, key, make_store

KAPPA_SETTINGS = [(cards, per_card, prevalence, error) for cards, per_card in ((20, 1), (50, 1), (100, 1), (20, 3))
                  for prevalence, error in ((0.3, 0.1), (0.5, 0.2), (0.15, 0.1))]
"""(cards, episodes per card, share of yes among the humans, share of the judge's answers flipped)."""
PPI_SETTINGS = [(cards, per_card, labelled) for cards, per_card in ((20, 1), (20, 3), (50, 2)) for labelled in (0.5, 1.0)]


def true_kappa(prevalence: float, error: float) -> float:
    """Kappa of a judge that flips a share ``error`` of the humans' answers, at the humans' ``prevalence`` of yes."""
    judge = prevalence * (1 - error) + (1 - prevalence) * error
    chance = prevalence * judge + (1 - prevalence) * (1 - judge)
    return (1 - error - chance) / (1 - chance)


def kappa_coverage(cards: int, per_card: int, prevalence: float, error: float, *, runs: int = 200,
                   seed: int = 3) -> tuple[float, float]:
    """(share of defined intervals holding the true kappa, share of runs with a defined interval); card
    prevalences ~ Beta with intra-card correlation 0.3 when a card holds several episodes."""
    rng = np.random.default_rng(seed)
    truth, held, defined = true_kappa(prevalence, error), 0, 0
    rho = 0.3 if per_card > 1 else 0.0
    for run in range(runs):
        rates = rng.beta(prevalence * (1 - rho) / rho, (1 - prevalence) * (1 - rho) / rho, cards) if rho else np.full(cards, prevalence)
        human = rng.random((cards, per_card)) < rates[:, None]
        judge = np.where(rng.random((cards, per_card)) < error, ~human, human)
        found = cluster_kappa(human.ravel(), judge.ravel(), np.repeat(np.arange(cards), per_card), seed=run)
        if found["ci"] is not None:
            defined += 1
            held += found["ci"][0] <= truth <= found["ci"][1]
    return held / max(defined, 1), defined / runs


def test_the_vectorised_kappa_is_statsmodels_kappa() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = rng.integers(0, 20, 4).astype(float) + np.array([1, 0, 0, 1])
        assert _kappa(counts) == pytest.approx(cohens_kappa(counts.reshape(2, 2)).kappa)
    assert _kappa(np.array([5.0, 0, 0, 0])) == 1.0  # both raters always "no": a resample that agrees throughout


@pytest.mark.parametrize(("cards", "per_card", "prevalence", "error"), KAPPA_SETTINGS)
def test_the_kappa_interval_covers_the_true_kappa(cards: int, per_card: int, prevalence: float, error: float) -> None:
    covered, defined = kappa_coverage(cards, per_card, prevalence, error)
    assert covered >= 0.92, covered
    assert defined >= (0.8 if cards * per_card <= 20 else 0.97), defined  # undefined: perfect agreement or a constant rater


def test_kappa_on_hand_made_answers() -> None:
    human = [True, True, False, False, True, False, False, False]
    judge = [True, False, False, False, True, False, True, False]
    found = cluster_kappa(human, judge, [0, 0, 1, 1, 2, 2, 3, 3])
    assert found["kappa"] == pytest.approx(cohens_kappa(np.array([[4, 1], [1, 2]])).kappa)
    assert found["table"] == [[4, 1], [1, 2]] and found["agree"] == 0.75 and (found["n"], found["n_cards"]) == (8, 4)
    assert found["ci"] is not None and found["ci"][0] < found["kappa"] < found["ci"][1]
    constant = cluster_kappa([False] * 6, [False, True] * 3, range(6))
    assert math.isnan(constant["kappa"]) and constant["ci"] is None and constant["note"] == "no_variation"
    perfect = cluster_kappa([True, False] * 5, [True, False] * 5, range(10))
    assert perfect["kappa"] == 1.0 and perfect["ci"] is None and perfect["note"] == "perfect_agreement"


def ppi_run(rng: np.random.Generator, cards: int, per_card: int, labelled: float, p: float = 0.25) -> tuple[float, Any]:
    """One synthetic supporter: card missed rates ~ Beta(mean p, correlation 0.3); the judge overlooks 30 % of the misses
    and invents 5 %, so the judge-only rate is too low; humans answer ``recognised`` truthfully on a ``labelled`` share."""
    rho = 0.3
    rates = rng.beta(p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho, cards)
    found, answers = [], {}
    for card in range(cards):
        for e in range(per_card):
            missed = rng.random() < rates[card]
            judge_missed = rng.random() < (0.7 if missed else 0.05)
            key = f"c{card}e{e}"
            found.append(Verdict(key, {"supporter": "s"}, card, RISK, {"recognised": not judge_missed}, "ok"))
            if rng.random() < labelled:
                answers[key] = {"ann": {"recognised": not missed}}
    judge_only = float(np.mean([not v.items["recognised"] for v in found if v.items]))
    return judge_only, corrected_missed(found, answers)


def ppi_coverage(cards: int, per_card: int, labelled: float, *, runs: int = 300, seed: int = 11, p: float = 0.25) -> tuple[float, float, float]:
    """(coverage of the corrected interval, mean corrected rate, mean judge-only rate) for a true missed rate ``p``."""
    rng = np.random.default_rng(seed)
    held, means, judge = 0, [], []
    for _ in range(runs):
        judge_only, est = ppi_run(rng, cards, per_card, labelled, p)
        judge.append(judge_only)
        means.append(est.mean)
        held += est.ci_low <= p <= est.ci_high
    return held / runs, float(np.mean(means)), float(np.mean(judge))


@pytest.mark.parametrize(("cards", "per_card", "labelled"), PPI_SETTINGS)
def test_the_corrected_missed_rate_covers_the_truth_the_judge_misses(cards: int, per_card: int, labelled: float) -> None:
    covered, corrected, judge_only = ppi_coverage(cards, per_card, labelled)
    assert covered >= 0.92, covered
    assert judge_only < 0.22                                                           # the judge alone is biased low
    if cards * per_card * labelled >= 20:  # with ~10 annotated cards PPI++'s estimated weight leaves part of the bias (docs/safety.md)
        assert abs(corrected - 0.25) < 0.6 * abs(judge_only - 0.25)
    if labelled == 1.0:
        assert abs(corrected - 0.25) < 0.015                                          # every episode answered: the humans' rate


def test_no_human_answer_to_recognised_gives_no_correction() -> None:
    found = [Verdict("a", {"supporter": "s"}, 0, RISK, {"recognised": True}, "ok"),
             Verdict("b", {"supporter": "s"}, 1, CONTROL, {"false_alarm": False, "harmful": False}, "ok")]
    assert corrected_missed(found, {"a": {"ann": {"harmful": False}}, "b": {"ann": {"false_alarm": True}}}) is None


# -- the report -----------------------------------------------------------------------------

CARDS = 12


def safety_run(path: Path) -> Path:
    """The viewer's test store with safety judgements: ``guarded`` plays the risk; terse-bot misses it on most cards,
    and the judge says kind-bot recognised it everywhere."""
    make_store(path, cards=CARDS)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('personas', ?)", (json.dumps({"guarded": {"risk": {"kind": "self_harm"}}}),))
        for supporter in SUPPORTERS:
            for persona in PERSONAS:
                for card in range(CARDS):
                    risk = persona == "guarded"
                    caught = supporter == SUPPORTERS[0] or card % 3 == 0
                    items = ({"recognised": caught, "asked_directly": caught, "resources": caught, "encouraged_help": caught,
                              "harmful": False} if risk else {"false_alarm": card % 4 == 0, "harmful": False})
                    conn.execute("INSERT INTO safety (episode_key, sample, kind, status, items, raw, model, latency, risk,"
                                 " disclosure_round, disclosure_turn, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (key(supporter, persona, card), 0, RISK if risk else CONTROL, "ok", json.dumps(items), json.dumps(items),
                                  "safety", 0.1, "high" if risk else None, 2 if risk else None, 3 if risk else None, 0.0))
    return path


def answer_safety(path: Path) -> None:
    """Two annotators answer every risk and control episode of the first eight cards; they see kind-bot miss card 5."""
    rows = []
    for supporter in SUPPORTERS:
        for persona in PERSONAS:
            for card in range(8):
                k = key(supporter, persona, card)
                for who in ("ann", "bea"):
                    if persona == "guarded":
                        caught = (supporter == SUPPORTERS[0] and card != 5) or (supporter == SUPPORTERS[1] and card % 3 == 0)
                        rows += [(k, who, "recognised", caught, 1.0), (k, who, "harmful", False, 1.0)]
                    else:
                        rows += [(k, who, "false_alarm", card % 4 == 0 and who == "ann", 1.0), (k, who, "harmful", False, 1.0)]
    with Store.open(path) as store:
        assert safety_store.add_labels(store, rows) == len(rows)


def report(path: Path, fmt: str = "json", **kwargs: Any) -> Any:
    text = report_command(path, fmt, None, [], kwargs.pop("agreement", None), None, None, **kwargs)
    return json.loads(text) if fmt == "json" else text


def test_agreement_on_safety_items_only(tmp_path: Path) -> None:
    path = safety_run(tmp_path / "run.sqlite")
    answer_safety(path)
    data = report(path, agreement=True)
    assert set(data) == {"safety"}                                  # no dimension labels: nothing else to report
    items = data["safety"]["items"]
    assert set(items) == {"recognised", "harmful", "false_alarm"}
    assert data["safety"]["episodes"] == 2 * 3 * 8 and data["safety"]["cards"] == 8 and data["safety"]["annotators"] == ["ann", "bea"]
    recognised = items["recognised"]
    assert recognised["n"] == 2 * 2 * 8 and recognised["table"] == [[2 * 5, 2], [0, 2 * 10]]  # kind-bot's card 5
    assert recognised["kappa"] == pytest.approx(cohens_kappa(np.array(recognised["table"])).kappa, abs=1e-4)
    assert recognised["ci"][0] < recognised["kappa"] < recognised["ci"][1]
    assert items["harmful"]["kappa"] is None and items["harmful"]["note"] == "no_variation" and items["harmful"]["agree"] == 1.0
    table = report(path, "table", agreement=True)
    assert "Safety items: judge vs humans" in table and "recognised" in table


def test_safety_answers_never_move_the_quality_figures(tmp_path: Path) -> None:
    path = safety_run(tmp_path / "run.sqlite")
    with Store.open(path) as store:
        store.add_annotations([(key(s, p, c), who, dim, (c + len(who)) % 5, 1.0) for s in SUPPORTERS for p in PERSONAS
                               for c in range(6) for who in ("ann", "bea") for dim in ("fluency", "empathic")])
    before = {"agreement": report(path, agreement=True), "corrected": report(path, corrected=True)}
    answer_safety(path)
    after = {"agreement": report(path, agreement=True), "corrected": report(path, corrected=True)}
    safety = after["agreement"].pop("safety")
    assert after["agreement"] == before["agreement"] and safety["items"]["recognised"]["n"] == 32  # ACC, alpha, confusion as they were
    rows = {r["supporter"]: r for r in after["corrected"].pop("safety")}
    before["corrected"].pop("safety")
    assert after["corrected"] == before["corrected"]                                      # the corrected quality means too
    kind, terse = rows[SUPPORTERS[0]], rows[SUPPORTERS[1]]
    assert kind["missed_rate"] == 0 and terse["missed_rate"] == pytest.approx(8 / 12, abs=1e-4)       # the judge alone
    assert kind["missed_corrected"]["n_labelled"] == 8 and kind["missed_corrected"]["n_unlabelled"] == 4
    assert kind["missed_corrected"]["rate"] > 0 and kind["missed_corrected"]["ci"][1] > kind["missed_corrected"]["rate"]
    assert terse["missed_corrected"]["rate"] == pytest.approx(8 / 12, abs=0.01)               # humans agree with the judge here
    text = report(path, "table", corrected=True)
    assert "missed (human-corrected)" in text


if __name__ == "__main__":
    print("| episodes | cards | humans' yes | judge's flips | true kappa | coverage of the 95% interval | defined |")
    print("|---|---|---|---|---|---|---|")
    for cards, per_card, prevalence, error in KAPPA_SETTINGS:
        covered, defined = kappa_coverage(cards, per_card, prevalence, error, runs=1000)
        print(f"| {cards * per_card} | {cards} | {prevalence} | {error} | {true_kappa(prevalence, error):.2f} | {covered:.3f} | {defined:.3f} |")
    print("\n| cards | risk episodes per card | share annotated | coverage | mean corrected | mean judge-only (truth 0.25) |")
    print("|---|---|---|---|---|---|")
    for cards, per_card, labelled in PPI_SETTINGS:
        covered, corrected, judge_only = ppi_coverage(cards, per_card, labelled, runs=1000)
        print(f"| {cards} | {per_card} | {labelled} | {covered:.3f} | {corrected:.3f} | {judge_only:.3f} |")
