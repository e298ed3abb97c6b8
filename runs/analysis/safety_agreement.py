"""Humans on the safety items: judge-human agreement per item, and the missed-risk rate corrected with human answers.

The human answers come from ``esc-eval annotate`` (the store's ``safety_annotations`` table,
``esc_eval.runs.store.safety.labels``), apart from the dimension labels, so they never touch ACC,
alpha or the corrected quality means.

Agreement (``safety_agreement``): per item, Cohen's kappa between the judge's verdict of an episode
(the majority of its samples, as the report uses it) and each annotator's answer, pooled over
(episode, annotator) pairs. Episodes of one card are correlated and an episode with two annotators
gives two pairs, so the interval is a cluster bootstrap by card: cards are resampled
(``scipy.stats.bootstrap``, BCa, 1999 resamples) and kappa is computed on the pooled 2x2 table of the
drawn cards. A resample whose two raters are both constant and equal agrees perfectly and counts as
kappa 1. When every card gives the same kappa (perfect observed agreement, or a rater that never
varies) the bootstrap cannot carry an interval: it is ``None`` and the row says why (``note``).
Coverage on synthetic data of known truth, 20-100 episodes: ``tests/runs/analysis/test_safety_agreement.py``
(``python -m tests.runs.analysis.test_safety_agreement`` prints the table docs/safety.md quotes).

Corrected missed rate (``corrected_missed``): PPI++ (``esc_eval.runs.analysis.ppi.ppi_mean``, card-
clustered) with the judge's missed indicator on every judged risk episode and the humans' (the
share of an episode's annotators who say the risk was not ``recognised``) on the annotated ones.
Its estimand weighs each card once (PPI's), the judge-only ``missed_rate`` each episode once: with
one risk episode per card and persona they agree.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from esc_eval.agents.judge.safety import RISK
from esc_eval.runs.analysis.ppi import PPIEstimate, ppi_mean
from esc_eval.runs.analysis.safety import SafetyReport, Verdict, verdicts
from esc_eval.runs.analysis.statistics import LEVEL
from esc_eval.runs.store import Store
from esc_eval.runs.store import safety as safety_store

RESAMPLES = 1999


def human_answers(store: Store) -> dict[str, dict[str, dict[str, bool]]]:
    """Episode key -> annotator -> {safety item: answer}."""
    out: dict[str, dict[str, dict[str, bool]]] = defaultdict(lambda: defaultdict(dict))
    for row in safety_store.labels(store):
        out[row.episode_key][row.annotator][row.item] = row.value
    return {key: {who: dict(items) for who, items in by.items()} for key, by in out.items()}


def _kappa(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of 2x2 tables given as (..., 4) counts (human no/yes x judge no/yes); 1 where both raters are constant and equal.

    Vectorised for the bootstrap; ``tests/runs/analysis/test_safety_agreement.py`` checks it equals statsmodels' ``cohens_kappa``.
    """
    n = counts.sum(-1)
    a, b, c, d = (counts[..., i] for i in range(4))
    observed = (a + d) / n
    chance = ((a + b) * (a + c) + (c + d) * (b + d)) / n ** 2
    constant = chance >= 1
    return np.where(constant, 1.0, (observed - chance) / np.where(constant, 1.0, 1 - chance))


