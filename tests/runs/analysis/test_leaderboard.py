"""The report over designed stores (exact labels, imported from a JSONL export): one estimand, intervals, flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from esc_eval.agents.judge.profiles import DIMENSIONS
from esc_eval.runs.analysis.report import report_command
from esc_eval.testing.designed import DesignedEpisode, designed_store


def _report(path: Path, *args: str, fmt: str = "json", **kwargs: object) -> dict:
    return json.loads(report_command(path, fmt, None, list(args), None, None, None, **kwargs))  # type: ignore[arg-type]


def test_unbalanced_cards_one_estimand_in_table_comparisons_and_ranks(tmp_path: Path) -> None:
    """The issue's example: A = 4 on 10 cards plus three extra 0-episodes on cards 0-4; B = 2 everywhere.

    Episode-weighted, A is 40 < B 50, while card-paired comparisons said A − B = +12.5. Now every
    number is the mean over cards of the card's mean: A = (5 × 25 + 5 × 100) / 10 = 62.5.
    """
    episodes = [DesignedEpisode("A", card, {"overall": [4]}) for card in range(10)]
    episodes += [DesignedEpisode("A", card, {"overall": [0]}, repeat=r) for card in range(5) for r in (1, 2, 3)]
    episodes += [DesignedEpisode("B", card, {"overall": [2]}) for card in range(10)]
    path = designed_store(tmp_path / "unbalanced.sqlite", episodes)
    data = _report(path, compare=True)
    a, b = (row["scores"]["overall"] for row in data["rows"])
    assert (a["value"], a["mean_episodes"], a["n_episodes"], a["n_cards"]) == (62.5, 40.0, 25, 10)
    assert (b["value"], b["mean_episodes"]) == (50.0, 50.0)
    (pair,) = data["comparisons"]
    assert pair["diff"] == pytest.approx(a["value"] - b["value"]) == 12.5
    assert [r["supporter"] for r in data["ranks"]["overall"]] == ["A", "B"]
    assert data["ranks"]["overall"][0]["mean"] == 62.5
    by_language = _report(path, "supporter,language")                    # --by groups use the same estimand
    assert by_language["rows"][0]["scores"]["overall"]["value"] == 62.5
    table = report_command(path, "table", None, [], None, None, None)
    assert "62.5" in table and "mean over role cards" in table


def test_intervals_contain_the_t_interval_and_comparisons_agree_with_p(tmp_path: Path) -> None:
    """Three supporters with spread over 12 cards: each interval ⊇ the t interval over card means; 0 ∉ CI exactly when p < 0.05."""
    rng = np.random.default_rng(4)
    difficulty = rng.integers(-1, 2, size=12)
    quality = {"warm": 1, "steady": 0, "terse": 0}
    labels = {s: {d: np.clip(2 + q + difficulty + rng.integers(-1, 2, size=12), 0, 4) for d in DIMENSIONS}
              for s, q in quality.items()}
    episodes = [DesignedEpisode(s, card, {d: [int(labels[s][d][card])] for d in DIMENSIONS}) for s in quality for card in range(12)]
    path = designed_store(tmp_path / "spread.sqlite", episodes)
    data = _report(path, compare=True)
    for row in data["rows"]:
        for d in DIMENSIONS:
            s = row["scores"][d]
            values = labels[row["group"]["supporter"]][d] * 25.0
            if np.ptp(values) == 0:
                assert "no_spread" in s["flags"]
                continue
            low, high = stats.t.interval(0.95, 11, loc=values.mean(), scale=stats.sem(values))
            assert s["ci_low"] <= max(0.0, low) + 1e-9 and s["ci_high"] >= min(100.0, high) - 1e-9
            assert s["value"] == pytest.approx(values.mean())
    assert len(data["comparisons"]) == 21
    for c in data["comparisons"]:
        assert (c["ci_low"] > 0 or c["ci_high"] < 0) == (c["p_value"] < 0.05), c
        assert c["p_exact"] and not c["p_is_bound"] and "underpowered" not in c["flags"]   # 12 cards: 2/4096 × 21 < 0.05
    warm_terse = [c for c in data["comparisons"] if (c["a"], c["b"]) == ("warm", "terse")]
    assert all(c["diff"] > 0 for c in warm_terse) and any(c["p_holm"] < 0.05 for c in warm_terse)


def test_no_spread_and_underpowered_flags_in_json_and_table(tmp_path: Path) -> None:
    """9 cards, 3 supporters × 7 dimensions, a = 4 and b = 2 on every card: p = 2/2⁹ = 0.0039, but × 21 tests it is 0.082."""
    episodes = [DesignedEpisode(s, card, {d: [label] for d in DIMENSIONS})
                for s, label in (("a", 4), ("b", 2), ("c", 3)) for card in range(9)]
    path = designed_store(tmp_path / "nine.sqlite", episodes)
    data = _report(path, compare=True)
    cell = data["rows"][0]["scores"]["overall"]
    assert cell["flags"] == ["small_n", "no_spread"] and cell["small_n"] is True
    assert 0 <= cell["ci_low"] < cell["value"] == 100.0 == cell["ci_high"]          # widened below, kept on the scale
    ab = next(c for c in data["comparisons"] if (c["a"], c["b"], c["dimension"]) == ("a", "b", "overall"))
    assert ab["p_value"] == pytest.approx(2 / 512) and ab["p_holm"] > 0.05
    assert ab["flags"] == ["small_n", "no_spread", "underpowered"]
    assert all("underpowered" in c["flags"] for c in data["comparisons"])
    table = report_command(path, "table", None, [], None, None, None, compare=True)
    assert "9 cards cannot resolve this comparison" in table and "no spread: CI widened" in table
    assert "differ: none" in table


def _by_hand(episodes: list[DesignedEpisode], by: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, dict[str, float]]]:
    """The leaderboard's numbers computed the plain way: per group and dimension, every card once, episodes by their mean."""
    slots: dict[tuple[tuple[str, ...], str], dict[str, list[float]]] = {}
    counts: dict[tuple[tuple[str, ...], str], list[int]] = {}
    for e in episodes:
        group = tuple(str(getattr(e, c)) for c in by)
        for dim, labels in e.labels.items():
            valid = [label for label in labels if label >= 0]
            tally = counts.setdefault((group, dim), [0, 0, 0])
            tally[0] += len(valid)
            tally[1] += len(labels) - len(valid)
            if valid:
                tally[2] += 1
                slots.setdefault((group, dim), {}).setdefault(f"{e.language}:{e.card_index}", []).append(25 * sum(valid) / len(valid))
    out: dict[tuple[str, ...], dict[str, dict[str, float]]] = {}
    for (group, dim), (n, unparsed, scored) in counts.items():
        cards = slots.get((group, dim), {})
        means = [sum(v) / len(v) for v in cards.values()]
        values = [x for v in cards.values() for x in v]
        out.setdefault(group, {})[dim] = {"value": sum(means) / len(means) if means else math.nan, "n": n, "n_unparsed": unparsed,
                                          "n_episodes": scored, "n_cards": len(cards),
                                          "mean_episodes": sum(values) / len(values) if values else math.nan}
    return out


