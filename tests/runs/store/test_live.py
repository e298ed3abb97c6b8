"""Reading a store while its run writes it: each row counted once, typed results, a busy store said so."""

from __future__ import annotations

import asyncio
import io
import math
import sqlite3
import time
from pathlib import Path

import pytest

from esc_eval.agents.messages import TurnTaken
from esc_eval.runs.monitor import StoreSource, watch
from esc_eval.runs.monitor.snapshot import Snapshot
from esc_eval.runs.store import FINAL_ROUND, PlannedEpisode, Store, StoreError
from esc_eval.runs.store.live import EventCount, LiveReader, LiveTurn, ScoreTally, StoreBusy, TurnCount


def planned(key: str, ordinal: int, supporter: str) -> PlannedEpisode:
    return PlannedEpisode(key, ordinal, ordinal, f"card{ordinal}", "en", "work", "test", supporter, "default", 0, ordinal)


class Writer:
    """A store written through its writer task, with a way to wait until what was queued is on disk."""

    def __init__(self, store: Store):
        self.store, self.queued = store, 0

    def turn(self, key: str, index: int, role: str, tokens: int, latency: float) -> None:
        self.store.add_turn(TurnTaken(key, index, role, f"{role} {index}", 5, tokens, latency, time.time()))
        self.queued += 1

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self.store, name)

        def queued(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.queued += 1
            return method(*args, **kwargs)
        return queued

    async def written(self) -> None:
        async def wait() -> None:
            while self.store.writes < self.queued:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(wait(), 10)


async def open_pair(path: Path) -> tuple[Writer, LiveReader]:
    store = Store.open(path, create=True)
    store.plan([planned("alpha/e0", 0, "alpha"), planned("beta/e1", 1, "beta"), planned("beta/e2", 2, "beta")])
    await store.start_writer()
    return Writer(store), LiveReader(Store.open(path, readonly=True), recent=2)


async def test_each_turn_score_and_event_is_read_once(tmp_path: Path) -> None:
    writer, reader = await open_pair(tmp_path / "run.sqlite")
    try:
        writer.start_episode("alpha/e0")
        writer.turn("alpha/e0", 0, "supporter", 0, 0.0)  # the fixed opener: no request behind it
        writer.turn("alpha/e0", 1, "seeker", 10, 0.5)
        writer.turn("alpha/e0", 2, "supporter", 20, 0.25)
        writer.add_event("retry:429", "slow down", endpoint="seeker")
        writer.add_event("retry:429", "slow down", endpoint="seeker")
        writer.add_score("alpha/e0", "fluency", 3, "3", "judge", 0.75)
        await writer.written()

        first = reader.new_turns()
        assert set(first.counts) == {TurnCount("seeker", "alpha", 1, 10, 1), TurnCount("supporter", "alpha", 2, 20, 1)}
        assert [(t.role, t.seconds) for t in first.latencies] == [("seeker", 0.5), ("supporter", 0.25)]
        assert reader.new_events() == (EventCount("seeker", "retry:429", 2),)
        scores = reader.new_scores()
        assert scores.ok == 1 and scores.latencies == (0.75,)
        seen = reader.scores_seen

        assert reader.new_turns().counts == () and reader.new_events() == () and reader.new_scores().ok == 0
        assert reader.scores_seen == seen

        writer.start_episode("beta/e1")
        for index in range(4):
            writer.turn("beta/e1", index, "seeker" if index % 2 else "supporter", 1, 0.1 * (index + 1))
        writer.add_score("beta/e1", "fluency", None, None, "judge", 0.5, status="failed")
        await writer.written()
        second = reader.new_turns()
        assert {(c.role, c.supporter, c.turns) for c in second.counts} == {("seeker", "beta", 2), ("supporter", "beta", 2)}
        assert [t.seconds for t in second.latencies] == pytest.approx([0.1, 0.2, 0.3, 0.4])  # 4 * recent turns at most
        failed = reader.new_scores()
        assert failed.ok == 0 and failed.latencies == () and reader.scores_seen > seen  # a failed score still moves on
    finally:
        await writer.store.close()
        reader.store.close_sync()


async def test_spotlight_reads_and_episode_lookup(tmp_path: Path) -> None:
    writer, reader = await open_pair(tmp_path / "run.sqlite")
    try:
        for key in ("alpha/e0", "beta/e1"):
            writer.start_episode(key)
            for index in range(3):
                writer.turn(key, index, "supporter" if index % 2 == 0 else "seeker", 1, 0.1)
        writer.end_episode("alpha/e0", "terminated", "bye", time.time())
        writer.add_score("alpha/e0", "fluency", 4, "4", "judge", 0.3)
        writer.add_score("alpha/e0", "empathy", 9, "9", "judge", 0.3)  # off the 0..4 scale: counted, not averaged
        writer.add_score("alpha/e0", "fluency", 1, "1", "judge", 0.3, round=1)  # a per-round score: not final
        await writer.written()
        reader.new_turns()

        assert reader.newest_episode() == "beta/e1" and reader.newest_episode(exclude="beta/e1") == "alpha/e0"
        assert reader.last_turns("alpha/e0", 2) == (LiveTurn(1, "seeker", "seeker 1", None), LiveTurn(2, "supporter", "supporter 2", None))
        assert reader.episode_state("alpha/e0") is not None and reader.episode_state("alpha/e0").outcome == "terminated"  # type: ignore[union-attr]
        assert reader.episode_state("nope") is None
        assert reader.status_counts() == {"done": 1, "running": 1, "planned": 1}
        assert reader.outcome_counts() == {"terminated": 1}
        assert FINAL_ROUND != 1 and set(reader.final_score_tallies()) == {
            ScoreTally("alpha", "fluency", 4, 1, 1, 0, 4.0), ScoreTally("alpha", "empathy", 0, 0, 1, 0, math.nan)}
        assert reader.first_start() is not None and reader.last_end() is not None

        assert reader.find_episode("alpha/e0") == "alpha/e0" and reader.find_episode("e2") == "beta/e2"
        with pytest.raises(StoreError, match="no episode key contains 'gamma'"):
            reader.find_episode("gamma")
        with pytest.raises(StoreError, match="matches several episodes"):
            reader.find_episode("beta/")
    finally:
        await writer.store.close()
        reader.store.close_sync()


async def test_a_read_sqlite_refuses_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    writer, reader = await open_pair(path)
    try:
        with sqlite3.connect(path) as raw:  # what the reader sees of a store it cannot read just now
            raw.execute("ALTER TABLE events RENAME TO events_elsewhere")
        with pytest.raises(StoreBusy, match="no such table: events"):
            reader.new_events()
        assert issubclass(StoreBusy, StoreError)  # the command line reports it as any store error
    finally:
        await writer.store.close()
        reader.store.close_sync()


async def test_the_monitor_waits_out_a_busy_store(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    writer, reader = await open_pair(path)
    reader.store.close_sync()
    source = StoreSource(path)
    await writer.store.close()
    refusals = []
    real = source.snapshot

    def busy_twice() -> Snapshot:
        if len(refusals) < 2:
            refusals.append(1)
            raise StoreBusy("database is locked")
        return real()

    source.snapshot = busy_twice  # type: ignore[method-assign]
    try:
        snapshot = await asyncio.wait_for(watch(source, live=False, interval=0.01, exit_when_finished=True, out=io.StringIO()), 10)
    finally:
        source.close()
    assert len(refusals) == 2 and snapshot.total == 3 and snapshot.finished
