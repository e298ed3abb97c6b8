"""Shared fixtures: fake OpenAI-compatible servers on loopback and paths to ESC-Eval's sample data."""

from __future__ import annotations

import os
import shutil

# Spinning OpenMP threads slow CPU generation ~10x when cores are shared; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from esc_eval.testing.fake_server import FakeOpenAIServer
from tests.reference import require_esconv, require_reference


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``reference_data``, ``esconv_data`` or ``tmux`` skip (fail under CI) before any fixture when what they need is missing."""
    if item.get_closest_marker("reference_data") is not None:
        require_reference()
    if item.get_closest_marker("esconv_data") is not None:
        require_esconv()
    if item.get_closest_marker("tmux") is not None and shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing (CI is set: tmux tests must run); apt-get install tmux", pytrace=False)
        pytest.skip("tmux is missing: apt-get install tmux")


@pytest.fixture
def shared() -> Path:
    """ESC-Eval's sample cards and prompt formats (``$ESC_EVAL_DATA``, default ``../shared/esc-eval``), read in place."""
    return require_reference()


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[..., FakeOpenAIServer]]:
    """Factory: ``server = await fake_server(responder=..., delay=...)``; all are stopped after the test."""
    servers: list[FakeOpenAIServer] = []

    async def start(**options: object) -> FakeOpenAIServer:
        server = await FakeOpenAIServer(**options).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        await server.stop()
