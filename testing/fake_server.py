"""A fake OpenAI-compatible chat server on 127.0.0.1 that records requests and injects faults.

Used by tests (fixture ``fake_server`` in conftest.py) and benchmarks. Replies come from
``responder(body) -> str``; faults are taken first from a FIFO script, then drawn at the
configured rates with a seeded RNG, so every fault run is reproducible.

Replies report ``usage`` at about 4 characters a token (``tokens``: ``ceil(len(content) / 4)`` per
request message, and of the reply), as the client estimates a reply without one; ``usage=False``
omits the object, to test that estimate.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

FAULTS = ("500", "503", "429", "429-retry-after", "500-retry-after", "slow", "reset", "garbage", "truncated", "empty",
          "no-choices", "echo-headers", "401", "403")
"""Fault kinds. ``echo-headers`` is a misbehaving proxy: a 500 whose body reflects the request headers."""

CLIENT_FAULT_KIND = {
    "500": "5xx", "503": "5xx", "429": "429", "429-retry-after": "429", "slow": "timeout", "reset": "reset",
    "garbage": "parse", "truncated": "parse", "empty": "empty", "no-choices": "parse", "echo-headers": "5xx",
    "500-retry-after": "5xx", "401": "auth", "403": "auth",
}
"""The ``BackendError.kind`` a client should see for each injected fault (``slow`` needs a client timeout)."""

Responder = Callable[[dict[str, Any]], str]


def tokens(text: str) -> int:
    """The fake's tokenizer: ``ceil(len(text) / 4)``."""
    return math.ceil(len(text) / 4)


def default_responder(body: dict[str, Any]) -> str:
    """Names the model and the number of messages seen, so tests can tell replies apart."""
    return f"{body.get('model')} reply {len(body.get('messages', []))}"


@dataclass
class FakeOpenAIServer:
    responder: Responder = default_responder
    delay: float = 0.0
    jitter: float = 0.0
    """Each answer waits ``delay`` scaled by a seeded uniform factor in [1 - jitter, 1 + jitter]."""
    fault_rates: dict[str, float] = field(default_factory=dict)
    fault_for: Callable[[dict[str, Any]], str | None] | None = None
    """Picks a fault (or none) from the request body, before the script and the rates: one model always failing, say."""
    slow_seconds: float = 30.0
    retry_after: float = 0.05
    seed: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults_served: Counter[str] = field(default_factory=Counter)
    record: bool = True
    headers: list[dict[str, str]] = field(default_factory=list)
    """Request headers, one dict per request (when ``record``)."""
    authorization: Counter[str] = field(default_factory=Counter)
    """``Authorization`` header values seen (``""`` when absent), counted even when not recording."""
    usage: bool = True
    """Report ``usage`` with each reply; ``False`` omits it (as some servers do)."""
    reported: list[tuple[str, int, int]] = field(default_factory=list)
    """``(model, prompt_tokens, completion_tokens)`` of each ``usage`` reported (when ``record``): what a run should store."""
    models: tuple[str, ...] = ()
    """The ids ``GET /v1/models`` lists. It answers any model, so by default it lists none (a run's pre-flight then has
    nothing to warn about); give ids to test that warning."""

    def __post_init__(self) -> None:
        self.script: deque[str] = deque()
        self._rng = random.Random(self.seed)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.in_flight_by_model: Counter[str] = Counter()
        self.peak_in_flight_by_model: Counter[str] = Counter()
        self.answered = 0
        self.throttled_until = 0.0
        """``time.monotonic()`` until which every request gets a 429 (``throttle``)."""
        self._throttle_fault = "429"
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: str) -> None:
        """Serve these faults, in order, to the next requests."""
        for fault in faults:
            assert fault in FAULTS, fault
        self.script.extend(faults)

    def throttle(self, seconds: float, *, retry_after: float | None = None) -> None:
        """Answer every request with 429 for the next ``seconds`` (with ``Retry-After`` when given), then recover."""
        self.throttled_until = time.monotonic() + seconds
        self._throttle_fault = "429" if retry_after is None else "429-retry-after"
        if retry_after is not None:
            self.retry_after = retry_after

    async def start(self) -> FakeOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _next_fault(self, body: dict[str, Any]) -> str | None:
        if self.throttled_until and time.monotonic() < self.throttled_until:
            return self._throttle_fault
        if self.fault_for is not None:
            chosen = self.fault_for(body)
            if chosen:
                return chosen
        if self.script:
            return self.script.popleft()
        for fault, rate in self.fault_rates.items():
            if self._rng.random() < rate:
                return fault
        return None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"} for model in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        model = ""
        self.authorization[request.headers.get("Authorization", "")] += 1
        try:
            body = await request.json()
            model = str(body.get("model"))
            self.in_flight_by_model[model] += 1
            self.peak_in_flight_by_model[model] = max(self.peak_in_flight_by_model[model], self.in_flight_by_model[model])
            if self.record:
                self.requests.append(body)
                self.headers.append(dict(request.headers))
            fault = self._next_fault(body)
            if fault:
                self.faults_served[fault] += 1
                return await self._fault(request, fault)
            if self.delay:
                await asyncio.sleep(self.delay * (1 + self.jitter * (2 * self._rng.random() - 1)) if self.jitter else self.delay)
            text = self.responder(body)
            self.answered += 1
            reply: dict[str, Any] = {
                "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }
            if self.usage:
                prompt, completion = sum(tokens(m["content"]) for m in body["messages"]), tokens(text)
                reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
                if self.record:
                    self.reported.append((model, prompt, completion))
            return web.json_response(reply)
        finally:
            self.in_flight -= 1
            if model:
                self.in_flight_by_model[model] -= 1

    async def _fault(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault in ("500", "503"):
            return web.Response(status=int(fault), text="injected server error")
        if fault == "429":
            return web.Response(status=429, text="rate limited")
        if fault == "429-retry-after":
            return web.Response(status=429, text="rate limited", headers={"Retry-After": str(self.retry_after)})
        if fault == "500-retry-after":
            return web.Response(status=500, text="overloaded", headers={"Retry-After": str(self.retry_after)})
        if fault in ("401", "403"):
            return web.Response(status=int(fault), text="invalid api key")
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.Response(status=500, text="too late")
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault == "garbage":
            return web.Response(status=200, text="<html>not json", content_type="application/json")
        if fault == "truncated":
            return web.Response(status=200, text='{"choices": [{"message": {"content": "half', content_type="application/json")
        if fault == "empty":
            return web.json_response({"choices": [{"message": {"role": "assistant", "content": "  \n"}, "finish_reason": "stop"}]})
        if fault == "no-choices":
            return web.json_response({"object": "chat.completion", "usage": {}})
        if fault == "echo-headers":
            return web.Response(status=500, text=f"upstream error; request was {dict(request.headers)}")
        raise AssertionError(fault)


def json_body(request: dict[str, Any]) -> str:
    return json.dumps(request, ensure_ascii=False, sort_keys=True)
