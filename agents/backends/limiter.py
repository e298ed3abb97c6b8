"""An in-flight limit that halves while a server throttles and grows back as it answers (AIMD).

A fixed semaphore keeps hammering a server that answers 429/503 with as many requests as
it allows; TCP's congestion control, and Inspect AI's adaptive connections, back off
multiplicatively instead and probe upward additively. ``AdaptiveLimit`` is a semaphore
whose capacity moves: ``throttled()`` halves it (at least 1), at most once per round trip,
``succeeded()`` adds one up to the maximum. Requests above a lowered limit finish; no new
one starts until the count is under it.

The uncontended path is a counter compare; only a waiting request allocates (its future).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import TracebackType

from esc_eval.agents.backends.base import BackendStats


class AdaptiveLimit:
    """At most ``limit`` holders at once; ``limit`` moves between 1 and ``maximum``.

    Args:
        maximum: the configured ``max_connections``; also the starting limit.
        stats: the endpoint's counters; ``limit`` and ``limit_min`` are kept there for the monitor.
    """

    def __init__(self, maximum: int, stats: BackendStats):
        self.maximum = maximum
        self.stats = stats
        stats.limit = stats.limit_min = maximum
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._decreased_at = float("-inf")

    async def acquire(self) -> None:
        if self._held < self.stats.limit and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just before the cancel: hand the slot on
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._held -= 1
        self._wake()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def throttled(self, sent_at: float) -> None:
        """The server throttled a request sent at ``sent_at`` (``time.perf_counter()``): halve the limit.

        Requests already in flight when the limit last halved tell nothing new (the server
        saw the old load), so one round trip costs at most one halving.
        """
        if sent_at < self._decreased_at:
            return
        stats = self.stats
        self._decreased_at = time.perf_counter()
        stats.limit = max(1, stats.limit // 2)
        stats.limit_min = min(stats.limit_min, stats.limit)

    def succeeded(self) -> None:
        """An answer came: one more request may be in flight, up to the maximum."""
        if self.stats.limit < self.maximum:
            self.stats.limit += 1
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self._held < self.stats.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
