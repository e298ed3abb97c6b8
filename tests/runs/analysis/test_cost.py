"""The report's costs from a hand-built store: tokens × the recorded prices per role, supporter, row and episode;
cache hits saved, not paid; a missing price or unknown tokens give ``None``, never 0; the JSON ``cost`` object's shape."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.messages import SafetyJudgement, TurnTaken
from esc_eval.runs.analysis.cost import report_cost, store_cost
from esc_eval.runs.analysis.leaderboard import build_report
from esc_eval.runs.analysis.render import render
from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.config import parse_config
from esc_eval.runs.store import PlannedEpisode, Store, Tokens
from esc_eval.runs.store import safety as safety_records

SEEKER, A, B, JUDGE = (1.0, 2.0), (10.0, 20.0), (2.0, 4.0), (0.5, 1.0)
COST_KEYS = ["total_usd", "by_role", "by_supporter", "tokens", "cached_usd_saved", "estimated"]


def usd(price: tuple[float, float], tokens_in: int, tokens_out: int) -> float:
    """The formula written out again, apart from ``Price.usd``."""
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


def config(*, b_price: bool = True, priced: bool = True) -> dict[str, Any]:
    def price(p: tuple[float, float], on: bool = True) -> dict[str, Any]:
        return {"price": {"input": p[0], "output": p[1]}} if priced and on else {}

    url = {"base_url": "http://127.0.0.1:9/v1"}
    raw = {"seeker": {"model": "esc-role", **url, **price(SEEKER)},
           "supporters": [{"name": "a", "model": "a-model", **url, **price(A)},
                          {"name": "b", "model": "b-model", **url, **price(B, b_price)}],
           "judge": {"model": "judge-model", **url, **price(JUDGE)}, "safety": {}}
    return parse_config(raw, "cost.toml").to_dict()


async def fill(path: Path, meta: dict[str, Any], *, unknown_judge: bool = False) -> None:
    store = Store.create(path, config=meta)
    store.plan([PlannedEpisode("a0", 0, 0, "c0", "en", "work", "test", "a", "default", 0, 0, seeker="esc-role"),
                PlannedEpisode("b0", 1, 0, "c0", "en", "work", "test", "b", "default", 0, 0, seeker="esc-role"),
                PlannedEpisode("b1", 2, 1, "c1", "zh", "work", "test", "b", "default", 0, 0, seeker="esc-role")])
    await store.start_writer()
    for key, turns in {"a0": [("seeker", 100, 10, "reported", False), ("supporter", 200, 20, "estimated", False),
                              ("seeker", 50, 5, "reported", True), ("supporter", 300, 30, "counted", False)],
                       "b0": [("seeker", 40, 4, "reported", False), ("supporter", 60, 6, "reported", False)]}.items():
        store.start_episode(key)
        store.add_turn(TurnTaken(key, 0, "supporter", "Hello", at=1.0))   # the opener: no request
        for i, (role, tokens_in, tokens_out, kind, cached) in enumerate(turns, 1):
            store.add_turn(TurnTaken(key, i, role, "...", tokens_in, tokens_out, 0.1, 1.0 + i, usage=kind, cached=cached))
        store.end_episode(key, "truncated", "test", 9.0)
    store.add_score("a0", "fluency", 3, "3", "judge-model", 0.1, tokens=Tokens(1000, 4))
    store.add_score("a0", "empathic", 2, "2", "judge-model", 0.1, tokens=Tokens(1000, 4, "reported", 1))   # a cache hit
    store.add_score("a0", "overall", None, None, "judge-model", 0.1, status="failed", error="gave up")   # no reply: no tokens
    store.add_score("b0", "fluency", 2, "2", "judge-model", 0.1, tokens=Tokens(None, None) if unknown_judge else Tokens(800, 2))
    safety_records.add(store, SafetyJudgement("a0", 0, "control", "ok", "{}", "{}", "judge-model", 0.1,
                                              prompt_tokens=500, completion_tokens=50))
    safety_records.add(store, SafetyJudgement("b0", 0, "excluded", "excluded"))   # nothing sent
    await store.close()


def make(tmp_path: Path, name: str = "run.sqlite", **options: Any) -> Path:
    path = tmp_path / name
    asyncio.run(fill(path, config(**{k: v for k, v in options.items() if k != "unknown_judge"}),
                     unknown_judge=options.get("unknown_judge", False)))
    return path


SEEKER_USD = usd(SEEKER, 140, 14)                          # a0 100/10 + b0 40/4; a0's cached 50/5 is saved, not paid
A_USD, B_USD = usd(A, 500, 50), usd(B, 60, 6)
JUDGE_USD = usd(JUDGE, 1800, 6)                             # a0 1000/4 + b0 800/2; the cached 1000/4 saved, the failed call free
SAFETY_USD = usd(JUDGE, 500, 50)                            # [safety] on the judge's model: the judge's price
SAVED = usd(SEEKER, 50, 5) + usd(JUDGE, 1000, 4)


def test_costs_are_tokens_times_prices_per_role_supporter_and_total(tmp_path: Path) -> None:
    with Store.open(make(tmp_path), readonly=True) as store:
        data = store_cost(store).data()
    assert list(data) == COST_KEYS
    assert data["by_role"] == pytest.approx({"seeker": SEEKER_USD, "supporter": A_USD + B_USD, "judge": JUDGE_USD,
                                             "safety": SAFETY_USD})
    assert data["by_supporter"] == pytest.approx({"a": A_USD, "b": B_USD})
    assert data["total_usd"] == pytest.approx(SEEKER_USD + A_USD + B_USD + JUDGE_USD + SAFETY_USD)
    assert data["tokens"] == {"seeker": {"input": 140, "output": 14}, "supporter": {"input": 560, "output": 56},
                              "judge": {"input": 1800, "output": 6}, "safety": {"input": 500, "output": 50}}
    assert data["cached_usd_saved"] == pytest.approx(SAVED)
    assert data["estimated"] is True                         # one supporter turn was estimated


def test_a_missing_price_is_unknown_not_zero(tmp_path: Path) -> None:
    with Store.open(make(tmp_path, b_price=False), readonly=True) as store:
        data = store_cost(store).data()
    assert data["by_supporter"]["b"] is None and data["by_supporter"]["a"] == pytest.approx(A_USD)
    assert data["by_role"]["supporter"] is None and data["total_usd"] is None
    assert data["by_role"]["seeker"] == pytest.approx(SEEKER_USD) and data["by_role"]["judge"] == pytest.approx(JUDGE_USD)
    assert data["tokens"]["supporter"] == {"input": 560, "output": 56}


def test_unknown_judge_tokens_make_the_judge_cost_unknown_and_are_counted(tmp_path: Path) -> None:
    path = make(tmp_path, unknown_judge=True)
    with Store.open(path, readonly=True) as store:
        cost = store_cost(store)
    assert cost.unknown == {"judge": 1}                      # the failed call and the excluded safety row are not unknown
    assert cost.data()["by_role"]["judge"] is None and cost.data()["total_usd"] is None
    assert cost.data()["tokens"]["judge"] == {"input": 1000, "output": 4}
    data = json.loads(report_command(path, "json", None, [], None, None, None))
    assert data["cost_unknown_requests"] == {"judge": 1}
    assert "not counted, tokens unknown: 1 judge requests" in report_command(path, "table", None, [], None, None, None)


def test_no_prices_show_tokens_and_no_cost_columns(tmp_path: Path) -> None:
    path = make(tmp_path, priced=False)
    data = json.loads(report_command(path, "json", None, [], None, None, None))
    assert list(data["cost"]) == COST_KEYS
    cost = data["cost"]
    assert cost["total_usd"] is None and cost["cached_usd_saved"] is None
    assert set(cost["by_role"].values()) == {None} and cost["by_supporter"] == {"a": None, "b": None}
    assert cost["tokens"]["seeker"] == {"input": 140, "output": 14}
    table = report_command(path, "table", None, [], None, None, None)
    assert "Supporter $" not in table and "tokens sent (input / output): seeker 140 / 14" in table and "no prices" in table
    assert "supporter_usd" not in report_command(path, "csv", None, [], None, None, None)


def test_rows_carry_their_supporters_cost_and_the_cost_per_episode(tmp_path: Path) -> None:
    path = make(tmp_path)
    data = json.loads(report_command(path, "json", None, [], None, None, None))
    rows = {row["group"]["supporter"]: row["cost"] for row in data["rows"]}
    a0 = usd(SEEKER, 100, 10) + A_USD + usd(JUDGE, 1000, 4) + SAFETY_USD
    assert rows["a"]["supporter_usd"] == pytest.approx(A_USD) and rows["a"]["per_episode_usd"] == pytest.approx(a0)
    b0 = usd(SEEKER, 40, 4) + B_USD + usd(JUDGE, 800, 2)
    assert rows["b"]["supporter_usd"] == pytest.approx(B_USD)
    assert rows["b"]["per_episode_usd"] == pytest.approx(b0)   # b1 never started: not an episode that cost anything
    assert rows["b"]["supporter_tokens"] == {"input": 60, "output": 6}
    [row] = csv.DictReader(io.StringIO(report_command(path, "csv", None, [], None, "a", None)))
    assert float(row["supporter_usd"]) == pytest.approx(A_USD) and float(row["per_episode_usd"]) == pytest.approx(a0)
    table = report_command(path, "table", None, [], None, None, None)
    assert "Supporter $" in table and f"${A_USD:.4f}" in table and "$ / episode" in table
    md = report_command(path, "md", None, [], None, None, None)
    assert "| Supporter $ | $ / episode |" in md and "- cost (USD" in md


def test_a_filtered_or_grouped_report_prices_only_its_episodes(tmp_path: Path) -> None:
    path = make(tmp_path)
    only_a = json.loads(report_command(path, "json", None, [], None, "a", None))["cost"]
    assert only_a["by_supporter"] == pytest.approx({"a": A_USD})
    assert only_a["total_usd"] == pytest.approx(usd(SEEKER, 100, 10) + A_USD + usd(JUDGE, 1000, 4) + SAFETY_USD)
    with Store.open(path, readonly=True) as store:
        cost = report_cost(store, build_report(store, by=("supporter", "language")))
    zh, en = cost.row({"supporter": "b", "language": "zh"}), cost.row({"supporter": "b", "language": "en"})
    assert zh is not None and en is not None
    assert zh.supporter_usd == 0 and zh.per_episode_usd is None   # b1: planned, nothing spent, no episode started
    assert en.supporter_usd == pytest.approx(B_USD)


def test_the_latest_recorded_prices_apply_to_the_whole_store(tmp_path: Path) -> None:
    """A resume records its config (prices are outside the fingerprint): the report prices every request with it."""
    path = make(tmp_path)
    raw = config()
    raw["supporters"][0]["price"] = {"input": 100.0, "output": 200.0}
    with Store.open(path) as store:
        store.set_meta(config=raw)
    with Store.open(path, readonly=True) as store:
        assert store_cost(store).data()["by_supporter"]["a"] == pytest.approx(usd((100.0, 200.0), 500, 50))


def test_render_without_cost_is_unchanged(tmp_path: Path) -> None:
    with Store.open(make(tmp_path), readonly=True) as store:
        report = build_report(store)
        assert "cost" not in json.loads(render(report, "json")) and "Supporter $" not in render(report, "table")


def test_an_old_store_without_judge_token_columns_reads_them_as_unknown(tmp_path: Path) -> None:
    from tests.runs.store.test_store import _old_store

    path = _old_store(tmp_path / "old.sqlite")
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:
        cost = store_cost(store)
    assert cost.unknown == {"judge": 3} and cost.data()["tokens"]["judge"] == {"input": 0, "output": 0}
    assert cost.data()["total_usd"] is None and not cost.priced    # its config (none recorded) has no prices
    assert path.read_bytes() == before


def test_the_viewer_shows_the_reports_costs_and_each_episodes(tmp_path: Path) -> None:
    from esc_eval.runs.viewer import data as viewer_data

    path = make(tmp_path)
    with Store.open(path, readonly=True) as store:
        summary = viewer_data.summary([(path, store)])
    expected = json.loads(report_command(path, "json", None, [], None, None, None, compare=True))
    overall = summary["stores"][0]["leaderboard"]["overall"]
    assert overall["cost"] == expected["cost"] and [r["cost"] for r in overall["rows"]] == [r["cost"] for r in expected["rows"]]
    by_language = json.loads(report_command(path, "json", None, ["supporter,language"], None, None, None))
    facet = summary["stores"][0]["leaderboard"]["facets"]["language"]["rows"]
    assert [(r["group"], r["cost"]) for r in facet] == [(r["group"], r["cost"]) for r in by_language["rows"]]
    episodes = {row["key"]: row["cost_usd"] for row in summary["stores"][0]["episodes"]}
    assert episodes["a0"] == pytest.approx(usd(SEEKER, 100, 10) + A_USD + usd(JUDGE, 1000, 4) + SAFETY_USD)
    assert episodes["b1"] == 0                              # planned, never started: nothing spent


def test_a_large_stores_costs_follow_its_first_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live viewer (``wait=False``) shows a large store's leaderboard before pricing it; then the same costs as waiting gives."""
    from esc_eval.runs.viewer import data as viewer_data

    path = make(tmp_path)
    for cache in ("_ROWS", "_CACHE", "_PENDING"):
        monkeypatch.setattr(viewer_data, cache, {})
    with Store.open(path, readonly=True) as store:
        waited = viewer_data.summary([(path, store)])["stores"][0]
        for cache in ("_ROWS", "_CACHE", "_PENDING"):
            getattr(viewer_data, cache).clear()
        monkeypatch.setattr(viewer_data, "LARGE_STORE", 0)
        first = viewer_data.summary([(path, store)], wait=False)["stores"][0]
        assert first["leaderboard"]["overall"]["cost_pending"] is True and "cost" not in first["leaderboard"]["overall"]
        assert all("cost" not in row for row in first["leaderboard"]["overall"]["rows"])
        assert {row["cost_usd"] for row in first["episodes"]} == {None}
        assert not viewer_data.ready(store) or viewer_data._PENDING[str(path)][2].done()
        viewer_data._PENDING[str(path)][2].result(timeout=60)
        assert viewer_data.ready(store)
        later = viewer_data.summary([(path, store)], wait=False)["stores"][0]
    assert "cost_pending" not in later["leaderboard"]["overall"]
    assert later["leaderboard"] == waited["leaderboard"] and later["episodes"] == waited["episodes"]
