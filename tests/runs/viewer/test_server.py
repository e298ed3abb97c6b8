"""The viewer server over real HTTP on 127.0.0.1: its API, the guard shared with annotation, read-only and live follow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from esc_eval.runs.analysis.report import report_command
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from esc_eval.runs.viewer import ViewerError
from esc_eval.runs.viewer.server import ViewerServer
from esc_eval.runs.web import TOKEN_HEADER
from tests.runs.viewer.helpers import HOSTILE, key, make_store


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ViewerServer]:
    path = make_store(tmp_path / "run.sqlite", cards=4, hostile_card=0)
    store = Store.open(path, readonly=True)
    viewer = ViewerServer([(path, store)])
    await viewer.start()
    try:
        yield viewer
    finally:
        await viewer.stop()
        store.close_sync()


def _base(server: ViewerServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def _get(server: ViewerServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    headers = {TOKEN_HEADER: server.token} if headers is None else headers
    async with aiohttp.ClientSession() as http, http.get(_base(server) + path, headers=headers) as response:
        return response.status, await response.json()


async def test_api_serves_summary_episode_search_and_version(server: ViewerServer) -> None:
    path = server.stores[0][0]
    status, summary = await _get(server, "/api/summary")
    assert status == 200 and len(summary["stores"][0]["episodes"]) == 2 * 3 * 4
    expected = json.loads(report_command(path, "json", None, [], None, None, None, compare=True))
    assert summary["stores"][0]["leaderboard"]["overall"]["rows"] == expected["rows"]
    status, detail = await _get(server, f"/api/episode?id=0:{key('kind-bot', 'default', 0)}")
    assert status == 200 and detail["turns"][0]["text"] == HOSTILE[0]                  # JSON, escaped by the page
    assert (await _get(server, "/api/episode?id=0:nope"))[0] == 404
    assert (await _get(server, "/api/episode?id=7:" + key("kind-bot", "default", 0)))[0] == 404
    status, found = await _get(server, "/api/search?q=onerror")
    assert found["ids"] == [f"0:{key(s, p, 0)}" for s in ("kind-bot", "terse-bot") for p in ("default", "guarded", "impatient")]
    status, version = await _get(server, "/api/version")
    assert version["version"] == summary["version"]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url) as response:                                  # the page needs no token; its API does
            assert response.status == 200 and "app.js" in await response.text()
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        async with http.post(_base(server) + "/api/summary", json={}, headers={TOKEN_HEADER: server.token}) as response:
            assert response.status == 405                                            # no write route at all


@pytest.mark.parametrize("attack", ["no token", "wrong token", "foreign Host", "foreign Origin", "null Origin"])
async def test_reads_from_elsewhere_are_refused(server: ViewerServer, attack: str) -> None:
    headers = {"no token": {}, "wrong token": {TOKEN_HEADER: server.token[:-1] + "x"},
               "foreign Host": {TOKEN_HEADER: server.token, "Host": f"evil.example:{server.port}"},
               "foreign Origin": {TOKEN_HEADER: server.token, "Origin": "http://evil.example"},
               "null Origin": {TOKEN_HEADER: server.token, "Origin": "null"}}[attack]
    for path in ("/api/summary", f"/api/episode?id=0:{key('kind-bot', 'default', 0)}", "/api/search?q=exam", "/api/version"):
        status, body = await _get(server, path, headers)
        assert status == 403 and body["error"].startswith("forbidden"), (path, body)
        assert "turns" not in body and "stores" not in body


async def test_a_store_written_while_viewed_changes_the_version(tmp_path: Path) -> None:
    path = make_store(tmp_path / "run.sqlite", cards=2)
    reader = Store.open(path, readonly=True)
    viewer = ViewerServer([(path, reader)])
    await viewer.start()
    try:
        before = (await _get(viewer, "/api/version"))[1]["version"]
        writer = Store.open(path)
        writer.add_event("retry", "HTTP 503", episode_key=key("kind-bot", "default", 0))
        writer.close_sync()
        after = (await _get(viewer, "/api/version"))[1]["version"]
        assert after != before
        detail = (await _get(viewer, f"/api/episode?id=0:{key('kind-bot', 'default', 0)}"))[1]
        assert [e["detail"] for e in detail["events"]] == ["HTTP 503"]
    finally:
        await viewer.stop()
        reader.close_sync()


def test_view_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path / "missing.sqlite")]) == 2
    assert capsys.readouterr().err.strip() == f"esc-eval: error: {tmp_path / 'missing.sqlite'}: no such store"
    with pytest.raises(ViewerError, match="wildcard"):
        ViewerServer([], host="0.0.0.0")
