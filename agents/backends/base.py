"""The ChatBackend protocol, its typed errors and the counters every backend keeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams


class BackendError(Exception):
    """A request failed. ``kind`` names the fault for counters: 429, 5xx, timeout, reset, parse, empty, http, auth.

    ``throttled`` errors are the server asking for time, not failing: they are retried for up
    to a time budget (``max_retry_time``) instead of counting against ``max_attempts``.
    """

    kind = "error"
    retryable = False
    throttled = False


class RetryableError(BackendError):
    retryable = True


class Throttled(RetryableError):
    """The server asks for time: 429, 503, or ``Retry-After`` on any status; ``retry_after`` in seconds when given."""

    kind = "http"
    throttled = True

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Throttled):
    kind = "429"


class ServerError(RetryableError):
    kind = "5xx"


class Overloaded(Throttled, ServerError):
    """503, or another 5xx with ``Retry-After``: alive, but asking for time."""

    kind = "5xx"


class RequestTimeout(RetryableError):
    kind = "timeout"


class ConnectionLost(RetryableError):
    kind = "reset"


class BadResponse(RetryableError):
    """Garbage or truncated JSON, missing ``choices``: the server answered nonsense."""

    kind = "parse"


class EmptyReply(RetryableError):
    """Empty or whitespace-only content is a fault, never a turn."""

    kind = "empty"


class RequestRejected(BackendError):
    """A 4xx other than 429: retrying the same request cannot help."""

    kind = "http"


class AuthFailed(RequestRejected):
    """401 or 403: the key is missing, wrong or lacks access; every request to this endpoint will fail alike."""

    kind = "auth"


class GaveUp(BackendError):
    """Retries are exhausted; the message names the last fault."""

    def __init__(self, endpoint: str, attempts: int, last: BackendError):
        super().__init__(f"{endpoint}: gave up after {attempts} attempts: {last.kind}: {last}")
        self.kind = last.kind
        self.attempts, self.last = attempts, last


LOADING_LOG = "esc_eval.agents.backends.loading"
"""The logger local backends report model conversion and loading on, at INFO: the one
progress a user waits on before the first reply. Applications show it; ``esc-eval`` does."""

EventListener = Callable[[str, str, str], None]
"""Called as ``listener(endpoint, kind, detail)`` on every fault and retry."""


@dataclass
class BackendStats:
    """Live counters an endpoint keeps; the monitor reads them, the store records events.

    Kept as plain counters so a refresh costs nothing however many episodes run.
    """

    endpoint: str
    requests: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    limit: int = 0
    """Requests this endpoint may have in flight now (adaptive: it shrinks while the server throttles)."""
    limit_min: int = 0
    """The lowest ``limit`` reached."""
    throttled_waits: int = 0
    throttled_seconds: float = 0.0
    """Backoff waits the server asked for (429, 503, Retry-After), and their total length."""
    cache_hits: int = 0
    """Requests answered from the response cache (``esc_eval.runs.execution.caching``): not sent, so not in ``requests``."""
    latencies: list[float] = field(default_factory=list)
    listener: EventListener | None = None
    _latency_window: int = 2048

    def fault(self, kind: str, detail: str, *, retried: bool) -> None:
        self.faults[kind] += 1
        if retried:
            self.retries += 1
        if self.listener is not None:
            self.listener(self.endpoint, ("retry:" if retried else "fault:") + kind, detail)

    def done(self, completion: Completion) -> None:
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.latencies.append(completion.latency)
        if len(self.latencies) > self._latency_window:
            del self.latencies[: self._latency_window // 2]


@runtime_checkable
class ChatBackend(Protocol):
    """Something that turns a chat history into the next message.

    Implementations: ``openai_http`` (any OpenAI-compatible server),
    ``transformers_local`` (in-process, continuously batched), ``scripted`` (tests).
    """

    stats: BackendStats

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        """Return the next assistant message; raise ``BackendError`` on failure.

        ``model`` overrides the backend's default model name (the judge routes dimensions this way).
        """
        ...

    async def aclose(self) -> None:
        """Release sessions, threads and models."""
        ...
