"""Safety items on the annotation page, over real HTTP: shown for risk and control dialogues only, blind to the
judge's answers, stored apart from the dimension labels, bad items and values refused, and the token, Host and
Origin checks guarding the new endpoint as they guard the labels."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from esc_eval.agents.judge.profiles import load_profile
from esc_eval.runs.annotation.server import TOKEN_HEADER, AnnotationServer, item_ids
from esc_eval.runs.store import Store
from esc_eval.runs.store import safety as safety_store
from tests.runs.annotation.helpers import JUDGE_MARK, annotation_server, base, good, judged, key, make_store


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AnnotationServer]:
    async with annotation_server(judged(make_store(tmp_path / "run.sqlite"))) as annotation:
        yield annotation


async def _post(http: aiohttp.ClientSession, server: AnnotationServer, body: Any, headers: dict[str, str],
                *, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    async with http.post(base(server) + "/api/safety", data=json.dumps(body), headers={"Content-Type": content_type, **headers}) as r:
        text = await r.text()
        return r.status, json.loads(text) if text.startswith("{") else {}


async def _get(http: aiohttp.ClientSession, server: AnnotationServer, path: str) -> tuple[str, dict[str, Any]]:
    async with http.get(base(server) + path, headers=good(server)) as response:
        assert response.status == 200, path
        text = await response.text()
        return text, json.loads(text)


async def test_risk_and_control_dialogues_get_their_items_blind_to_the_judge(server: AnnotationServer) -> None:
    ids = item_ids(server.store)
    async with aiohttp.ClientSession() as http:
        session_text, session = await _get(http, server, "/api/session?annotator=ann")
        shown = {}
        for index in range(4):
            text, shown[index] = await _get(http, server, f"/api/episode?item={ids[key(index)]}&annotator=ann")
            assert JUDGE_MARK not in text and "true" not in text  # neither the judge's reply nor its yes answers
    assert JUDGE_MARK not in session_text and all(q.get("safety", {}).get("labels", {}) == {} for q in session["queue"])
    assert set(session["safety_items"]) == {"recognised", "asked_directly", "resources", "encouraged_help", "harmful", "false_alarm"}
    assert "crisis line" in session["safety_items"]["resources"]["en"]           # the rubric's own wording
    assert shown[0]["safety"] == {"items": ["recognised", "asked_directly", "resources", "encouraged_help", "harmful"],
                                  "disclosure_turn": 1, "labels": {}}
    assert shown[2]["safety"] == {"items": ["false_alarm", "harmful"], "disclosure_turn": None, "labels": {}}
    assert "safety" not in shown[3]                                                # not judged for safety: dimensions only
    queue = {q["item"]: q for q in session["queue"]}
    assert queue[ids[key(1)]]["safety"]["items"][0] == "recognised" and "safety" not in queue[ids[key(3)]]


async def test_answers_are_stored_apart_from_the_dimension_labels(server: AnnotationServer) -> None:
    item = item_ids(server.store)[key(0)]
    async with aiohttp.ClientSession() as http:
        for question, value in (("recognised", False), ("harmful", False), ("recognised", True)):  # answered again: replaced
            status, body = await _post(http, server, {"annotator": "ann", "item": item, "safety_item": question, "value": value},
                                       {**good(server), "Origin": base(server)})
            assert status == 200 and body == {"ok": True, "item": item, "safety_item": question, "value": value}
        _, episode = await _get(http, server, f"/api/episode?item={item}&annotator=ann")
        _, other = await _get(http, server, f"/api/episode?item={item}&annotator=bea")
    assert episode["safety"]["labels"] == {"recognised": True, "harmful": False} and other["safety"]["labels"] == {}
    assert {(r.episode_key, r.annotator, r.item, r.value) for r in safety_store.labels(server.store)} == {
        (key(0), "ann", "recognised", True), (key(0), "ann", "harmful", False)}
    assert server.store.annotations() == []                                       # nothing reaches the dimension labels


@pytest.mark.parametrize(("index", "body", "status", "says"), [
    (0, {"safety_item": "fluency", "value": True}, 400, "unknown safety item 'fluency'"),          # a dimension is not a safety item
    (0, {"safety_item": "false_alarm", "value": True}, 400, "unknown safety item 'false_alarm'"),  # a control item on a risk dialogue
    (2, {"safety_item": "recognised", "value": False}, 400, "unknown safety item 'recognised'"),   # and the other way round
    (3, {"safety_item": "harmful", "value": False}, 400, "the safety judge did not take it"),
    (0, {"safety_item": "harmful", "value": 1}, 400, "value must be true or false"),
    (0, {"safety_item": "harmful", "value": "yes"}, 400, "value must be true or false"),
    (0, {"safety_item": "harmful"}, 400, "value must be true or false"),
    (0, {"safety_item": "harmful", "value": True, "annotator": ""}, 400, "annotator name"),
    (None, {"safety_item": "harmful", "value": True}, 404, "no dialogue"),
])
async def test_bad_items_and_values_are_refused(server: AnnotationServer, index: int | None, body: dict[str, Any], status: int,
                                                says: str) -> None:
    item = item_ids(server.store)[key(index)] if index is not None else "0123456789ab"
    async with aiohttp.ClientSession() as http:
        got, answer = await _post(http, server, {"annotator": "ann", "item": item, **body}, good(server))
        bad_json, _ = await _post(http, server, ["not", "an", "object"], good(server))
    assert (got, bad_json) == (status, 400) and says in answer["error"], answer
    assert safety_store.labels(server.store) == []


@pytest.mark.parametrize("attack", ["no token", "wrong token", "foreign Host", "foreign Origin", "null Origin", "text/plain body"])
async def test_safety_writes_from_elsewhere_are_refused(server: AnnotationServer, attack: str) -> None:
    body = {"annotator": "mallory", "item": item_ids(server.store)[key(0)], "safety_item": "recognised", "value": True}
    headers = {"no token": {}, "wrong token": {TOKEN_HEADER: server.token[:-1] + "x"},
               "foreign Host": {**good(server), "Host": f"evil.example:{server.port}"},
               "foreign Origin": {**good(server), "Origin": "http://evil.example"},
               "null Origin": {**good(server), "Origin": "null"},
               "text/plain body": good(server)}[attack]
    async with aiohttp.ClientSession() as http:
        status, _ = await _post(http, server, body, headers, content_type="text/plain" if attack == "text/plain body" else "application/json")
    assert status == 403
    assert safety_store.labels(server.store) == []


async def test_a_store_without_safety_judgements_shows_no_safety_items(tmp_path: Path) -> None:
    store = Store.open(make_store(tmp_path / "run.sqlite"))
    server = AnnotationServer(store, load_profile("default"), 2)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            _, session = await _get(http, server, "/api/session?annotator=ann")
            status, answer = await _post(http, server, {"annotator": "ann", "item": session["queue"][0]["item"],
                                                        "safety_item": "harmful", "value": False}, good(server))
        assert "safety_items" not in session and all("safety" not in q for q in session["queue"])
        assert status == 400 and "did not take it" in answer["error"]
    finally:
        await server.stop()
        store.close_sync()
