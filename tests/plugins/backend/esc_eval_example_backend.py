"""A backend plugin: an OpenAI-compatible server through one aiohttp session, without retries.

It shows the three parts of the contract: ``complete`` returns a ``Completion`` and counts it in
``stats``, failures raise the typed ``BackendError`` subclasses, ``aclose`` releases the session;
and a factory taking the endpoint's ``options`` table as keyword arguments.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from esc_eval.agents.backends.base import (
    BackendError,
    BackendStats,
    BadResponse,
    ConnectionLost,
    EmptyReply,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    ServerError,
)
from esc_eval.agents.backends.usage import counts
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams


class PlainHTTPBackend:
    """Chat completions from ``{base_url}/chat/completions``, each request sent once."""

    def __init__(self, base_url: str, model: str, *, name: str, user_agent: str, timeout: float):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"User-Agent": user_agent}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.stats = BackendStats(name)
        self._session: aiohttp.ClientSession | None = None

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        model = model or self.model
        body: dict[str, Any] = {"model": model, "messages": list(messages), "max_tokens": params.max_tokens}
        body.update({k: v for k, v in (("temperature", params.temperature), ("top_p", params.top_p), ("seed", params.seed)) if v is not None})
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        started = time.monotonic()
        self.stats.in_flight += 1
        try:
            data = await self._post(body)
            choice = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            self.stats.fault("parse", str(exc), retried=False)
            raise BadResponse(f"{self.url}: no choices[0].message.content in the answer") from None
        except BackendError as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        finally:
            self.stats.in_flight -= 1
        if not isinstance(choice, str) or not choice.strip():
            self.stats.fault("empty", "empty reply", retried=False)
            raise EmptyReply(f"{self.url}: empty reply")
        if "prompt_tokens" in usage and "completion_tokens" in usage:
            prompt, completion_tokens, kind = int(usage["prompt_tokens"]), int(usage["completion_tokens"]), "reported"
        else:  # no usage: never 0 tokens (a paid call would look free); a local tokenizer's count, else ~4 characters a token
            prompt, completion_tokens, kind = counts(model, messages, choice)
        completion = Completion(choice, prompt, completion_tokens, time.monotonic() - started, model, usage=kind)
        self.stats.done(completion)
        return completion

    async def _post(self, body: dict[str, Any]) -> Any:
        """The answer's JSON; every failure as a typed ``BackendError``."""
        assert self._session is not None
        try:
            async with self._session.post(self.url, json=body) as response:
                if response.status == 429:
                    raise RateLimited(f"{self.url}: 429")
                if response.status >= 500:
                    raise ServerError(f"{self.url}: {response.status}")
                if response.status >= 400:
                    raise RequestRejected(f"{self.url}: {response.status}")
                return await response.json(content_type=None)
        except TimeoutError:
            raise RequestTimeout(f"{self.url}: no answer within {self.timeout.total} s") from None
        except aiohttp.ClientError as exc:
            raise ConnectionLost(f"{self.url}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # the body is not JSON
            raise BadResponse(f"{self.url}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def plain_http(endpoint: Any, *, name: str, shared: Any, user_agent: str = "esc-eval-example") -> PlainHTTPBackend:
    """An OpenAI-compatible server through one aiohttp session, each request sent once (example plugin)."""
    if not endpoint.base_url or not endpoint.model:
        raise ValueError("backend 'plain_http' needs 'base_url' and 'model'")
    if not user_agent.strip():
        raise ValueError("option 'user_agent' must not be empty")
    return PlainHTTPBackend(endpoint.base_url, endpoint.model, name=name, user_agent=user_agent, timeout=endpoint.timeout)