def cluster_kappa(human: ArrayLike, judge: ArrayLike, cards: ArrayLike, *, level: float = LEVEL,
                  seed: int = 0) -> dict[str, Any]:
    """Cohen's kappa of paired yes/no answers with a card-clustered bootstrap interval (module docstring).

    Returns ``kappa`` (``nan`` when the pooled table has a constant rater), ``ci`` ([lo, hi] or
    ``None``), ``agree`` (share of pairs that agree), ``n`` (pairs), ``n_cards``, ``table``
    (``[[no-no, no-yes], [yes-no, yes-yes]]``, row human, column judge) and ``note``.
    """
    h, j = np.asarray(human, dtype=int), np.asarray(judge, dtype=int)
    _, card = np.unique(np.asarray(cards), return_inverse=True)
    per_card = np.zeros((card.max() + 1 if len(card) else 0, 4))
    np.add.at(per_card, (card, 2 * h + j), 1)
    total = per_card.sum(0)
    table = total.reshape(2, 2)
    out: dict[str, Any] = {"kappa": math.nan, "ci": None, "agree": float(np.trace(table) / total.sum()) if len(h) else math.nan,
                           "n": int(len(h)), "n_cards": int(len(per_card)), "table": table.astype(int).tolist(), "note": None}
    if (table.sum(0) == 0).any() or (table.sum(1) == 0).any():
        out["note"] = "no_variation" if len(h) else "no_pairs"  # a rater gave one answer throughout: kappa is undefined
        return out
    out["kappa"] = float(cohens_kappa(table).kappa)
    if len(per_card) < 2:
        out["note"] = "one_card"
        return out

    def statistic(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        return _kappa(per_card[drawn.astype(int)].sum(axis=-2))

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # every resample alike: handled below
        found = stats.bootstrap((np.arange(len(per_card)),), statistic, vectorized=True, n_resamples=RESAMPLES,
                                confidence_level=level, method="BCa", random_state=np.random.default_rng(seed))
    lo, hi = (float(x) for x in found.confidence_interval)
    if math.isnan(lo) or math.isnan(hi):
        out["note"] = "perfect_agreement" if out["agree"] == 1 else "no_spread"  # every resample gives the same kappa
    else:
        out["ci"] = [lo, hi]
    return out


def _chosen(store: Store, supporter: str | None, language: str | None) -> list[Verdict]:
    return [v for v in verdicts(store, ("supporter", "language"))
            if (supporter is None or v.group["supporter"] == supporter) and (language is None or v.group["language"] == language)]


def safety_agreement(store: Store, *, supporter: str | None = None, language: str | None = None) -> dict[str, Any] | None:
    """Per safety item, the judge's verdicts against the human answers; ``None`` without human safety answers.

    Returns ``{"unit": "episodes", "episodes", "cards", "annotators", "items": {item: cluster_kappa(...)}}``;
    an episode whose judge verdict is missing (unparsed, failed) is left out.
    """
    answers = human_answers(store)
    if not answers:
        return None
    pairs: dict[str, tuple[list[bool], list[bool], list[int]]] = {}
    episodes, cards, annotators = set(), set(), set()
    for v in _chosen(store, supporter, language):
        for who, items in answers.get(v.key, {}).items():
            for item, value in items.items():
                if v.items is None or item not in v.items:
                    continue
                human, judge, card = pairs.setdefault(item, ([], [], []))
                human.append(value)
                judge.append(v.items[item])
                card.append(v.card)
                episodes.add(v.key)
                cards.add(v.card)
                annotators.add(who)
    return {"unit": "episodes", "episodes": len(episodes), "cards": len(cards), "annotators": sorted(annotators),
            "items": {item: cluster_kappa(*pairs[item]) for item in sorted(pairs)}}


def corrected_missed(found: Sequence[Verdict], answers: Mapping[str, Mapping[str, Mapping[str, bool]]]) -> PPIEstimate | None:
    """PPI++ missed-risk rate (a share, 0..1) of ``found``'s risk verdicts corrected by the humans' ``recognised`` answers.

    ``None`` when no risk episode of ``found`` has a human answer to ``recognised``.
    """
    judged = [v for v in found if v.kind == RISK and v.items is not None]
    human: dict[str, float] = {}
    for v in judged:
        said = [items["recognised"] for items in answers.get(v.key, {}).values() if "recognised" in items]
        if said:
            human[v.key] = float(np.mean([not x for x in said]))
    if not human:
        return None
    labelled = [v for v in judged if v.key in human]
    rest = [v for v in judged if v.key not in human]

    def missed(vs: Sequence[Verdict]) -> np.ndarray:
        return np.array([0.0 if v.items and v.items["recognised"] else 100.0 for v in vs])

    est = ppi_mean(missed(rest), missed(labelled), np.array([100 * human[v.key] for v in labelled]),
                   cards_unlabelled=np.array([v.card for v in rest], dtype=int),
                   cards_labelled=np.array([v.card for v in labelled], dtype=int))
    lo, hi = _binomial_interval(est, len(judged))
    return PPIEstimate(est.mean / 100, lo, hi, est.n_labelled, est.n_unlabelled, est.weight, est.n_cards)


def _binomial_interval(est: PPIEstimate, episodes: int) -> tuple[float, float]:
    """A Clopper-Pearson interval (statsmodels) on PPI's effective sample size ``θ(1-θ)/var``, as shares.

    PPI's t interval is Wald's: on a rate near 0 with 10-20 labelled cards it undercovers and at 0
    misses it collapses to a point. As ``missed_ci`` does, the interval is taken on the binomial
    scale: the effective size is kept between the labelled cards (the humans alone, one unit per
    card: the worst case, used too when the variance is 0) and every judged episode.
    """
    if est.n_cards < 2 or math.isnan(est.ci_low):
        return math.nan, math.nan
    theta = est.mean / 100
    half = max(est.ci_high - est.mean, est.mean - est.ci_low) / 100  # the side [0, 100] did not clip
    variance = (half / float(stats.t.ppf(0.5 + LEVEL / 2, est.n_cards - 1))) ** 2
    n_eff = float(est.n_cards)
    if 0 < theta < 1 and variance > 0:
        n_eff = min(float(episodes), max(n_eff, theta * (1 - theta) / variance))
    lo, hi = proportion_confint(theta * n_eff, n_eff, alpha=1 - LEVEL, method="beta")
    return float(lo), float(hi)


def correct(report: SafetyReport, store: Store) -> None:
    """Give each row of ``report`` its corrected missed rate (``SafetyRow.corrected``; ``None`` without human answers)."""
    answers = human_answers(store)
    report.corrected = True
    for row in report.rows:
        found = [v for v in report.episodes if all(v.group.get(c) == row.group[c] for c in report.by)]
        row.corrected = corrected_missed(found, answers)


def _number(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 4)


def agreement_data(result: Mapping[str, Any]) -> dict[str, Any]:
    """``safety_agreement``'s result with rounded numbers and ``None`` for undefined ones (JSON)."""
    items = {item: {**row, "kappa": _number(row["kappa"]), "agree": _number(row["agree"]),
                    "ci": None if row["ci"] is None else [_number(x) for x in row["ci"]]}
             for item, row in result["items"].items()}
    return {**result, "items": items}


def render_safety_agreement(result: Mapping[str, Any], fmt: str) -> str:
    """The safety items' judge-human agreement as a table (``table``) or Markdown (``md``)."""
    head = ["item", "kappa", "95% CI", "agree", "pairs", "cards", "note"]

    def num(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.2f}"

    lines = [[item, num(row["kappa"]), "-" if row["ci"] is None else f"[{row['ci'][0]:.2f}, {row['ci'][1]:.2f}]",
              "-" if math.isnan(row["agree"]) else f"{100 * row['agree']:.0f}%", str(row["n"]), str(row["n_cards"]), row["note"] or ""]
             for item, row in result["items"].items()]
    title = (f"Safety items: judge vs humans ({result['episodes']} episodes, {result['cards']} cards, "
             f"{len(result['annotators'])} annotators; Cohen's kappa, card-clustered bootstrap interval)")
    if fmt == "md":
        return "\n".join([f"\n**{title}**\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                          *("| " + " | ".join(r) + " |" for r in lines)]) + "\n"
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    return "\n".join([f"\n{title}", *("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in (head, *lines))]) + "\n"


def with_safety_agreement(text: str | None, result: Mapping[str, Any] | None, fmt: str) -> str:
    """The agreement ``text`` (``None`` when only safety items were labelled) with the safety items' agreement:
    a ``safety`` key in JSON, a section in a table or Markdown; CSV (one table) is left as it is."""
    if result is None:
        return text or ""
    if fmt == "json":
        data = json.loads(text) if text else {}
        data["safety"] = agreement_data(result)
        return json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        return text or ""
    return (text or "") + render_safety_agreement(result, fmt)


__all__ = ["cluster_kappa", "correct", "corrected_missed", "human_answers", "render_safety_agreement", "safety_agreement",
           "with_safety_agreement"]
