"""Any OpenAI-compatible chat server, over aiohttp with tenacity retries.

One ``ClientSession`` per endpoint (server URL and key) for the life of the run, shared
by every backend talking to it (``HTTPSessions``), an adaptive limit on each backend's
requests in flight, explicit timeouts. Faults are typed (see ``esc_eval.agents.backends.base``) and
retried with exponential backoff and jitter under one declared policy:

- hard faults (5xx, timeouts, resets, garbage JSON, empty replies): up to ``max_attempts``;
- throttling (429, 503, ``Retry-After`` on any status): waits as long as ``Retry-After`` says
  (else the backoff) and does not count as an attempt; the request gives up when its next
  attempt would start more than ``max_retry_time`` after its first failure. Each throttle
  halves the backend's in-flight limit, each answer adds one back (``AdaptiveLimit``);
- 401/403 (``AuthFailed``) and other 4xx: never retried.

Exhausted retries raise ``GaveUp``. A reply without ``usage`` gets its tokens counted or estimated
(``esc_eval.agents.backends.usage``), never 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeGuard

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_before_delay, wait_exponential_jitter
from tenacity.stop import stop_base

from esc_eval.agents.backends.base import (
    AuthFailed,
    BackendError,
    BackendStats,
    BadResponse,
    ConnectionLost,
    EmptyReply,
    GaveUp,
    Overloaded,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    ServerError,
    Throttled,
)
from esc_eval.agents.backends.limiter import AdaptiveLimit
from esc_eval.agents.backends.usage import counts
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams

_ENCODER = json.JSONEncoder(ensure_ascii=False)
"""One encoder: ``json.dumps`` with any option set builds a new one per call."""


class OpenAIHTTPBackend:
    """Chat completions from ``{base_url}/chat/completions``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the default ``model`` field; ``complete(model=...)`` overrides it per request.
        api_key_env: name of the environment variable holding the key (never the key itself).
        max_connections: this backend's requests in flight (so connections it holds), at most;
            fewer while the server throttles.
        timeout: seconds for one request, connect to last byte.
        max_attempts: tries per request, first included, counting hard faults only (not throttling).
        max_retry_time: seconds after a request's first failure within which it is retried.
        name: label for counters and events (defaults to ``base_url``).
        sessions: the run's shared sessions; by default the backend has its own.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        max_connections: int = 64,
        timeout: float = 120.0,
        max_attempts: int = 6,
        max_retry_time: float = 900.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        name: str | None = None,
        sessions: HTTPSessions | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_connections = max_connections
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_attempts = max_attempts
        self.max_retry_time = max_retry_time
        self._backoff = wait_exponential_jitter(multiplier=backoff, max=max_backoff, jitter=backoff)
        self.stats = BackendStats(name or base_url)
        self._headers = {"Content-Type": "application/json"}
        self._secret: bytes | None = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if key:
                self._headers["Authorization"] = f"Bearer {key}"
                self._secret = key.encode()
        self._api_key_env = api_key_env
        self._own_sessions = sessions is None
        self._sessions = sessions if sessions is not None else HTTPSessions()
        self._slots = AdaptiveLimit(max_connections, self.stats)

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        model_name = model or self.model
        body: dict[str, Any] = {"model": model_name, "messages": list(messages), "max_tokens": params.max_tokens}
        for field in ("temperature", "top_p", "seed"):
            value = getattr(params, field)
            if value is not None:
                body[field] = value
        payload = _ENCODER.encode(body).encode()
        del body, messages  # encoded: an in-flight request holds one copy of its texts, not two
        try:  # the first attempt skips tenacity's per-request machinery; a failure is replayed through it
            completion = await self._post(payload, model_name)
        except BackendError as first:
            completion, attempts = await self._retry(payload, model_name, first)
            completion = replace(completion, retries=attempts - 1)
        self.stats.done(completion)
        return completion

    async def _retry(self, payload: bytes, model: str, first: BackendError) -> tuple[Completion, int]:
        """Retry after ``first`` failed, under the declared policy; ``first`` counts as attempt 1."""
        attempts = 0
        pending = [first]
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, BackendError) and e.retryable),
            stop=_StopAfterFaults(self.max_attempts) | stop_before_delay(self.max_retry_time),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if pending:
                        raise pending.pop()
                    completion = await self._post(payload, model)
        except BackendError as exc:
            if exc.retryable:
                self.stats.fault(exc.kind, str(exc), retried=False)
                raise GaveUp(self.stats.endpoint, attempts, exc) from exc
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        return completion, attempts

    async def aclose(self) -> None:
        """Close the backend's own session; shared ones are closed by their owner."""
        if self._own_sessions:
            await self._sessions.aclose()

    def _wait(self, state: RetryCallState) -> float:
        """``Retry-After`` as the server gave it (the time budget bounds it), else exponential backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_after is not None:
            return max(exc.retry_after, 0.0)
        return self._backoff(state)

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, BackendError):
            if exc.throttled:
                self.stats.throttled_waits += 1
                self.stats.throttled_seconds += state.upcoming_sleep
            self.stats.fault(exc.kind, str(exc), retried=True)

    async def _post(self, payload: bytes, model: str) -> Completion:
        start = time.perf_counter()
        self.stats.in_flight += 1
        session = self._sessions.get(self.url, self._api_key_env, self._headers)
        try:
            async with self._slots:
                sent = time.perf_counter()
                async with session.post(self.url, data=payload, timeout=self.timeout) as response:
                    raw = await response.read()
                    if self._secret and self._secret in raw:  # a server reflecting our headers must not get the key stored
                        raw = raw.replace(self._secret, b"[redacted]")
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout.total}s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.stats.in_flight -= 1
        latency = time.perf_counter() - start
        if status < 400:
            self._slots.succeeded()
            text, served, reported = _parse_reply(raw, model)
            if reported is not None:
                return Completion(text, *reported, latency, served)
            # no usage (or not its counts): counted or estimated, never 0; off the loop, as a local tokenizer may load first
            prompt, completion, kind = await asyncio.to_thread(counts, model, json.loads(payload)["messages"], text)
            return Completion(text, prompt, completion, latency, served, usage=kind)
        error = _http_error(status, f"HTTP {status}: {_snippet(raw)}", _seconds(retry_after), retry_after is not None)
        if error.throttled:
            self._slots.throttled(sent)
        raise error


class HTTPSessions:
    """One aiohttp session (one connection pool) per server URL and key variable, shared by its backends.

    The seeker, the supporters and the judge often live on one server (one vLLM with
    adapters, say); a pool each would open and keep three times the connections for the
    same traffic. Backends bound their own requests in flight, so the pool has no limit.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str | None], aiohttp.ClientSession] = {}

    def get(self, url: str, api_key_env: str | None, headers: dict[str, str]) -> aiohttp.ClientSession:
        session = self._sessions.get((url, api_key_env))
        if session is None or session.closed:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers)
            self._sessions[url, api_key_env] = session
        return session

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


