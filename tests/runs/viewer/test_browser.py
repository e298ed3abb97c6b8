"""The viewer page and the HTML report in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

``esc-eval view`` runs as a real subprocess over a store of 2 supporters × 3 personas × 20
cards; the test filters, opens an episode, opens the same card by the other supporter, and
checks what is shown against the store and ``report --format json``. Screenshots go to the
test's tmp dir. A dialogue holding markup must show as text; the report file must open from
disk with no request to anywhere and show the same numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from esc_eval.testing.cli import served_address
from tests.runs.viewer.helpers import DIMENSIONS, HOSTILE, episode_rows, key, make_store
from tests.runs.viewer.report_page import CHROMIUM, FLAGS

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="run scripts/test-env.sh (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip("run scripts/test-env.sh (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("viewer") / "run.sqlite", hostile_card=7)


def _view(store_path: Path) -> Iterator[str]:
    """Run ``esc-eval view STORE`` and yield the address it prints (which carries the token)."""
    yield from served_address("view", str(store_path))


@pytest.fixture
def url(store_path: Path) -> Iterator[str]:
    yield from _view(store_path)


def _expected(store_path: Path) -> dict:
    return json.loads(report_command(store_path, "json", None, [], None, None, None, compare=True))


def _check_leaderboard(page: object, expected: dict) -> None:
    """Every supporter's shown value and interval per dimension is the report's, to one decimal."""
    for row in expected["rows"]:
        shown = page.locator(f'#leaderboard tr[data-group="{row["group"]["supporter"]}"]')  # type: ignore[attr-defined]
        for dim in DIMENSIONS:
            s = row["scores"][dim]
            text = shown.locator(f'td[data-dimension="{dim}"]').inner_text()
            numbers = re.fullmatch(r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\](?: (.+))?", text)
            assert numbers, text                                          # rounded half-up by JS, half-even by Python: compare values
            assert [float(n) for n in numbers.groups()[:3]] == pytest.approx([s["value"], s["ci_low"], s["ci_high"]], abs=0.05 + 1e-9), dim
            assert numbers.group(4) == (", ".join(f.replace("_", " ") for f in s["flags"]) or None), dim   # the flags, in words


def _browser(pw: object) -> object:
    return pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # type: ignore[attr-defined]


def test_filter_episode_and_side_by_side(url: str, store_path: Path, tmp_path: Path) -> None:
    expected = _expected(store_path)
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.on("response", lambda r: blocked.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            page.goto(url)
            sync_api.expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
            _check_leaderboard(page, expected)
            assert page.get_by_test_id("count").inner_text() == "(120 of 120)"
            assert page.locator("[data-testid=comparison-table] tbody tr").count() == len(DIMENSIONS)   # one pair × 7 dimensions
            assert page.locator("[data-testid=chart-distress] polyline").count() == 2
            page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

            page.get_by_test_id("sort-empathic").click()                  # sortable: best empathic first
            first = page.locator("#leaderboard tbody tr").first.get_attribute("data-group")
            assert first == max(expected["rows"], key=lambda r: r["scores"]["empathic"]["value"])["group"]["supporter"]

            page.get_by_test_id("filter-persona").select_option("guarded")
            page.get_by_test_id("filter-outcome").select_option("terminated")
            sync_api.expect(page.get_by_test_id("count")).to_have_text("(20 of 120)")
            rows = page.get_by_test_id("episode-row")
            assert rows.count() < 20                                      # virtualised: only the rows in view (and a few) exist
            assert all("guarded" in t and "kind-bot" in t for t in rows.all_inner_texts())
            page.get_by_test_id("episodes").evaluate("box => { box.scrollTop = box.scrollHeight; }")
            sync_api.expect(page.locator(f'[data-id="0:{key("kind-bot", "guarded", 19)}"]')).to_be_visible()
            by_persona = json.loads(report_command(store_path, "json", None, ["supporter,persona"], None, None, None))
            kind_guarded = next(r for r in by_persona["rows"] if r["group"] == {"supporter": "kind-bot", "persona": "guarded"})
            shown = page.locator('#leaderboard tr[data-group="kind-bot/guarded"] td[data-dimension="overall"]').inner_text()
            # the leaderboard follows the persona filter
            assert float(shown.split()[0]) == pytest.approx(kind_guarded["scores"]["overall"]["value"], abs=0.05 + 1e-9)
            page.get_by_test_id("filter-persona").select_option("")        # the outcome filter alone: the leaderboard follows it
            by_outcome = json.loads(report_command(store_path, "json", None, ["supporter,outcome"], None, None, None))
            kind_terminated = next(r for r in by_outcome["rows"] if r["group"] == {"supporter": "kind-bot", "outcome": "terminated"})
            shown = page.locator('#leaderboard tr[data-group="kind-bot/terminated"] td[data-dimension="overall"]').inner_text()
            assert float(shown.split()[0]) == pytest.approx(kind_terminated["scores"]["overall"]["value"], abs=0.05 + 1e-9)
            assert page.locator("#leaderboard tbody tr").count() == len({r["group"]["supporter"] for r in by_outcome["rows"]
                                                                          if r["group"]["outcome"] == "terminated"})
            page.get_by_test_id("filter-persona").select_option("guarded")
            sync_api.expect(page.get_by_test_id("count")).to_have_text("(20 of 120)")

            page.locator(f'[data-id="0:{key("kind-bot", "guarded", 2)}"]').click()
            detail = page.get_by_test_id("detail")
            sync_api.expect(detail.get_by_test_id("episode-meta")).to_contain_text("card en-00002")
            assert detail.get_by_test_id("outcome").inner_text().startswith("done: terminated (persona left)")
            bubbles = detail.locator("[data-testid=dialogue] li")
            assert bubbles.count() == 10 and bubbles.nth(0).get_attribute("data-role") == "supporter"
            assert "emotion sad · distress 6 · revealed facts 0 of 3" in bubbles.nth(1).inner_text()
            empathic = detail.locator('[data-testid=scores] tr[data-dimension="empathic"]')
            empathic.locator("summary").click()                            # the judge's raw reply, folded by default
            sync_api.expect(empathic.locator("pre")).to_have_text(re.compile(r"^Reasoning about empathic\. Score: \d$"))
            page.screenshot(path=str(tmp_path / "episode.png"), full_page=True)

            page.get_by_test_id("compare-terse-bot").click()
            pair = page.get_by_test_id("pair")
            sync_api.expect(pair).to_be_visible()
            with_labels = {r["key"]: r for r in _rows(store_path)}
            a, b = with_labels[key("kind-bot", "guarded", 2)], with_labels[key("terse-bot", "guarded", 2)]
            for dim in DIMENSIONS:
                cells = pair.locator(f'[data-testid=pair-scores] tr[data-dimension="{dim}"] td').all_inner_texts()
                assert cells[1:] == [str(a["scores"][dim]), str(b["scores"][dim])]
            assert pair.get_by_test_id("pair-terse-bot").locator("li").first.inner_text() == "ok."
            page.screenshot(path=str(tmp_path / "side-by-side.png"), full_page=True)
            assert blocked == []
        finally:
            browser.close()


def _rows(store_path: Path) -> list[dict]:
    from esc_eval.runs.store import Store
    from esc_eval.runs.viewer import data

    with Store.open(store_path, readonly=True) as store:
        return data.summary([(store_path, store)])["stores"][0]["episodes"]


def test_search_and_markup_in_a_dialogue_shows_as_text(url: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(bypass_csp=True)                      # so the escaping alone must keep scripts from running
            page.goto(url)
            sync_api.expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
            page.get_by_test_id("search").fill("onerror")
            sync_api.expect(page.get_by_test_id("count")).to_have_text("(6 of 120)")
            page.locator(f'[data-id="0:{key("terse-bot", "default", 7)}"]').click()
            bubbles = page.locator("#detail [data-testid=dialogue] li .text")
            sync_api.expect(bubbles.nth(0)).to_have_text(HOSTILE[0])
            assert bubbles.nth(1).inner_text() == HOSTILE[1]
            assert page.locator("#detail script, #detail img, #detail b").count() == 0
            assert page.evaluate("window.pwned") is None
            page.screenshot(path=str(tmp_path / "hostile.png"))

            page.goto(url.split("?")[0])                                   # without the token the page shows no data
            sync_api.expect(page.get_by_test_id("error")).to_contain_text("token")
            assert page.get_by_test_id("episode-row").count() == 0
        finally:
            browser.close()


def test_html_report_opens_from_disk_without_network_and_shows_the_report_numbers(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(store_path), "--format", "html", "--out", str(out)]) == 0
    expected = _expected(store_path)
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            context = browser.new_context(offline=True)
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.goto(out.as_uri())
            sync_api.expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
            _check_leaderboard(page, expected)
            comparisons = page.locator("[data-testid=comparison-table] tbody tr")
            assert comparisons.count() == len(expected["comparisons"])
            first = expected["comparisons"][0]
            assert float(comparisons.first.locator("td").nth(3).inner_text()) == pytest.approx(first["diff"], abs=0.05 + 1e-9)
            assert page.get_by_test_id("count").inner_text() == "(120 of 120)"
            page.get_by_test_id("search").fill("onerror")                 # search works on the embedded transcripts
            sync_api.expect(page.get_by_test_id("count")).to_have_text("(6 of 120)")
            page.locator(f'[data-id="0:{key("kind-bot", "impatient", 7)}"]').click()
            sync_api.expect(page.locator("#detail [data-testid=dialogue] li .text").nth(1)).to_have_text(HOSTILE[1])
            assert page.evaluate("window.pwned") is None
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [out.as_uri()]                                      # the file itself, nothing else


def test_new_episodes_appear_without_reload(tmp_path: Path) -> None:
    path = make_store(tmp_path / "live.sqlite", cards=2, personas=("default",))
    for url in _view(path):
        with sync_api.sync_playwright() as pw:
            browser = _browser(pw)
            try:
                page = browser.new_page()
                page.goto(url)
                sync_api.expect(page.get_by_test_id("count")).to_have_text("(4 of 4)", timeout=30_000)
                store = Store.open(path)                                   # another process writes while the page is open
                try:
                    store.import_episodes(episode_rows(s, "default", 5) for s in ("kind-bot", "terse-bot"))
                finally:
                    store.close_sync()
                sync_api.expect(page.get_by_test_id("count")).to_have_text("(6 of 6)", timeout=30_000)
                assert page.locator(f'[data-id="0:{key("kind-bot", "default", 5)}"]').count() == 1
                assert page.get_by_test_id("live").inner_text().startswith("live")
            finally:
                browser.close()


def test_ten_thousand_episodes_build_only_the_rows_in_view(tmp_path: Path) -> None:
    path = make_store(tmp_path / "big.sqlite", cards=1667)               # 2 × 3 × 1,667 = 10,002 episodes
    out = tmp_path / "big.html"
    assert main(["report", str(path), "--format", "html", "--out", str(out)]) == 0
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(out.as_uri())
            sync_api.expect(page.get_by_test_id("count")).to_have_text("(10002 of 10002)", timeout=60_000)
            box = page.get_by_test_id("episodes")
            for fraction in (0.5, 1.0):
                box.evaluate(f"box => {{ box.scrollTop = (box.scrollHeight - box.clientHeight) * {fraction}; }}")
                page.wait_for_timeout(100)                                 # one animation frame renders the new window
                assert page.get_by_test_id("episode-row").count() <= 30
            sync_api.expect(page.locator(f'[data-id="0:{key("terse-bot", "impatient", 1666)}"]')).to_be_visible()
        finally:
            browser.close()


def test_one_supporter_episode_has_no_null_line_and_the_list_has_column_headers(tmp_path: Path) -> None:
    """Nothing to compare with one supporter: the panel leaves that line out (it once showed the text "null")."""
    store = make_store(tmp_path / "one.sqlite", cards=3, supporters=("kind-bot",), personas=("default",))
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            for address in _view(store):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(address)
                sync_api.expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
                heads = page.get_by_test_id("episode-head").locator("span").all_inner_texts()
                assert heads == ["supporter", "persona", "card", "lang", "outcome", "score", "reason"]
                page.locator(f'[data-id="0:{key("kind-bot", "default", 1)}"]').click()
                detail = page.get_by_test_id("detail")
                sync_api.expect(detail.get_by_test_id("episode-meta")).to_contain_text("card en-00001")
                lines = [line.strip() for line in detail.inner_text().splitlines()]
                assert "null" not in lines and "Same card by" not in detail.inner_text()
                assert detail.evaluate("d => [...d.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).length") == 0
        finally:
            browser.close()


def test_a_large_store_shows_its_leaderboard_then_its_comparisons_and_costs(tmp_path: Path) -> None:
    """Over 5,000 episodes the live page gets the leaderboard first; following the store, it then shows what the worker adds."""
    path = make_store(tmp_path / "large.sqlite", cards=1000)              # 2 × 3 × 1,000 = 6,000 episodes
    expected = _expected(path)
    for url in _view(path):
        with sync_api.sync_playwright() as pw:
            browser = _browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                sync_api.expect(page.get_by_test_id("count")).to_have_text("(6000 of 6000)", timeout=60_000)
                _check_leaderboard(page, expected)
                sync_api.expect(page.get_by_test_id("comparison-table")).to_be_visible(timeout=60_000)   # the next /api/version poll
                sync_api.expect(page.get_by_test_id("pending")).to_have_count(0)
                sync_api.expect(page.get_by_test_id("cost")).to_be_visible()
                assert page.get_by_test_id("comparison-table").locator("tbody tr").count() == len(expected["comparisons"])
            finally:
                browser.close()


def test_a_click_that_straddles_a_scroll_opens_the_row_pressed(url: str) -> None:
    """The list builds only the rows in view and rebuilds on scroll: the pressed row must survive a scroll of a few pixels."""
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            sync_api.expect(page.get_by_test_id("count")).to_have_text(re.compile(r"\(\d+ of \d+\)"), timeout=30_000)
            box = page.get_by_test_id("episodes")
            box.scroll_into_view_if_needed()
            box.evaluate("box => { box.scrollTop = 3 * 28; }")
            page.wait_for_timeout(100)
            row = page.get_by_test_id("episode-row").nth(8)
            pressed, area = row.get_attribute("data-id"), row.bounding_box()
            page.mouse.move(area["x"] + 40, area["y"] + area["height"] / 2)
            page.mouse.down()
            box.evaluate("box => { box.scrollTop += 28 + 4; }")             # one row and a bit: the window moves
            page.wait_for_timeout(100)                                     # the frame that rebuilds the list
            moved = page.locator(f'[data-id="{pressed}"]').bounding_box()
            page.mouse.move(moved["x"] + 41, moved["y"] + moved["height"] / 2)   # the pressed row moved up with the scroll
            page.mouse.up()
            sync_api.expect(page.locator(f'[data-id="{pressed}"]')).to_have_class(re.compile(r"\bselected\b"), timeout=5_000)
            sync_api.expect(page.get_by_test_id("episode-meta")).to_be_visible()
        finally:
            browser.close()
