"""The adaptive in-flight limit: halves on throttling (once per round trip), grows by one per answer."""

from __future__ import annotations

import asyncio
import time

from esc_eval.agents.backends.base import BackendStats
from esc_eval.agents.backends.limiter import AdaptiveLimit


def limiter(maximum: int) -> AdaptiveLimit:
    return AdaptiveLimit(maximum, BackendStats("e"))


async def holders(limit: AdaptiveLimit, count: int) -> tuple[list[asyncio.Task[None]], list[int], asyncio.Event]:
    """``count`` tasks that each take a slot and hold it until ``release`` is set; ``held`` counts them."""
    held = [0]
    release = asyncio.Event()

    async def hold() -> None:
        async with limit:
            held[0] += 1
            await release.wait()
            held[0] -= 1

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks, held, release


async def test_at_most_limit_holders_like_a_semaphore() -> None:
    limit = limiter(3)
    tasks, held, release = await holders(limit, 5)
    assert held[0] == 3
    release.set()
    await asyncio.gather(*tasks)
    assert held[0] == 0 and limit.stats.limit == 3


async def test_throttling_halves_to_a_floor_of_one_and_answers_grow_it_back() -> None:
    limit = limiter(8)
    for expected in (4, 2, 1, 1):
        limit.throttled(time.perf_counter())  # each sent after the previous halving
        assert limit.stats.limit == expected
    assert limit.stats.limit_min == 1
    for expected in range(2, 9):
        limit.succeeded()
        assert limit.stats.limit == expected
    limit.succeeded()
    assert limit.stats.limit == 8 and limit.stats.limit_min == 1  # never above the configured maximum


async def test_one_halving_per_round_trip() -> None:
    limit = limiter(16)
    sent = time.perf_counter()  # a burst of requests all sent before the server started throttling
    for _ in range(10):
        limit.throttled(sent)
    assert limit.stats.limit == 8, "answers to requests sent before the halving tell nothing new"
    limit.throttled(time.perf_counter())
    assert limit.stats.limit == 4


async def test_a_lowered_limit_holds_back_new_requests_until_in_flight_drains_below_it() -> None:
    limit = limiter(4)
    tasks, held, release = await holders(limit, 4)
    limit.throttled(time.perf_counter())
    limit.throttled(time.perf_counter())  # limit 1 with 4 in flight: they finish, none starts
    assert limit.stats.limit == 1 and held[0] == 4
    late, late_held, late_release = await holders(limit, 3)
    assert late_held[0] == 0
    release.set()
    await asyncio.gather(*tasks)
    for _ in range(5):
        await asyncio.sleep(0)
    assert late_held[0] == 1, "only one may run at limit 1"
    limit.succeeded()  # an answer: limit 2, a waiter starts at once
    for _ in range(5):
        await asyncio.sleep(0)
    assert late_held[0] == 2
    late_release.set()
    await asyncio.gather(*late)


async def test_a_cancelled_waiter_neither_leaks_nor_loses_a_slot() -> None:
    limit = limiter(1)
    tasks, held, release = await holders(limit, 1)
    waiting, waiting_held, waiting_release = await holders(limit, 2)
    waiting[0].cancel()  # cancelled while queued
    release.set()  # frees the slot; it goes to the remaining waiter
    await asyncio.gather(*tasks)
    await asyncio.gather(waiting[0], return_exceptions=True)
    for _ in range(5):
        await asyncio.sleep(0)
    assert waiting_held[0] == 1
    waiting_release.set()
    await asyncio.gather(waiting[1])

    # granted, then cancelled before it ran: the slot is handed on, not kept
    tasks, held, release = await holders(limit, 1)
    waiting, waiting_held, waiting_release = await holders(limit, 2)
    release.set()
    await asyncio.sleep(0)  # the holder leaves and grants the first waiter...
    waiting[0].cancel()  # ...which is cancelled before it resumes
    await asyncio.gather(*tasks, waiting[0], return_exceptions=True)
    for _ in range(5):
        await asyncio.sleep(0)
    assert waiting_held[0] == 1
    waiting_release.set()
    await asyncio.gather(waiting[1])
    async with limit:  # nothing leaked: the slot is free
        pass
