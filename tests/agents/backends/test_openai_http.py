"""The OpenAI HTTP backend against a fault-injecting server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from esc_eval.agents.backends.base import (
    AuthFailed,
    BackendError,
    EmptyReply,
    GaveUp,
    Overloaded,
    RateLimited,
    RequestRejected,
    ServerError,
    Throttled,
)
from esc_eval.agents.backends.openai_http import HTTPSessions, OpenAIHTTPBackend, _http_error, _parse_reply, _seconds
from esc_eval.agents.messages import ChatMessage, SamplingParams
from tests.agents.backends.test_usage import word_tokenizer

MESSAGES: list[ChatMessage] = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"}]


def backend_for(server, **options: object) -> OpenAIHTTPBackend:  # type: ignore[no-untyped-def]
    defaults: dict[str, object] = {"timeout": 2.0, "max_attempts": 4, "backoff": 0.01, "max_backoff": 0.05}
    return OpenAIHTTPBackend(server.base_url, "m", **{**defaults, **options})  # type: ignore[arg-type]


async def test_completion_with_usage(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    backend = backend_for(server)
    completion = await backend.complete(MESSAGES, SamplingParams(max_tokens=20, temperature=0.5, seed=11))
    await backend.aclose()
    assert completion.text == "m reply 2"
    # the fake reports ceil(chars / 4) a message: "be kind" 2 + "hello there" 3; "m reply 2" 3
    assert completion.prompt_tokens == 5 and completion.completion_tokens == 3 and completion.retries == 0
    assert completion.usage == "reported" and not completion.cached
    assert server.requests[0] == {"model": "m", "messages": MESSAGES, "max_tokens": 20, "temperature": 0.5, "seed": 11}
    assert backend.stats.requests == 1 and backend.stats.completion_tokens == 3


async def test_model_override_per_request(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    backend = backend_for(server)
    await backend.complete(MESSAGES, SamplingParams(), model="fluency_en")
    await backend.aclose()
    assert server.requests[0]["model"] == "fluency_en"


@pytest.mark.parametrize("fault", ["500", "503", "429", "429-retry-after", "reset", "garbage", "truncated", "empty", "no-choices"])
async def test_each_fault_is_retried_and_counted(fault_server_factory, fault: str) -> None:  # type: ignore[no-untyped-def]
    server = await fault_server_factory()
    server.inject(fault, fault)
    events: list[tuple[str, str, str]] = []
    backend = backend_for(server)
    backend.stats.listener = lambda endpoint, kind, detail: events.append((endpoint, kind, detail))
    completion = await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert completion.text == "m reply 2" and completion.retries == 2
    assert backend.stats.retries == 2 and sum(backend.stats.faults.values()) == 2
    assert len(events) == 2 and all(kind.startswith("retry:") for _, kind, _ in events)


@pytest.fixture
def fault_server_factory(fake_server):  # type: ignore[no-untyped-def]
    return fake_server


async def test_slow_response_times_out_then_succeeds(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(slow_seconds=1.0)
    server.inject("slow")
    backend = backend_for(server, timeout=0.3)
    start = time.monotonic()
    completion = await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert completion.retries == 1 and backend.stats.faults["timeout"] == 1
    assert time.monotonic() - start < 3


async def test_retry_after_is_honoured(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(retry_after=0.4)
    server.inject("429-retry-after")
    backend = backend_for(server, max_backoff=1.0)
    start = time.monotonic()
    await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert time.monotonic() - start >= 0.4


async def test_gives_up_after_max_attempts_with_the_last_fault(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    server.inject("500", "500", "500", "500", "500")
    backend = backend_for(server, max_attempts=3)
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert err.value.attempts == 3 and err.value.kind == "5xx" and "500" in str(err.value)
    assert len(server.requests) == 3


async def test_empty_reply_is_a_fault_never_a_turn(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    server.inject(*["empty"] * 5)
    backend = backend_for(server, max_attempts=2)
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert isinstance(err.value.last, EmptyReply)


async def test_client_errors_are_not_retried(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=lambda body: (_ for _ in ()).throw(AssertionError("unreachable")))
    backend = OpenAIHTTPBackend(server.base_url.replace("/v1", "/v2"), "m", max_attempts=4, backoff=0.01)
    with pytest.raises(RequestRejected) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert "404" in str(err.value) and isinstance(err.value, BackendError) and not err.value.retryable


async def test_connection_limit_bounds_concurrent_requests(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(delay=0.05)
    backend = backend_for(server, max_connections=3)
    await asyncio.gather(*(backend.complete(MESSAGES, SamplingParams()) for _ in range(20)))
    await backend.aclose()
    assert server.peak_in_flight == 3 and server.answered == 20


async def test_api_key_is_sent_from_the_environment_and_never_echoed(fake_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    server = await fake_server()
    monkeypatch.setenv("TEST_SECRET_KEY", "sk-planted-123")
    server.inject("500", "500")
    backend = backend_for(server, api_key_env="TEST_SECRET_KEY", max_attempts=2)
    backend.stats.listener = lambda endpoint, kind, detail: seen.append(f"{endpoint} {kind} {detail}")
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    assert backend._headers["Authorization"] == "Bearer sk-planted-123"  # noqa: SLF001
    await backend.aclose()
    assert "sk-planted" not in str(err.value) and not any("sk-planted" in s for s in seen)


async def test_backends_on_one_server_share_its_pool_and_keep_their_own_limits(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(delay=0.05)
    sessions = HTTPSessions()
    seeker = OpenAIHTTPBackend(server.base_url, "seeker", max_connections=2, sessions=sessions)
    judge = OpenAIHTTPBackend(server.base_url, "judge", max_connections=3, sessions=sessions)
    other = OpenAIHTTPBackend(server.base_url, "other", max_connections=1, api_key_env="SOME_OTHER_KEY", sessions=sessions)
    await asyncio.gather(*(b.complete(MESSAGES, SamplingParams()) for b in (seeker, judge, other) for _ in range(12)))
    assert server.peak_in_flight_by_model == {"seeker": 2, "judge": 3, "other": 1}
    assert len(sessions._sessions) == 2  # noqa: SLF001  (one per URL and key variable)
    await seeker.aclose()  # a shared pool outlives its users' aclose; its owner closes it
    assert not any(s.closed for s in sessions._sessions.values())  # noqa: SLF001
    pools = list(sessions._sessions.values())  # noqa: SLF001
    await sessions.aclose()
    assert all(s.closed for s in pools)


# -- throttling: waits within a time budget, not attempts ---------------------------------


@pytest.mark.parametrize("fault", ["429", "429-retry-after", "503", "500-retry-after"])
async def test_throttling_does_not_count_against_max_attempts(fake_server, fault: str) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(retry_after=0.01)
    server.inject(*[fault] * 8)
    backend = backend_for(server, max_attempts=2)
    completion = await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert completion.retries == 8 and backend.stats.throttled_waits == 8 and backend.stats.retries == 8
    assert backend.stats.throttled_seconds > 0


async def test_hard_faults_between_throttles_still_give_up_at_max_attempts(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    server.inject("429", "500", "429", "500", "429", "500", "429")
    backend = backend_for(server, max_attempts=3)
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert err.value.attempts == 6 and err.value.kind == "5xx", "three hard faults, three throttles not counted"
    assert backend.stats.throttled_waits == 3


async def test_throttling_gives_up_when_the_time_budget_is_spent(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(fault_rates={"429": 1.0})
    backend = backend_for(server, max_attempts=2, max_retry_time=0.5, backoff=0.05, max_backoff=0.1)
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert err.value.kind == "429" and err.value.attempts > 2, "attempts beyond max_attempts: the budget bounded them"
    assert len(server.requests) == err.value.attempts


async def test_retry_after_longer_than_the_budget_gives_up_at_once(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(retry_after=60)
    server.inject("429-retry-after")
    backend = backend_for(server, max_retry_time=5.0)
    with pytest.raises(GaveUp) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert err.value.attempts == 1 and len(server.requests) == 1


@pytest.mark.parametrize("status, retry_after, expected, throttled", [
    (429, None, RateLimited, True), (429, "2", RateLimited, True), (503, None, Overloaded, True),
    (500, "1", Overloaded, True), (500, None, ServerError, False), (502, None, ServerError, False),
    (409, "3", Throttled, True), (400, None, RequestRejected, False), (401, None, AuthFailed, False),
    (403, "5", AuthFailed, False), (404, None, RequestRejected, False),
])
def test_http_status_to_error(status: int, retry_after: str | None, expected: type, throttled: bool) -> None:
    error = _http_error(status, f"HTTP {status}", _seconds(retry_after), retry_after is not None)
    assert type(error) is expected and error.throttled is throttled
    assert error.retryable is (expected not in (RequestRejected, AuthFailed))
    if retry_after is not None and throttled:
        assert error.retry_after == float(retry_after)  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["401", "403"])
async def test_auth_failure_is_not_retried_and_is_reported_as_auth(fake_server, fault: str) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server()
    server.inject(fault, fault)
    events: list[str] = []
    backend = backend_for(server)
    backend.stats.listener = lambda endpoint, kind, detail: events.append(kind)
    with pytest.raises(AuthFailed) as err:
        await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert f"HTTP {fault}" in str(err.value) and len(server.requests) == 1 and events == ["fault:auth"]


async def test_a_throttling_server_sees_the_in_flight_limit_drop_and_recover(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(delay=0.02)
    backend = backend_for(server, max_connections=16, max_backoff=0.2)
    server.throttle(1.0)
    results = await asyncio.gather(*(backend.complete(MESSAGES, SamplingParams()) for _ in range(200)))
    await backend.aclose()
    assert len(results) == 200 and server.faults_served["429"] > 0
    assert backend.stats.limit_min <= 2, "every request throttled for a second: the limit halves down to (nearly) 1"
    assert backend.stats.limit == 16, "after the server recovers, answers grow the limit back to max_connections"


async def test_a_reply_without_usage_is_estimated_never_zero(fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(usage=False)
    backend = backend_for(server)
    completion = await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert not server.reported  # the server reported nothing
    # ceil(chars / 4) per message: "be kind" 2 + "hello there" 3; the reply "m reply 2" 3
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage) == (5, 3, "estimated")
    assert backend.stats.prompt_tokens == 5


@pytest.mark.parametrize("usage", [{}, {"prompt_tokens": None, "completion_tokens": 3}, {"prompt_tokens": 4}, "n/a",
                                   {"prompt_tokens": True, "completion_tokens": 1}, {"prompt_tokens": -1, "completion_tokens": 1}])
def test_usage_without_both_counts_is_not_reported(usage: object) -> None:
    """Then the client counts or estimates the tokens (above): a missing count is never read as 0."""
    raw = json.dumps({"choices": [{"message": {"content": " fine thanks "}}], "model": "served", "usage": usage}).encode()
    assert _parse_reply(raw, "m") == ("fine thanks", "served", None)
    given = {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 0, "completion_tokens": 7}}
    assert _parse_reply(json.dumps(given).encode(), "m") == ("x", "m", (0, 7))  # reported counts stand as given  # reported counts stand as given


async def test_a_model_naming_a_local_tokenizer_is_counted_with_it(fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = word_tokenizer(tmp_path / "tok")
    server = await fake_server(usage=False, responder=lambda body: "fine thanks, and you?")
    backend = OpenAIHTTPBackend(server.base_url, str(folder), timeout=5.0)
    completion = await backend.complete(MESSAGES, SamplingParams())
    await backend.aclose()
    assert server.requests[0]["model"] == str(folder)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage) == (2 + 2, 4, "counted")
