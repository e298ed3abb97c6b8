"""The report: leaderboard values, intervals and counts from a hand-built store, every format, the plot, agreement."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import sys
from pathlib import Path

import pytest
from scipy.stats import t as t_dist

from esc_eval.agents.messages import TurnTaken
from esc_eval.runs.analysis.report import ReportError, agreement_report, build_report, plot, render, render_agreement, report_command
from esc_eval.runs.store import PlannedEpisode, Store, StoreError

PAPER_ORDER = ["Fluency", "Expression", "Empathy", "Information", "Skillful", "Humanoid", "Overall"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (name, supporter, card_index, language, category, final status or None for never started)
EPISODES = [
    ("a0", "a", 0, "en", "work", "done"),
    ("a1", "a", 1, "zh", "family", "done"),
    ("a2", "a", 2, "en", "family", "done"),
    ("b0", "b", 0, "en", "work", "done"),
    ("b1", "b", 1, "en", "family", "done"),
    ("b2", "b", 2, "en", "family", "failed"),
    ("b3", "b", 3, "en", "family", None),
]
# (episode, dimension, label, status); round -1 unless a 5th item gives the round.
SCORES = [
    ("a0", "fluency", 4, "ok"), ("a1", "fluency", 3, "ok"), ("a2", "fluency", 2, "ok"),
    ("a0", "empathic", 4, "ok"), ("a1", "empathic", -1, "ok"), ("a2", "empathic", 2, "ok"),
    ("a0", "overall", 3, "ok"), ("a1", "overall", None, "failed"), ("a2", "overall", 3, "ok"),
    ("a0", "fluency", 0, "ok", 1),                       # a per-round score: not counted
    ("b0", "fluency", 2, "ok"), ("b1", "fluency", 2, "ok"),
    ("b0", "empathic", 1, "ok"),
    ("b1", "overall", None, "failed"),
    ("b2", "fluency", 0, "ok"),                          # an episode that failed: not counted
]


async def _fill(path: Path) -> None:
    store = Store.open(path, create=True)
    store.plan(PlannedEpisode(name, i, card, f"c{card}", lang, cat, "ESConv", sup, "default", 0, 0)
               for i, (name, sup, card, lang, cat, _) in enumerate(EPISODES))
    await store.start_writer()
    for name, *_, status in EPISODES:
        if status is None:
            continue
        store.start_episode(name)
        store.add_turn(TurnTaken(name, 0, "supporter", "Hello", at=1.0))
        store.add_turn(TurnTaken(name, 1, "seeker", "I feel low", at=2.0))
        store.end_episode(name, "failed" if status == "failed" else "truncated", "test", 3.0)
    for key, dim, label, status, *round_ in SCORES:
        store.add_score(key, dim, label, None, "judge", 0.1, status=status, **({"round": round_[0]} if round_ else {}))
    await store.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "run.sqlite"
    asyncio.run(_fill(path))
    return path


@pytest.fixture
def store(store_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(store_path, readonly=True)
    yield opened
    opened.close_sync()


def test_by_supporter_hand_computed(store: Store) -> None:
    report = build_report(store)
    assert report.by == ("supporter",)
    assert [report.name(d) for d in report.dimensions] == PAPER_ORDER
    a, b = report.rows
    assert dict(a.group) == {"supporter": "a"} and dict(b.group) == {"supporter": "b"}
    assert (a.episodes_done, a.episodes_failed, a.episodes_unfinished) == (3, 0, 0)
    assert (b.episodes_done, b.episodes_failed, b.episodes_unfinished) == (2, 1, 1)

    # fluency 4, 3, 2 on three cards -> 75; values 100, 75, 50: se = sd / sqrt 3 = 25 / sqrt 3 (one episode a card);
    # the t interval 75 -/+ t(2) se = [12.9, 137.1], clipped to the scale
    fl = a.dimensions["fluency"]
    assert fl.value == fl.mean == fl.mean_episodes == pytest.approx(75.0)
    assert (fl.ci_low, fl.ci_high) == pytest.approx((75 - t_dist.ppf(0.975, 2) * 25 / math.sqrt(3), 100.0))
    assert fl.se_clustered == pytest.approx(25 / math.sqrt(3))
    assert (fl.n, fl.n_unparsed, fl.n_failed, fl.n_missing) == (3, 0, 0, 0)
    assert (fl.n_episodes, fl.n_cards, fl.small, fl.flags) == (3, 3, True, ("small_n",))
    # empathic 4, -1, 2 -> (4 + 2) / 2 = 3 -> 75; values 100, 50 on two cards: t(1) = 12.7 makes the interval the whole scale
    em = a.dimensions["empathic"]
    assert em.value == pytest.approx(75.0)
    assert (em.ci_low, em.ci_high) == pytest.approx((0.0, 100.0))
    assert em.se_clustered == pytest.approx(25.0)          # sd(100, 50) / sqrt 2
    assert (em.n, em.n_unparsed, em.n_failed, em.n_missing) == (2, 1, 0, 0)
    # overall 3, failed, 3 -> 75 on both cards: no spread, so not the zero-width [75, 75] but the interval of one card
    # moved a label (100, 75 or 50, 75), here the whole scale with two cards
    ov = a.dimensions["overall"]
    assert (ov.value, ov.ci_low, ov.ci_high) == pytest.approx((75.0, 0.0, 100.0))
    assert ov.flags == ("small_n", "no_spread")
    assert (ov.n, ov.n_unparsed, ov.n_failed, ov.n_missing) == (2, 0, 1, 0)
    # never scored
    div = a.dimensions["diversity"]
    assert math.isnan(div.value) and math.isnan(div.ci_low) and math.isnan(div.ci_high)
    assert (div.n, div.n_missing) == (0, 3)

    # b: the failed episode's fluency 0 and a0's per-round 0 do not count
    assert b.dimensions["fluency"].value == pytest.approx(50.0)
    assert (b.dimensions["fluency"].ci_low, b.dimensions["fluency"].ci_high) == pytest.approx((0.0, 100.0))
    assert b.dimensions["empathic"].value == pytest.approx(25.0)
    assert math.isnan(b.dimensions["empathic"].ci_low) and b.dimensions["empathic"].n_cards == 1   # one card: no interval
    assert (b.dimensions["empathic"].n, b.dimensions["empathic"].n_missing) == (1, 1)
    assert (b.dimensions["overall"].n, b.dimensions["overall"].n_failed) == (0, 1)
    assert math.isnan(b.dimensions["overall"].value)


def test_grouping_by_language_and_category(store: Store) -> None:
    report = build_report(store, by=("supporter", "language"))
    assert [tuple(r.group.values()) for r in report.rows] == [("a", "en"), ("a", "zh"), ("b", "en")]
    a_en, a_zh, _ = report.rows
    assert a_en.dimensions["fluency"].value == pytest.approx(75.0)      # 4, 2
    assert a_en.dimensions["fluency"].n == 2
    assert a_zh.dimensions["fluency"].value == pytest.approx(75.0)      # 3
    assert a_zh.dimensions["empathic"].n_unparsed == 1

    by_category = build_report(store, by=("category",))
    work, family = by_category.rows
    assert dict(work.group) == {"category": "work"}
    assert work.dimensions["fluency"].value == pytest.approx(75.0)      # a0 4, b0 2
    assert family.dimensions["fluency"].value == pytest.approx(700 / 12)  # a1 3, a2 2, b1 2
    assert (family.episodes_done, family.episodes_failed, family.episodes_unfinished) == (3, 1, 1)

    only_b = build_report(store, by=("source", "persona"), supporter="b")
    assert [dict(r.group) for r in only_b.rows] == [{"source": "ESConv", "persona": "default"}]
    assert only_b.rows[0].dimensions["fluency"].value == pytest.approx(50.0)


def test_bad_group_and_format(store: Store) -> None:
    with pytest.raises(ReportError, match="'model'.*supporter, language, category, source, persona"):
        build_report(store, by=("model",))
    with pytest.raises(ReportError, match="'html'"):
        render(build_report(store), "html")


def test_table_is_plain_text(store: Store) -> None:
    text = render(build_report(store), "table")
    assert "\x1b" not in text
    for name in PAPER_ORDER + ["Supporter", "75.0", "[12.9, 100.0]", "n=3 · 3 cards*", "[no CI]", "Judge failed",
                               "fewer than 10 cards", "no spread: CI widened", "mean over role cards"]:
        assert name in text
    assert text.index("Fluency") < text.index("Expression") < text.index("Overall")


def test_markdown_has_paper_columns(store: Store) -> None:
    lines = render(build_report(store), "md").splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["Supporter", "Done", "Failed", *PAPER_ORDER, "-1", "Judge failed"]
    assert set(lines[1].replace("|", "").replace(" ", "")) <= set("-:")
    row_a = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert row_a[:4] == ["a", "3", "0", "75.0 [12.9, 100.0] n=3 · 3 cards*"]
    assert row_a[4] == "–"                       # Expression: no scores
    assert row_a[-2:] == ["1", "1"]              # one -1 (empathic), one failed judge call (overall)
    assert len(lines) == 4


def test_json_is_stable_and_nan_free(store: Store) -> None:
    report = build_report(store)
    text = render(report, "json")
    assert text == render(build_report(store), "json")
    data = json.loads(text)
    assert "NaN" not in text
    assert data["by"] == ["supporter"]
    assert [d["name"] for d in data["dimensions"]] == PAPER_ORDER
    a = data["rows"][0]
    assert a["group"] == {"supporter": "a"}
    assert a["episodes"] == {"done": 3, "failed": 0, "unfinished": 0}
    assert a["scores"]["fluency"]["value"] == 75.0 and a["scores"]["fluency"]["name"] == "Fluency"
    assert a["scores"]["empathic"] == {"name": "Empathy", "value": 75.0, "ci_low": pytest.approx(0.0), "ci_high": pytest.approx(100.0),
                                       "n": 2, "n_unparsed": 1, "n_failed": 0, "n_missing": 0, "mean": 75.0,
                                       "se_clustered": pytest.approx(25.0), "n_episodes": 2, "n_cards": 2, "small_n": True,
                                       "flags": ["small_n"], "mean_episodes": 75.0}
    assert a["scores"]["overall"]["flags"] == ["small_n", "no_spread"] and a["scores"]["diversity"]["flags"] == []
    assert data["judge_samples"] == 1 and "comparisons" not in data and "power" not in data
    assert a["scores"]["diversity"]["value"] is None and a["scores"]["diversity"]["ci_low"] is None
    assert data["rows"][1]["episodes"] == {"done": 2, "failed": 1, "unfinished": 1}


def test_csv_parses(store: Store) -> None:
    rows = list(csv.DictReader(io.StringIO(render(build_report(store, by=("supporter", "language")), "csv"))))
    assert [(r["supporter"], r["language"]) for r in rows] == [("a", "en"), ("a", "zh"), ("b", "en")]
    a_en = rows[0]
    assert float(a_en["Fluency"]) == 75.0 and a_en["Fluency_n"] == "2"
    assert float(a_en["Fluency_ci_low"]) == pytest.approx(0.0)
    assert a_en["Fluency_cards"] == "2" and a_en["Fluency_episodes"] == "2" and float(a_en["Fluency_se"]) == pytest.approx(25.0)
    assert a_en["Expression"] == "" and a_en["Expression_missing"] == "2"
    assert rows[1]["Empathy_unparsed"] == "1" and rows[1]["Overall_failed"] == "1"
    assert rows[2]["done"] == "2" and rows[2]["failed"] == "1" and rows[2]["unfinished"] == "1"


def test_plot_writes_png(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot(build_report(store, by=("supporter", "language")), tmp_path / "charts" / "board.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_without_matplotlib(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ReportError, match=r"pip install esc-eval\[plot\]"):
        plot(build_report(store), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _human(tmp_path: Path) -> Path:
    path = tmp_path / "human.json"
    path.write_text(json.dumps({
        "0": {"fluency": 2, "empathic": 3},
        "1": {"fluency": 3, "empathic": 2, "overall": 3},
        "7": {"fluency": 0},
    }), encoding="utf-8")
    return path


def test_agreement_hand_computed(store: Store, tmp_path: Path) -> None:
    result = agreement_report(store, _human(tmp_path), supporter="b")
    assert (result["supporter"], result["language"]) == ("b", "en")
    assert result["cards"] == {"matched": 2, "only_human": 1, "only_judge": 0}
    dims = result["dimensions"]
    assert list(dims) == ["fluency", "empathic", "overall"]
    # fluency: judge 2, 2 vs human 2, 3 -> exact 1/2, within one 2/2
    assert dims["fluency"] == {"name": "Fluency", "acc": 0.5, "acc_soft": 1.0, "n": 2}
    # empathic: judge 1 vs human 3 (card 1 has no judge label) -> 0/1, 0/1
    assert dims["empathic"] == {"name": "Empathy", "acc": 0.0, "acc_soft": 0.0, "n": 1}
    # overall: the judge call failed -> no pair
    assert dims["overall"]["n"] == 0 and math.isnan(dims["overall"]["acc"])
    assert result["average"] == {"acc": 0.25, "acc_soft": 0.5}

    data = json.loads(render_agreement(result, "json"))
    assert data["dimensions"]["overall"]["acc"] is None
    table = render_agreement(result, "table")
    assert "ACC_soft" in table and "50.0%" in table and "\x1b" not in table
    md = render_agreement(result, "md")
    assert "| Metric | Fluency | Empathy | Overall | Average |" in md
    rows = list(csv.DictReader(io.StringIO(render_agreement(result, "csv"))))
    assert rows[0] == {"dimension": "fluency", "name": "Fluency", "acc": "0.5", "acc_soft": "1.0", "n": "2"}


def test_agreement_needs_one_supporter_and_language(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"several.*a \(en\), a \(zh\), b \(en\)"):
        agreement_report(store, _human(tmp_path))
    with pytest.raises(ReportError, match=r"a \(en\), a \(zh\)"):
        agreement_report(store, _human(tmp_path), supporter="a")
    assert agreement_report(store, _human(tmp_path), supporter="a", language="zh")["language"] == "zh"
    with pytest.raises(ReportError, match="no finished episodes of supporter 'c'"):
        agreement_report(store, _human(tmp_path), supporter="c")


def test_agreement_bad_human_file(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"fluency": 9}}), encoding="utf-8")
    with pytest.raises(ReportError, match=r"bad\.json: key '0'.*fluency"):
        agreement_report(store, bad, supporter="b")


def test_report_command(store_path: Path, tmp_path: Path) -> None:
    png = tmp_path / "board.png"
    pytest.importorskip("matplotlib")
    text = report_command(store_path, "json", png, ["supporter,language"], None, None, None)
    assert [r["group"] for r in json.loads(text)["rows"]] == [
        {"supporter": "a", "language": "en"}, {"supporter": "a", "language": "zh"}, {"supporter": "b", "language": "en"}]
    assert png.read_bytes().startswith(PNG_MAGIC)
    table = report_command(store_path, "table", None, [], None, "a", None)
    assert "Fluency" in table and "\n  b " not in table
    agreement = json.loads(report_command(store_path, "json", None, [], _human(tmp_path), "b", "en"))
    assert agreement["dimensions"]["fluency"]["acc"] == 0.5
    with pytest.raises(ReportError, match="'xml'"):
        report_command(store_path, "xml", None, [], None, None, None)
    with pytest.raises(ReportError, match="'card'"):
        report_command(store_path, "md", None, ["supporter", "card"], None, None, None)
    with pytest.raises(StoreError, match="no such store"):
        report_command(tmp_path / "missing.sqlite", "md", None, [], None, None, None)


def test_empty_store_renders(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "empty.sqlite", create=True)
    try:
        report = build_report(store)
        assert report.rows == ()
        for fmt in ("table", "md", "json", "csv"):
            assert render(report, fmt)
        assert json.loads(render(report, "json"))["rows"] == []
        with pytest.raises(ReportError, match="no episodes"):
            plot(report, tmp_path / "x.png")
    finally:
        store.close_sync()


# -- statistics through a real store and the real command ----------------------------------------------------------

async def _synthetic(path: Path, *, cards: int = 30, samples: int = 2, seed: int = 0) -> dict[str, float]:
    """Supporters a (true 60) and b (true 40) on the same cards, two personas each, ``samples`` judge labels an episode.

    Label = card difficulty (0..2) + Binomial(2, p) with p = 0.7 (a) or 0.3 (b) and the same difficulty for both,
    so the truths are 25·(1 + 2p): a 60, b 40 (d = 20). Human labels (annotator "h") on the first
    10 cards of a: the judge's label minus one where possible (the judge reads high).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    difficulty = rng.integers(0, 3, size=cards)
    store = Store.open(path, create=True)
    planned, ordinal = [], 0
    for card in range(cards):
        for sup in ("a", "b"):
            for persona in ("calm", "angry"):
                planned.append(PlannedEpisode(f"{sup}-{card}-{persona}", ordinal, card, f"c{card}", "en", "work", "ESConv",
                                              sup, persona, 0, 0))
                ordinal += 1
    store.plan(planned)
    await store.start_writer()
    for e in planned:
        store.start_episode(e.key)
        store.add_turn(TurnTaken(e.key, 0, "supporter", "Hello", at=1.0))
        store.end_episode(e.key, "truncated", "test", 2.0)
        p = 0.7 if e.supporter == "a" else 0.3
        for dim in ("fluency", "empathic"):
            base = int(difficulty[e.card_index]) + int(rng.binomial(2, p))
            for sample in range(samples):
                label = min(4, max(0, base + int(rng.integers(-1, 2)) * (sample > 0)))
                store.add_score(e.key, dim, label, f"Score: {label}", "judge", 0.1, sample=sample)
    await store.close()
    writable = Store.open(path)
    human = []
    for row in writable.final_scores():
        key = row.episode_key
        if key.startswith("a-") and int(key.split("-")[1]) < 10 and row.sample == 0:
            human.append((key, "h", row.dimension, max(0, row.label - 1), 1.0))
    writable.add_annotations(human)
    writable.close_sync()
    return {"a": 60.0, "b": 40.0}


