"""Headless Chromium for the browser tests: the one browser setting, and the HTML report opened from disk, offline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esc_eval.runs.cli import main

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def browser_or_skip() -> Any:
    """``playwright.sync_api``, or a skip that says how to install the browser."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="run scripts/test-env.sh (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("run scripts/test-env.sh (apt-get install chromium)")
    return sync_api


@contextlib.contextmanager
def report_page(store: Path, out: Path) -> Iterator[Any]:
    """``esc-eval report STORE --format html --out OUT``, opened from disk with no network, once its script is ready."""
    sync_api = browser_or_skip()
    assert main(["report", str(store), "--format", "html", "--out", str(out)]) == 0
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_context(offline=True).new_page()
            page.goto(out.as_uri())
            sync_api.expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
            yield page
        finally:
            browser.close()
