"""The caching backend: hits send nothing and say so, misses are stored, modes, what is cacheable, the key's parts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.config import EndpointConfig
from esc_eval.runs.execution.caching import CachingBackend, ResponseCacheSession
from esc_eval.runs.execution.pool import BackendPool
from esc_eval.runs.store.cache import ResponseCache

ASK: list[ChatMessage] = [{"role": "user", "content": "I cannot sleep."}]
GREEDY = SamplingParams(max_tokens=32, temperature=0.0)
SEEDED = SamplingParams(max_tokens=32, temperature=0.8, seed=5)


def by_request(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    return f"{model} heard {len(messages)} (seed {params.seed})"


def stored(path: Path) -> int:
    cache = ResponseCache.open(path, writable=False)
    try:
        return len(cache)
    finally:
        cache.close()


def test_only_greedy_and_seeded_requests_are_cacheable() -> None:
    assert GREEDY.reproducible and SEEDED.reproducible and SamplingParams(temperature=None, seed=1).reproducible
    assert not SamplingParams(temperature=0.8).reproducible and not SamplingParams().reproducible  # unset: the server's default samples


async def test_a_hit_sends_nothing_and_is_marked_cached_with_the_stored_usage(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    inner = ScriptedBackend(by_request, model="m")
    session = ResponseCacheSession(path, "read-write")
    backend = CachingBackend(inner, session, model="m")
    first = await backend.complete(ASK, SEEDED)
    again = await backend.complete(ASK, SEEDED)
    assert len(inner.requests) == 1 and not first.cached
    assert again.cached and again.latency == 0.0 and again.retries == 0
    assert (again.text, again.model, again.prompt_tokens, again.completion_tokens, again.usage) == (
        first.text, first.model, first.prompt_tokens, first.completion_tokens, "counted")
    assert backend.stats is inner.stats and (inner.stats.requests, inner.stats.cache_hits) == (1, 1)  # a hit is not a request
    assert inner.stats.completion_tokens == first.completion_tokens
    await session.aclose()
    assert stored(path) == 1

    inner2 = ScriptedBackend(by_request, model="m")  # another run, another process: the file answers
    session2 = ResponseCacheSession(path, "read-write")
    later = await CachingBackend(inner2, session2, model="m").complete(ASK, SEEDED)
    assert later.cached and later.text == first.text and inner2.requests == []
    other_seed = await CachingBackend(inner2, session2, model="m").complete(ASK, SamplingParams(max_tokens=32, temperature=0.8, seed=6))
    assert not other_seed.cached and len(inner2.requests) == 1
    await session2.aclose()


async def test_unseeded_sampling_is_always_sent_and_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    inner = ScriptedBackend(by_request)
    session = ResponseCacheSession(path, "read-write")
    backend = CachingBackend(inner, session, model="scripted")
    for params in (SamplingParams(temperature=0.8), SamplingParams()):
        for _ in range(2):
            assert not (await backend.complete(ASK, params)).cached
    assert len(inner.requests) == 4 and inner.stats.cache_hits == 0
    await session.aclose()
    assert stored(path) == 0


async def test_read_mode_uses_the_cache_and_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    writer = ResponseCacheSession(path, "read-write")
    await CachingBackend(ScriptedBackend(by_request), writer, model="m").complete(ASK, GREEDY)
    await writer.aclose()
    before = path.read_bytes()
    inner = ScriptedBackend(by_request)
    reader = ResponseCacheSession(path, "read")
    backend = CachingBackend(inner, reader, model="m")
    assert (await backend.complete(ASK, GREEDY)).cached
    miss = await backend.complete(ASK + [{"role": "user", "content": "more"}], GREEDY)
    assert not miss.cached and len(inner.requests) == 1
    assert not (await backend.complete(ASK + [{"role": "user", "content": "more"}], GREEDY)).cached  # not stored, not even in memory
    await reader.aclose()
    assert stored(path) == 1 and path.read_bytes() == before


async def test_the_adapter_a_request_names_is_part_of_the_key(tmp_path: Path) -> None:
    inner = ScriptedBackend(by_request, model="base")
    session = ResponseCacheSession(tmp_path / "cache.sqlite", "read-write")
    backend = CachingBackend(inner, session, model="base")
    await backend.complete(ASK, GREEDY, model="fluency_en")
    assert not (await backend.complete(ASK, GREEDY, model="empathic_en")).cached
    assert (await backend.complete(ASK, GREEDY, model="fluency_en")).cached
    await backend.complete(ASK, GREEDY)
    assert (await backend.complete(ASK, GREEDY, model="base")).cached  # naming the endpoint's own model is no adapter
    seeker = CachingBackend(inner, session, model="base", adapter="seeker")  # a local engine answers the role with its adapter
    assert not (await seeker.complete(ASK, GREEDY)).cached
    assert [model for _, _, model in inner.requests] == ["fluency_en", "empathic_en", "base", "base"]
    await session.aclose()


async def test_identical_requests_in_flight_send_one_and_a_failure_is_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    inner = ScriptedBackend(by_request, delay=0.05)
    session = ResponseCacheSession(path, "read-write")
    backend = CachingBackend(inner, session, model="scripted")
    replies = await asyncio.gather(*(backend.complete(ASK, GREEDY) for _ in range(5)))
    assert len(inner.requests) == 1 and {r.text for r in replies} == {replies[0].text}
    assert sorted(r.cached for r in replies) == [False] + [True] * 4 and inner.stats.cache_hits == 4

    calls = 0

    def fails_once(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ServerError("injected")
        return "second try"

    flaky = CachingBackend(ScriptedBackend(fails_once, delay=0.05), session, model="flaky")
    first, second = await asyncio.gather(flaky.complete(ASK, GREEDY), flaky.complete(ASK, GREEDY), return_exceptions=True)
    assert isinstance(first, ServerError) and not isinstance(second, BaseException) and second.text == "second try"
    assert not second.cached  # the waiter sent its own request: it was paid for
    await session.aclose()
    assert stored(path) == 2


async def test_the_pool_caches_every_endpoint_and_the_url_is_not_part_of_the_key(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """Two servers with the same model: what one answered, the other is never asked. Backend objects passed in are not cached."""
    one, two = await fake_server(), await fake_server()
    path = tmp_path / "cache.sqlite"
    pool = BackendPool({"custom": ScriptedBackend()}, cache=(path, "read-write"))
    first = pool.get("a", EndpointConfig(base_url=one.base_url, model="same"))
    second = pool.get("b", EndpointConfig(base_url=two.base_url, model="same"))
    assert isinstance(first, CachingBackend) and isinstance(second, CachingBackend) and first is not second
    assert not isinstance(pool.get("custom", EndpointConfig()), CachingBackend)
    asked = await first.complete(ASK, GREEDY)
    answered = await second.complete(ASK, GREEDY)
    assert answered.cached and answered.text == asked.text and len(one.requests) == 1 and two.requests == []
    assert not (await pool.get("c", EndpointConfig(base_url=two.base_url, model="other")).complete(ASK, GREEDY)).cached
    await pool.aclose()
    assert stored(path) == 2

    plain = BackendPool(cache=(path, "off"))
    assert not isinstance(plain.get("a", EndpointConfig(base_url=one.base_url, model="same")), CachingBackend)
    await plain.aclose()
    assert plain.cache is None


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache mode 'off'"):
        ResponseCacheSession(tmp_path / "c.sqlite", "off")


async def test_the_monitor_shows_hits_apart_from_requests(tmp_path: Path) -> None:
    from esc_eval.runs.execution.progress import RunProgress
    from esc_eval.runs.monitor import LiveSource, render
    from esc_eval.runs.monitor.render import plain_text

    inner = ScriptedBackend(by_request, name="judge")
    session = ResponseCacheSession(tmp_path / "cache.sqlite", "read-write")
    backend = CachingBackend(inner, session, model="m")
    for _ in range(3):
        await backend.complete(ASK, GREEDY)
    await session.aclose()
    view = LiveSource(RunProgress(), [backend.stats]).snapshot().endpoints[0]
    assert (view.name, view.requests, view.cache_hits) == ("judge", 1, 2)
    assert "1 +2 cached" in plain_text(render(LiveSource(RunProgress(), [backend.stats]).snapshot(), plain=True))


async def test_a_damaged_page_found_mid_run_is_a_miss_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.sqlite"
    writer = ResponseCacheSession(path, "read-write")
    backend = CachingBackend(ScriptedBackend(lambda m, p, model: "a short reply"), writer, model="m")
    asks: list[list[ChatMessage]] = [[{"role": "user", "content": f"question {i}"}] for i in range(2000)]
    for ask in asks:
        await backend.complete(ask, GREEDY)
    await writer.aclose()
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third: 2 * third] = bytes(third)
    path.write_bytes(bytes(data))  # the meta pages at the front are whole; leaf pages in the middle are zeros
    inner = ScriptedBackend(lambda m, p, model: "a short reply")
    reader = ResponseCacheSession(path, "read")
    backend = CachingBackend(inner, reader, model="m")
    with caplog.at_level("WARNING", logger="esc_eval.runs.execution.caching"):
        replies = [await backend.complete(ask, GREEDY) for ask in asks]
    await reader.aclose()
    assert all(r.text == "a short reply" for r in replies) and inner.requests  # answered by the server instead
    assert len([r for r in caplog.records if "cannot read a reply" in r.getMessage()]) == 1


async def test_hits_generate_no_tokens_live_or_read_from_the_store(tmp_path: Path) -> None:
    """The monitor's token counts (and rates) are tokens generated: a cache hit's stored counts are not in them."""
    import time

    from esc_eval.agents.messages import TurnTaken
    from esc_eval.runs.execution.progress import RunProgress
    from esc_eval.runs.monitor import LiveSource, StoreSource
    from esc_eval.runs.store import PlannedEpisode, Store

    path, key = tmp_path / "run.sqlite", "a/default/c/s0/r0"
    store = Store.open(path, create=True)
    store.set_meta(config={"run": {"name": "hits"}})
    store.plan([PlannedEpisode(key, 0, 0, "c", "en", "work", "test", "a", "default", 0, 0)])
    progress = RunProgress(planned=1)
    await store.start_writer()
    store.start_episode(key)
    for turn in (TurnTaken(key, 1, "seeker", "sent", 5, 10, 0.1, time.time()),
                 TurnTaken(key, 2, "supporter", "hit", 5, 7, 0.0, time.time(), cached=True),
                 TurnTaken(key, 3, "seeker", "hit too", 5, 9, 0.0, time.time(), cached=True)):
        store.add_turn(turn)
        progress.turn(turn)
    await store.close()
    live = LiveSource(progress).snapshot()
    source = StoreSource(path)
    try:
        stored = source.snapshot()
    finally:
        source.close()
    assert (live.tokens["seeker"], live.tokens["supporter"]) == (stored.tokens["seeker"], stored.tokens["supporter"]) == (10, 0)
    assert live.turns == stored.turns == 3
