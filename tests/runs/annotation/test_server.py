"""The annotation server over real HTTP on 127.0.0.1: the token, Host and Origin checks, and blinding.

Each attack is a request a hostile web page (or a DNS-rebinding one) could make; each must
get 403 and leave the store's labels unchanged, while the same request with the token, the
bound Host and a JSON body is accepted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from esc_eval.agents.judge.profiles import load_profile
from esc_eval.runs.analysis.agreement import human_labels
from esc_eval.runs.annotation.labels import AnnotationError, assignment
from esc_eval.runs.annotation.server import TOKEN_HEADER, AnnotationServer, item_ids
from esc_eval.runs.cli import main
from esc_eval.runs.store import Store
from tests.runs.annotation.helpers import annotation_server, base, good, key, make_store

SUPPORTER = "secret-model-7b"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AnnotationServer]:
    async with annotation_server(make_store(tmp_path / "run.sqlite", supporter=SUPPORTER)) as annotation:
        yield annotation


async def _post_label(http: aiohttp.ClientSession, server: AnnotationServer, body: dict[str, Any], headers: dict[str, str],
                      *, content_type: str = "application/json") -> aiohttp.ClientResponse:
    async with http.post(base(server) + "/api/label", data=json.dumps(body),
                         headers={"Content-Type": content_type, **headers}) as response:
        await response.read()
        return response


async def test_the_page_and_api_work_with_the_token(server: AnnotationServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url) as response:                   # the page itself needs no token
            assert response.status == 200 and "app.js" in await response.text()
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(base(server) + "/api/session?annotator=ann", headers=good(server)) as response:
            assert response.status == 200
            session = await response.json()
        item = session["queue"][0]["item"]
        body = {"annotator": "ann", "item": item, "dimension": "fluency", "label": 3}
        same_origin = {**good(server), "Origin": base(server)}       # what the page's fetch sends
        assert (await _post_label(http, server, body, same_origin)).status == 200
        async with http.get(base(server) + f"/api/episode?item={item}&annotator=ann",
                            headers={**good(server), "Host": f"localhost:{server.port}"}) as response:
            assert response.status == 200                              # localhost names the loopback address too
            assert (await response.json())["labels"] == {"fluency": 3}
    by_key = {i: k for k, i in item_ids(server.store).items()}
    assert human_labels(server.store) == {by_key[item]: {"ann": {"fluency": 3}}}


@pytest.mark.parametrize("attack", ["no token", "wrong token", "foreign Host", "foreign Origin", "null Origin", "text/plain body"])
async def test_label_writes_from_elsewhere_are_refused(server: AnnotationServer, attack: str) -> None:
    item = next(iter(item_ids(server.store).values()))
    body = {"annotator": "mallory", "item": item, "dimension": "fluency", "label": 0}
    headers = {"no token": {}, "wrong token": {TOKEN_HEADER: server.token[:-1] + "x"},
               "foreign Host": {**good(server), "Host": f"evil.example:{server.port}"},
               "foreign Origin": {**good(server), "Origin": "http://evil.example"},
               "null Origin": {**good(server), "Origin": "null"},
               "text/plain body": good(server)}[attack]
    content_type = "text/plain" if attack == "text/plain body" else "application/json"
    async with aiohttp.ClientSession() as http:
        response = await _post_label(http, server, body, headers, content_type=content_type)
    assert response.status == 403
    assert server.store.annotations() == []


@pytest.mark.parametrize("attack", ["no token", "foreign Host"])
async def test_transcripts_are_not_readable_from_elsewhere(server: AnnotationServer, attack: str) -> None:
    """DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends its own name as Host."""
    item = next(iter(item_ids(server.store).values()))
    headers = {} if attack == "no token" else {**good(server), "Host": f"evil.example:{server.port}"}
    async with aiohttp.ClientSession() as http:
        for path in (f"/api/episode?item={item}&annotator=a", "/api/session?annotator=a"):
            async with http.get(base(server) + path, headers=headers) as response:
                text = await response.text()
                assert response.status == 403, path
                assert "useless" not in text and "forbidden" in text
        async with http.get(base(server) + "/", headers={"Host": f"evil.example:{server.port}"}) as response:
            assert response.status == 403


async def test_blind_by_default(server: AnnotationServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/session?annotator=ann", headers=good(server)) as response:
            text = await response.text()
        items = json.loads(text)["queue"]
        async with http.get(base(server) + f"/api/episode?item={items[0]['item']}&annotator=ann", headers=good(server)) as response:
            episode = await response.text()
    assert len(items) == 4 and all(set(i) == {"item", "language", "labels"} for i in items)
    assert set(json.loads(episode)) == {"item", "language", "transcript", "labels"}
    for shown in (text, episode):
        assert SUPPORTER not in shown and "imported" not in shown   # neither the supporter nor the episode key
    assert [i["item"] for i in items] == [item_ids(server.store)[k] for k in assignment(server.store, "ann", 2)]


async def test_unblind_shows_who_made_the_dialogue(tmp_path: Path) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite", supporter=SUPPORTER))
    server = AnnotationServer(store, load_profile("default"), 2, blind=False)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base(server) + "/api/session?annotator=ann", headers=good(server)) as response:
                items = (await response.json())["queue"]
    finally:
        await server.stop()
        store.close_sync()
    assert {(i["supporter"], i["persona"]) for i in items} == {(SUPPORTER, "default")}
    assert {i["key"] for i in items} == {key(n, SUPPORTER) for n in range(4)}


async def test_item_ids_outlive_a_restart_and_the_token_does_not(tmp_path: Path) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite"))
    try:
        first = AnnotationServer(store, load_profile("default"), 2)
        await first.start()
        ids, old_token = item_ids(store), first.token
        await first.stop()
        second = AnnotationServer(store, load_profile("default"), 2, port=first.port)
        await second.start()
        try:
            assert item_ids(store) == ids and len(set(ids.values())) == 4
            assert second.token != old_token
            async with aiohttp.ClientSession() as http:
                async with http.get(base(second) + "/api/session?annotator=a", headers={TOKEN_HEADER: old_token}) as response:
                    assert response.status == 403
        finally:
            await second.stop()
    finally:
        store.close_sync()


def test_a_wildcard_address_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite"))
    try:
        with pytest.raises(AnnotationError, match="wildcard"):
            AnnotationServer(store, load_profile("default"), 2, host="0.0.0.0")
    finally:
        store.close_sync()
    assert main(["annotate", str(tmp_path / "run.sqlite"), "--host", "::"]) == 2
    assert "--host ::" in capsys.readouterr().err