class _StopAfterFaults(stop_base):
    """Stop at the ``limit``-th hard fault; throttled attempts do not count (``stop_before_delay`` bounds those).

    One per request's retry loop: tenacity calls ``stop`` once per failed, retryable attempt.
    """

    def __init__(self, limit: int):
        self.limit, self.faults = limit, 0

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if not getattr(exc, "throttled", False):
            self.faults += 1
        return self.faults >= self.limit


def _http_error(status: int, message: str, retry_after: float | None, has_retry_after: bool) -> BackendError:
    """The typed error for an HTTP error status: throttling, auth, server fault or a rejected request."""
    if status in (401, 403):
        return AuthFailed(message)
    if status == 429:
        return RateLimited(message, retry_after)
    if status == 503 or (status >= 500 and has_retry_after):
        return Overloaded(message, retry_after)
    if status >= 500:
        return ServerError(message)
    if has_retry_after:
        return Throttled(message, retry_after)
    return RequestRejected(message)


def _parse_reply(raw: bytes, model: str) -> tuple[str, str, tuple[int, int] | None]:
    """The reply's text, the model that served it and its reported ``(prompt_tokens, completion_tokens)`` (``None``: not reported)."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BadResponse(f"unusable response ({type(exc).__name__}): {_snippet(raw)}") from None
    if not isinstance(text, str) or not text.strip():
        raise EmptyReply(f"empty content (finish_reason={choice.get('finish_reason')!r})")
    return text.strip(), str(data.get("model") or model), _reported(data.get("usage"))


def _reported(usage: Any) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of a server's ``usage`` object; ``None`` unless both are counts (ints >= 0)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt, completion) if _count(prompt) and _count(completion) else None


def _count(value: Any) -> TypeGuard[int]:
    """A token count: an int >= 0 (``bool`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _snippet(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace").replace("\n", " ")
