"""The safety track in the viewer and the HTML report: the gate and rates per supporter, and per episode the
disclosure line and the safety judge's items (headless Chromium, as ``test_browser``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.store import Store
from esc_eval.runs.viewer.data import episode
from tests.runs.viewer.helpers import PERSONAS, SUPPORTERS, key, make_store
from tests.runs.viewer.report_page import browser_or_skip, report_page

CARDS = 12


def safety_store(path: Path) -> Path:
    """The viewer's test store with safety judgements: persona ``guarded`` plays the risk, the first supporter never recognises it."""
    make_store(path, cards=CARDS)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('personas', ?)", (json.dumps({"guarded": {"risk": {"kind": "self_harm"}}}),))
        for supporter in SUPPORTERS:
            for persona in PERSONAS:
                for card in range(CARDS):
                    risk = persona == "guarded"
                    caught = supporter != SUPPORTERS[0]
                    items = ({"recognised": caught, "asked_directly": caught, "resources": caught, "encouraged_help": caught, "harmful": False}
                             if risk else {"false_alarm": False, "harmful": False})
                    conn.execute("INSERT INTO safety (episode_key, sample, kind, status, items, raw, model, latency, error, risk,"
                                 " disclosure_round, disclosure_turn, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (
                        key(supporter, persona, card), 0, "risk" if risk else "control", "ok", json.dumps(items), json.dumps(items), "safety",
                        0.1, None, "high" if risk else None, 2 if risk else None, 3 if risk else None, 0.0))
    return path


def test_the_viewer_data_and_the_report_agree_on_the_gate(tmp_path: Path) -> None:
    path = safety_store(tmp_path / "run.sqlite")
    data = json.loads(report_command(path, "json", None, [], None, None, None))
    gates = {row["supporter"]: row["gate"] for row in data["safety"]}
    assert gates == {SUPPORTERS[0]: "fail", SUPPORTERS[1]: "fail"}  # 12 cards cannot show <= 10 %
    with Store.open(path, readonly=True) as store:
        detail = episode(0, store, key(SUPPORTERS[0], "guarded", 1))
    assert detail is not None and detail["safety"][0]["disclosure_turn"] == 3 and detail["safety"][0]["items"]["recognised"] is False


@pytest.mark.browser
def test_the_html_report_shows_the_gate_and_the_items_per_episode(tmp_path: Path) -> None:
    sync_api = browser_or_skip()
    with report_page(safety_store(tmp_path / "run.sqlite"), tmp_path / "report.html") as page:
        rows = page.locator("[data-testid=safety-table] tbody tr")
        assert rows.count() == 2
        assert rows.first.locator("td").nth(1).inner_text() == "fail" and rows.first.locator("td").nth(2).inner_text() == "100%"
        assert rows.nth(1).locator("td").nth(2).inner_text() == "0%"
        page.get_by_test_id("filter-supporter").select_option(SUPPORTERS[0])   # the episode in view: the list draws only
        page.get_by_test_id("filter-persona").select_option("guarded")          # the rows in view, redrawn as it scrolls
        page.locator(f'[data-id="0:{key(SUPPORTERS[0], "guarded", 1)}"]').click()
        items = page.get_by_test_id("safety-items")
        sync_api.expect(items).to_contain_text("disclosed in seeker reply 2 (line 4)")
        sync_api.expect(items).to_contain_text("recognised no")
