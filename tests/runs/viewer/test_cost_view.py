"""The HTML report in headless Chromium shows each supporter's cost next to its scores, the run's cost and tokens, and an
episode's cost; without prices, tokens and no cost columns (docs/cost.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.runs.analysis.report import report_command
from tests.runs.analysis.test_cost import make
from tests.runs.viewer.report_page import report_page

pytestmark = pytest.mark.browser


def shown(tmp_path: Path, store: Path) -> tuple[list[str], dict[str, str], str, str]:
    """The leaderboard's headers, each supporter's cost cell, the cost line, and episode a0's outcome line."""
    with report_page(store, tmp_path / f"{store.stem}.html") as page:
        headers = page.locator("#leaderboard thead th").all_inner_texts()
        cells = {row.get_attribute("data-group") or "": row.get_by_test_id("supporter-cost").inner_text()
                 for row in page.locator("#leaderboard tbody tr").all() if row.get_by_test_id("supporter-cost").count()}
        line = page.get_by_test_id("cost").inner_text()
        page.locator('[data-id="0:a0"]').click()
        outcome = page.locator("#detail").get_by_test_id("outcome").inner_text()
    return [h.strip() for h in headers], cells, line, outcome


def test_the_report_page_shows_costs_next_to_the_scores(tmp_path: Path) -> None:
    store = make(tmp_path)
    cost = json.loads(report_command(store, "json", None, [], None, None, None))
    headers, cells, line, outcome = shown(tmp_path, store)
    assert headers[-2:] == ["supporter $", "$ / episode"] and "Overall" in headers
    assert cells == {name: f"${usd:.4f}" for name, usd in cost["cost"]["by_supporter"].items()}
    assert f"total ${cost['cost']['total_usd']:.4f}" in line and "seeker 140 / 14" in line and "estimated" in line
    a0 = next(r for r in cost["rows"] if r["group"]["supporter"] == "a")["cost"]["per_episode_usd"]
    assert outcome.endswith(f"${a0:.4f}")                   # a's one started episode is a0


def test_without_prices_the_page_shows_tokens_only(tmp_path: Path) -> None:
    headers, cells, line, outcome = shown(tmp_path, make(tmp_path, priced=False))
    assert "supporter $" not in headers and cells == {}
    assert line.startswith("no prices in the config: tokens only.") and "supporter 560 / 56" in line
    assert "$" not in outcome
