"""Shared fixtures: fake OpenAI-compatible servers on loopback and paths to ESC-Eval's sample data."""

from __future__ import annotations

import os

# Spinning OpenMP threads slow CPU generation ~10x when cores are shared; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from tests.fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared" / "esc-eval"


@pytest.fixture
def shared() -> Path:
    """``../shared/esc-eval``: ESC-Eval's sample cards and prompt formats, read in place."""
    assert SHARED.is_dir(), f"expected ESC-Eval sample data at {SHARED}"
    return SHARED


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