@pytest.mark.parametrize("unparsed", [False, True], ids=["every-label-valid", "with-unparsed-labels"])
def test_grouped_arrays_give_the_numbers_of_a_plain_computation(tmp_path: Path, unparsed: bool) -> None:
    """``build_report`` groups the scores as arrays (``StoreRead.slots``); the numbers are those computed label by label.

    Unbalanced (repeats on some cards, a card only one supporter played), two languages, two judge
    samples on one dimension; with ``unparsed`` some labels are -1 (the read's checked path).
    """
    rng = np.random.default_rng(11)
    episodes = []
    for s, supporter in enumerate(("warm", "steady", "terse")):
        for card in range(12 + s):
            for repeat in range(1 + (card % 4 == 0)):
                labels = {d: [int(rng.integers(0, 5))] for d in DIMENSIONS}
                labels["overall"] = [int(rng.integers(0, 5)), int(rng.integers(0, 5))]
                if unparsed and card % 5 == 1:
                    labels["empathic"] = [-1]
                    labels["overall"][1] = -1
                episodes.append(DesignedEpisode(supporter, card, labels, repeat=repeat, language="en" if card < 8 else "zh"))
    path = designed_store(tmp_path / "plain.sqlite", episodes)
    for by in (("supporter",), ("supporter", "language")):
        expected = _by_hand(episodes, by)
        data = _report(path, ",".join(by))
        assert [tuple(row["group"].values()) for row in data["rows"]] == list(expected)
        for row in data["rows"]:
            for dim, want in expected[tuple(row["group"].values())].items():
                got = row["scores"][dim]
                assert {k: got[k] for k in ("n", "n_unparsed", "n_episodes", "n_cards")} == \
                       {k: want[k] for k in ("n", "n_unparsed", "n_episodes", "n_cards")}
                assert got["value"] == pytest.approx(want["value"], rel=1e-12)
                assert got["mean_episodes"] == pytest.approx(want["mean_episodes"], rel=1e-12)
    assert data["judge_samples"] == 2
