"""The annotation page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Install both with ``scripts/test-env.sh`` (apt chromium + pip playwright, no browser
download). The tests start ``esc-eval annotate`` as a real subprocess and open the address
it prints (with its token): one labels two dialogues with the keyboard, checks every label
is in the store, reloads the page and checks nothing was lost; one checks that dialogue
text holding HTML shows as text and runs nothing, and that without the token the page
gets no dialogue.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from esc_eval.runs.analysis.agreement import human_labels
from esc_eval.runs.annotation.server import item_ids
from esc_eval.runs.store import Store
from esc_eval.testing.cli import served_address
from tests.runs.annotation.helpers import DIALOGUES, make_store

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
DIMENSIONS = ["fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall"]  # the default profile's

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="run scripts/test-env.sh (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip("run scripts/test-env.sh (apt-get install chromium)", allow_module_level=True)


HOSTILE = (("supporter", "<script>window.pwned = 1</script>Hello <b>there</b>"),
           ("seeker", '<img src=x onerror="window.pwned = 2">I feel low.'))


def _serve(store: Path) -> Iterator[str]:
    """Run ``esc-eval annotate STORE`` and yield the address it prints (which carries the token)."""
    yield from served_address("annotate", str(store), "--k", "1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = make_store(tmp_path / "run.sqlite", count=2)
    for url in _serve(store):
        yield url, store


def _label_dialogue(page: object, labels: list[int]) -> str:
    item = page.locator("body").get_attribute("data-item")  # type: ignore[attr-defined]
    for value in labels:
        page.keyboard.press(str(value))  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_test_id("status")).to_have_text("all labels saved")  # type: ignore[attr-defined]
    return item


def test_label_two_dialogues_and_reload(server: tuple[str, Path], tmp_path: Path) -> None:
    url, store_path = server
    first_labels, second_labels = [4, 3, 2, 1, 0, 1, 2], [0, 1, 2, 3, 4, 3, 2]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # Playwright gives it a new empty profile
        try:
            page = browser.new_page()                              # under the page's Content-Security-Policy
            blocked: list[str] = []
            page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None)
            page.goto(url)
            page.get_by_test_id("name").fill("alice")
            page.get_by_test_id("name").press("Enter")
            page.wait_for_selector("#turns li")
            assert "0 complete" in page.get_by_test_id("progress").inner_text()
            assert re.fullmatch(r"item [0-9a-f]{12} · en", page.get_by_test_id("meta").inner_text())   # blind: no supporter
            assert "Dimension: fluency" in page.get_by_test_id("rubric").inner_text()   # the rubric beside the labels
            first = _label_dialogue(page, first_labels)
            assert "1 complete" in page.get_by_test_id("progress").inner_text()
            page.keyboard.press("n")
            sync_api.expect(page.locator("body")).not_to_have_attribute("data-item", first)
            second = _label_dialogue(page, second_labels)
            assert "2 complete" in page.get_by_test_id("progress").inner_text()

            store = Store.open(store_path, readonly=True)          # committed as given, while the server runs
            try:
                saved = human_labels(store)
                keys = {item: key for key, item in item_ids(store).items()}
            finally:
                store.close_sync()
            assert {keys[first], keys[second]} == {"bot/default/en-00000/imported/r0", "bot/default/en-00001/imported/r0"}
            assert saved[keys[first]] == {"alice": dict(zip(DIMENSIONS, first_labels))}
            assert saved[keys[second]] == {"alice": dict(zip(DIMENSIONS, second_labels))}

            page.reload()                                          # the name is remembered, the labels come back
            page.wait_for_selector("#turns li")
            assert re.search(r"dialogue [12]/2 · 2 complete", page.get_by_test_id("progress").inner_text())
            shown = page.locator("body").get_attribute("data-item")
            expected = first_labels if shown == first else second_labels
            for dim, value in zip(DIMENSIONS, expected):
                assert page.get_by_test_id(f"label-{dim}-{value}").get_attribute("aria-pressed") == "true"
            page.keyboard.press("p" if shown == second else "n")
            other = first if shown == second else second
            sync_api.expect(page.locator("body")).to_have_attribute("data-item", other)
            for dim, value in zip(DIMENSIONS, first_labels if other == first else second_labels):
                assert page.get_by_test_id(f"label-{dim}-{value}").get_attribute("aria-pressed") == "true"
            assert blocked == []                                   # the page needs nothing its CSP forbids
        finally:
            browser.close()


def test_dialogue_text_is_shown_as_text_and_the_token_is_required(tmp_path: Path) -> None:
    store = make_store(tmp_path / "run.sqlite", count=1, dialogues=[HOSTILE + DIALOGUES[0]])
    for url in _serve(store):
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(bypass_csp=True)           # so the escaping alone must keep scripts from running
                page.goto(url.split("?")[0])                        # no token: the page loads, the API refuses
                page.get_by_test_id("name").fill("eve")
                page.get_by_test_id("name").press("Enter")
                sync_api.expect(page.get_by_test_id("status")).to_contain_text("token")
                assert page.locator("#turns li").count() == 0

                page.goto(url)
                page.wait_for_selector("#turns li")
                turns = page.locator("#turns li")
                assert "<script>window.pwned = 1</script>Hello <b>there</b>" in turns.nth(0).inner_text()
                assert '<img src=x onerror="window.pwned = 2">I feel low.' in turns.nth(1).inner_text()
                assert page.locator("#turns script, #turns img, #turns li > b + b").count() == 0
                assert page.evaluate("window.pwned") is None
            finally:
                browser.close()


@pytest.mark.slow
def test_safety_items_with_the_keyboard(tmp_path: Path) -> None:
    """A risk dialogue lists its safety items after the dimensions (1 yes, 0 no), marks the disclosing line, and shows
    none of the judge's answers; the answers go to the safety table, the dimension labels to theirs."""
    from esc_eval.runs.store import safety as safety_store
    from tests.runs.annotation.test_safety_labels import JUDGE_MARK, judged

    store_path = judged(make_store(tmp_path / "run.sqlite", count=1))        # dialogue 0: a risk episode, disclosed on line 1
    for url in _serve(store_path):
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                page.goto(url)
                page.get_by_test_id("name").fill("alice")
                page.get_by_test_id("name").press("Enter")
                page.wait_for_selector("#turns li")
                assert page.locator("#turns li.disclosure").count() == 1 and "useless" in page.locator("#turns li.disclosure").inner_text()
                assert page.locator("#dims li.safety").count() == 5 and JUDGE_MARK not in page.content()
                assert all(page.get_by_test_id(f"safety-{item}-{answer}").get_attribute("aria-pressed") == "false"
                           for item in ("recognised", "harmful") for answer in ("yes", "no"))  # the judge said yes: not shown
                for value in [2, 2, 2, 2, 2, 2, 2, 1, 0, 0, 1, 0]:                   # 7 dimensions, then 5 safety items
                    page.keyboard.press(str(value))
                sync_api.expect(page.get_by_test_id("status")).to_have_text("all labels saved")
                assert "1 complete" in page.get_by_test_id("progress").inner_text()
                store = Store.open(store_path, readonly=True)
                try:
                    answers = {row.item: row.value for row in safety_store.labels(store)}
                    dimensions = human_labels(store)
                finally:
                    store.close_sync()
                assert answers == {"recognised": True, "asked_directly": False, "resources": False, "encouraged_help": True,
                                   "harmful": False}
                assert list(dimensions.values()) == [{"alice": dict.fromkeys(DIMENSIONS, 2)}]
                page.reload()                                                    # the answers come back
                page.wait_for_selector("#turns li")
                assert page.get_by_test_id("safety-recognised-yes").get_attribute("aria-pressed") == "true"
                assert page.get_by_test_id("safety-asked_directly-no").get_attribute("aria-pressed") == "true"
            finally:
                browser.close()
