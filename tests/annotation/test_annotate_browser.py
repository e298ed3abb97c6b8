"""The annotation page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Install both with ``scripts/test-env.sh`` (apt chromium + pip playwright, no browser
download). The test starts ``esc-eval annotate`` as a real subprocess, labels two
dialogues with the keyboard, checks every label is in the store, reloads the page and
checks nothing was lost.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from runs.annotate import human_labels
from runs.store import Store
from tests.annotation.helpers import make_store

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
DIMENSIONS = ["fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall"]  # the default profile's

sync_api = pytest.importorskip("playwright.sync_api", reason="run scripts/test-env.sh (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip("run scripts/test-env.sh (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = make_store(tmp_path / "run.sqlite", count=2)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "runs.cli", "annotate", str(store), "--port", str(port), "--k", "1"],
                               cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert "open http://127.0.0.1" in line, line + (process.stdout.read() if process.poll() is not None else "")  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/", store
    finally:
        process.terminate()
        process.wait(timeout=10)


def _label_dialogue(page: object, labels: list[int]) -> str:
    episode = page.locator("body").get_attribute("data-episode")  # type: ignore[attr-defined]
    for value in labels:
        page.keyboard.press(str(value))  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('status').textContent === 'all labels saved'")  # type: ignore[attr-defined]
    return episode


def test_label_two_dialogues_and_reload(server: tuple[str, Path], tmp_path: Path) -> None:
    url, store_path = server
    first_labels, second_labels = [4, 3, 2, 1, 0, 1, 2], [0, 1, 2, 3, 4, 3, 2]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # Playwright gives it a new empty profile
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_test_id("name").fill("alice")
            page.get_by_test_id("name").press("Enter")
            page.wait_for_selector("#turns li")
            assert "0 complete" in page.get_by_test_id("progress").inner_text()
            assert "Dimension: fluency" in page.get_by_test_id("rubric").inner_text()   # the rubric beside the labels
            first = _label_dialogue(page, first_labels)
            assert "1 complete" in page.get_by_test_id("progress").inner_text()
            page.keyboard.press("n")
            page.wait_for_function(f"document.body.dataset.episode !== {first!r}")
            second = _label_dialogue(page, second_labels)
            assert {first, second} == {"bot/default/en-00000/imported/r0", "bot/default/en-00001/imported/r0"}
            assert "2 complete" in page.get_by_test_id("progress").inner_text()

            store = Store.open(store_path, readonly=True)          # committed as given, while the server runs
            try:
                saved = human_labels(store)
            finally:
                store.close_sync()
            assert saved[first] == {"alice": dict(zip(DIMENSIONS, first_labels))}
            assert saved[second] == {"alice": dict(zip(DIMENSIONS, second_labels))}

            page.reload()                                          # the name is remembered, the labels come back
            page.wait_for_selector("#turns li")
            assert re.search(r"dialogue [12]/2 · 2 complete", page.get_by_test_id("progress").inner_text())
            shown = page.locator("body").get_attribute("data-episode")
            expected = first_labels if shown == first else second_labels
            for dim, value in zip(DIMENSIONS, expected):
                assert page.get_by_test_id(f"label-{dim}-{value}").get_attribute("aria-pressed") == "true"
            page.keyboard.press("p" if shown == second else "n")
            other = first if shown == second else second
            page.wait_for_function(f"document.body.dataset.episode === {other!r}")
            for dim, value in zip(DIMENSIONS, first_labels if other == first else second_labels):
                assert page.get_by_test_id(f"label-{dim}-{value}").get_attribute("aria-pressed") == "true"
        finally:
            browser.close()
