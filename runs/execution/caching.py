"""The response cache in a run: a ``ChatBackend`` wrapper that answers a request asked before from the cache file.

``ResponseCacheSession`` is one run's (one process's) use of a cache file (``esc_eval.runs.store.cache``): a reading
connection, the replies waiting to be written (written in batches on a thread, so no coroutine waits on another
process's write) and the requests in flight. ``CachingBackend`` wraps one endpoint's backend (``BackendPool`` wraps
every configured endpoint): on a hit it returns the stored reply as ``Completion(..., cached=True, latency=0)`` and
sends nothing; on a miss it asks the backend and, in ``read-write`` mode, stores the reply. Two identical requests
in flight at once send one request (the second waits and counts as a hit), so a run uses the reply the cache keeps.

Only requests whose reply is determined by the request are cached: greedy ones (``temperature`` 0) and seeded ones
(the environment and the judge send a seed with every sampled request). A hit is not a request: the backend's
``stats`` count only what was sent (requests, tokens, latencies); hits are counted in ``stats.cache_hits``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from esc_eval.agents.backends.base import BackendStats, ChatBackend
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams
from esc_eval.runs.config_sections import CACHE_MODES
from esc_eval.runs.store.cache import CachedReply, CacheError, ResponseCache, request_key

log = logging.getLogger(__name__)

READ_WRITE, READ, OFF = CACHE_MODES


def check_cache(path: str | Path | None, mode: str) -> None:
    """Open and close the cache a run will use (creating it in ``read-write`` mode): ``CacheError`` before any store exists."""
    if path is not None and mode != OFF:
        ResponseCache.open(path, writable=mode == READ_WRITE).close()


class ResponseCacheSession:
    """One process's use of a cache file in ``mode`` (``read-write`` or ``read``); ``aclose`` writes what is pending."""

    def __init__(self, path: str | Path, mode: str):
        if mode not in (READ_WRITE, READ):
            raise ValueError(f"cache mode {mode!r}: expected {READ_WRITE!r} or {READ!r}")
        self.path, self.mode = Path(path), mode
        self._reads = ResponseCache.open(path, writable=mode == READ_WRITE)  # read mode: query_only, the file left as it was
        self._writes = ResponseCache.open(path, writable=True) if mode == READ_WRITE else None  # a second connection: writes on a thread
        self._pending: dict[str, CachedReply] = {}
        self._writing: dict[str, CachedReply] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._damaged = False
        self.in_flight: dict[str, asyncio.Future[Completion]] = {}
        """Requests sent and not yet answered, by key: an identical request waits for the answer instead of sending."""

    def get(self, key: str) -> CachedReply | None:
        """The stored reply, if any; a file that fails to answer (a damaged page) is a miss, said once: it costs money, never the run."""
        found = self._pending.get(key) or self._writing.get(key)
        if found is not None:
            return found
        try:
            return self._reads.get(key)
        except CacheError as exc:
            if not self._damaged:
                log.warning("%s; such requests are sent to the server", exc)
                self._damaged = True
            return None

    def put(self, key: str, reply: CachedReply) -> None:
        """Queue ``reply`` for writing (``read-write``; nothing in ``read`` mode); a batch goes to the file on a thread."""
        if self._writes is None:
            return
        self._pending[key] = reply
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="cache-writer")

    async def _flush(self) -> None:
        while self._pending and self._writes is not None:
            self._writing, self._pending = self._pending, {}
            try:
                await asyncio.to_thread(self._writes.put_many, self._writing.items())
            except Exception as exc:  # a cache that cannot be written costs money, never the run: say so once per batch
                log.warning("%s: %d replies not cached: %s", self.path, len(self._writing), exc)
            self._writing = {}

    async def aclose(self) -> None:
        """Write the pending replies and close the file."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        self._reads.close()
        if self._writes is not None:
            self._writes.close()


class CachingBackend:
    """One endpoint's backend behind the response cache; see the module docstring.

    Args:
        inner: the endpoint's backend; its ``stats`` are this wrapper's.
        session: the run's ``ResponseCacheSession``.
        model: the endpoint's model (the key's ``model``).
        adapter: the adapter answering requests that name no model (the role's, ``role_adapter``), if any.
    """

    def __init__(self, inner: ChatBackend, session: ResponseCacheSession, *, model: str | None, adapter: str | None = None):
        self.inner, self.session = inner, session
        self.model, self.adapter = model, adapter

    @property
    def stats(self) -> BackendStats:
        return self.inner.stats

    @stats.setter
    def stats(self, value: BackendStats) -> None:
        self.inner.stats = value

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        if not params.reproducible:
            return await self.inner.complete(messages, params, model=model)
        adapter = self.adapter if model is None else (None if model == self.model else model)
        key = request_key(self.model, adapter, messages, params)
        stored = self.session.get(key)
        if stored is not None:
            return self._hit(stored)
        waiting = self.session.in_flight.get(key)
        if waiting is not None:
            await asyncio.wait({waiting})  # never raises what the first asker's request raised
            if not waiting.cancelled() and waiting.exception() is None:
                return self._hit(_stored(waiting.result()))
            return await self.complete(messages, params, model=model)  # that request failed: this one asks again (and may lead)
        answer: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self.session.in_flight[key] = answer
        try:
            completion = await self.inner.complete(messages, params, model=model)
        except Exception as exc:
            answer.set_exception(exc)
            answer.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        except BaseException:
            answer.cancel()
            raise
        finally:
            del self.session.in_flight[key]
        answer.set_result(completion)
        self.session.put(key, _stored(completion))
        return completion

    def _hit(self, stored: CachedReply) -> Completion:
        self.stats.cache_hits += 1
        return Completion(stored.text, stored.prompt_tokens, stored.completion_tokens, 0.0, stored.model,
                          usage=stored.usage, cached=True)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _stored(completion: Completion) -> CachedReply:
    return CachedReply(completion.text, completion.model, completion.prompt_tokens, completion.completion_tokens, completion.usage)


__all__ = ["OFF", "READ", "READ_WRITE", "CacheError", "CachingBackend", "ResponseCacheSession", "check_cache"]
