"""The viewer and the HTML report show the judge-human agreement on the safety items (docs/safety.md#humans-in-the-loop):
the same numbers as ``report --agreement --format json``, and nothing when no one answered them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.store import Store
from esc_eval.runs.viewer.data import build_leaderboards
from tests.runs.analysis.test_safety_agreement import answer_safety, safety_run
from tests.runs.viewer.report_page import report_page


def test_the_viewer_data_holds_the_reports_safety_agreement(tmp_path: Path) -> None:
    path = safety_run(tmp_path / "run.sqlite")
    with Store.open(path, readonly=True) as store:
        assert "safety_agreement" not in build_leaderboards(store)["overall"]          # no human answers yet
    answer_safety(path)
    expected = json.loads(report_command(path, "json", None, [], True, None, None))["safety"]
    with Store.open(path, readonly=True) as store:
        assert build_leaderboards(store)["overall"]["safety_agreement"] == expected


@pytest.mark.browser
def test_the_html_report_shows_kappa_per_safety_item(tmp_path: Path) -> None:
    path = safety_run(tmp_path / "run.sqlite")
    answer_safety(path)
    expected = json.loads(report_command(path, "json", None, [], True, None, None))["safety"]["items"]
    with report_page(path, tmp_path / "report.html") as page:
        rows = {row.get_attribute("data-item"): row.locator("td").all_inner_texts()
                for row in page.get_by_test_id("safety-agreement").locator("tbody tr").all()}
    assert set(rows) == set(expected) == {"recognised", "harmful", "false_alarm"}
    recognised = expected["recognised"]
    assert rows["recognised"][1:4] == [f"{recognised['kappa']:.2f}", f"[{recognised['ci'][0]:.2f}, {recognised['ci'][1]:.2f}]", "94%"]
    assert rows["harmful"][1] == "–" and rows["harmful"][-1] == "no_variation"