async def test_report_json_compare_through_the_command(tmp_path: Path) -> None:
    from esc_eval.testing.cli import esc_eval

    path = tmp_path / "synthetic.sqlite"
    truth = await _synthetic(path)
    done = await esc_eval("report", str(path), "--format", "json", "--compare", "--corrected", "--power", "10")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["judge_samples"] == 2
    rows = {r["group"]["supporter"]: r for r in data["rows"]}
    for sup, row in rows.items():
        fl = row["scores"]["fluency"]
        assert (fl["n_episodes"], fl["n_cards"], fl["n"], fl["small_n"]) == (60, 30, 120, False)
        assert 0 <= fl["ci_low"] <= fl["mean"] <= fl["ci_high"] <= 100 and fl["value"] == fl["mean"]
        assert fl["ci_low"] - 3 < truth[sup] < fl["ci_high"] + 3          # near the truth (a loose check: one study)
        assert fl["se_clustered"] > 0
        assert 0 < fl["judge_noise"]["judge_share"] < 1 and fl["judge_noise"]["samples"] == 2
        assert row["scores"]["diversity"]["mean"] is None and row["scores"]["diversity"]["n_cards"] == 0
    corrected = rows["a"]["scores"]["fluency"]["corrected"]
    assert corrected["n_labelled"] == 20 and corrected["n_unlabelled"] == 40           # 10 cards × 2 personas
    assert corrected["mean"] < rows["a"]["scores"]["fluency"]["mean"]                # humans read lower: pulled down
    assert 0 <= corrected["ci_low"] <= corrected["mean"] <= corrected["ci_high"] <= 100
    assert rows["b"]["scores"]["fluency"]["corrected"]["n_labelled"] == 0
    assert rows["b"]["scores"]["fluency"]["corrected"]["mean"] is None

    comparisons = data["comparisons"]
    # only scored dimensions enter the family that Holm adjusts over
    assert [(c["a"], c["b"], c["dimension"]) for c in comparisons] == [("a", "b", "fluency"), ("a", "b", "empathic")]
    fluency = comparisons[0]
    assert set(fluency) == {"a", "b", "dimension", "diff", "ci_low", "ci_high", "p_value", "p_holm", "wins", "ties",
                            "losses", "n_cards", "p_exact", "p_floor", "p_is_bound", "flags"}
    assert fluency["p_exact"] is False and fluency["flags"] == [] and 0 < fluency["p_floor"] <= 0.05 / 2 / 2
    assert fluency["diff"] == pytest.approx(rows["a"]["scores"]["fluency"]["mean"] - rows["b"]["scores"]["fluency"]["mean"])
    assert fluency["ci_low"] <= fluency["diff"] <= fluency["ci_high"]
    assert fluency["n_cards"] == 30 and fluency["wins"] + fluency["ties"] + fluency["losses"] == 30
    assert fluency["p_holm"] < 0.05 and fluency["p_value"] <= fluency["p_holm"] and fluency["diff"] > 0
    assert comparisons[1]["p_holm"] == pytest.approx(min(1.0, 2 * min(c["p_value"] for c in comparisons)) if
                                                     comparisons[1]["p_value"] < fluency["p_value"] else
                                                     max(fluency["p_holm"], comparisons[1]["p_value"]))
    assert [r["supporter"] for r in data["ranks"]["fluency"]] == ["a", "b"]
    assert data["power"]["delta"] == 10 and {r["dimension"] for r in data["power"]["rows"]} == {"fluency", "empathic"}
    for r in data["power"]["rows"]:
        assert r["cards_needed"] >= 2 and r["min_detectable"] > 0 and r["n_cards"] == 30
        assert r["tests"] == 2 and r["cards_needed_family"] >= r["cards_needed"]

    table = await esc_eval("report", str(path), "--compare", "--power", "10", "--corrected", "--plot", str(tmp_path / "board.png"))
    assert table.returncode == 0, table.stderr
    for text in ("paired comparisons", "a − b", "which supporters differ", "Fluency: a", "differ: a > b",
                 "cards needed to detect 10.0 points", "PPI ", "judge ", "board-compare.png"):
        assert text in table.stdout, text
    assert (tmp_path / "board.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "board-compare.png").read_bytes().startswith(PNG_MAGIC)
    bad = await esc_eval("report", str(path), "--power", "0")
    assert bad.returncode == 2 and "--power" in bad.stderr and bad.stdout == ""


def test_report_reads_an_old_store_read_only(tmp_path: Path) -> None:
    from tests.runs.store.test_store import _old_store

    path = _old_store(tmp_path / "old.sqlite")
    before = path.read_bytes()
    data = json.loads(report_command(path, "json", None, [], None, None, None, compare=True))
    assert data["rows"][0]["scores"]["fluency"]["mean"] == 75.0 and data["judge_samples"] == 1
    assert data["comparisons"] == []                     # one supporter: nothing to compare
    assert path.read_bytes() == before


def test_the_worked_example_in_docs_reproduces(tmp_path: Path) -> None:
    """docs/statistics.md quotes scripts/statistics_example.py; the run is seeded, so its numbers must come back."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, str(root / "scripts" / "statistics_example.py"), str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    doc = (root / "docs" / "statistics.md").read_text(encoding="utf-8")
    digest = done.stdout[done.stdout.index("| supporter | mean |"):].strip()
    assert digest in doc                                   # the page quotes the script's Empathy tables verbatim
    for quoted in ("| warm | 88.9 | [83.4, 94.3] |", "| warm − terse | 29.4 | [20.2, 38.9] | 6.1e-05 | 0.001 * |",
                   "| warm − steady | 6.1 | [0.0, 11.7] | 0.080 |", "| warm − steady | 11.1 | 15 | 12 | 24 | 22 | 43 | 8.7 |"):
        assert quoted in digest, quoted
    for quoted in ("Empathy: warm 88.9 (rank 1, 1–2), steady 82.8 (rank 2, 1–2), terse 59.4 (rank 3, 3–3)",
                   "judge 92% of a label's var, 39%", "PPI 70.8 [52.7, 88.9] h=12"):
        assert quoted in done.stdout, quoted
    assert "Empathy: warm 88.9 (rank 1, 1–2), steady 82.8 (rank 2, 1–2), terse 59.4 (rank 3, 3–3); differ: warm > terse, " \
           "steady > terse" in " ".join(doc.split())
