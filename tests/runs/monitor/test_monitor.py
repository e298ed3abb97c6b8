"""The monitor: one snapshot shape from live counters and from a store, rendered alike, cheap to refresh."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import fields
from pathlib import Path

import pytest
from rich.console import Console

from esc_eval.agents.backends.base import BackendStats
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.judge.profiles import DIMENSIONS
from esc_eval.agents.messages import Completion, EpisodeEnded, TurnTaken
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.monitor import (
    Dashboard,
    LiveSource,
    RateMeter,
    Snapshot,
    StoreSource,
    monitor_command,
    percentile,
    render,
    run_with_monitor,
    watch,
)
from esc_eval.runs.store import PlannedEpisode, Store, StoreError

WIDTH = 140


def text_of(snapshot: Snapshot) -> str:
    console = Console(record=True, width=WIDTH, file=io.StringIO())
    console.print(render(snapshot))
    return console.export_text()


def hour_old_progress(**counters: int) -> RunProgress:
    progress = RunProgress(**counters)  # type: ignore[arg-type]
    progress.started -= 3600
    return progress


# -- a live run's counters ------------------------------------------------------------------------


def sample_progress() -> tuple[RunProgress, list[BackendStats]]:
    progress = hour_old_progress(planned=1000, skipped=100, active=64, done=590, failed=10, turns=6543)
    progress.tokens_out.update(seeker=120_000, supporter=240_000, judge=0)
    progress.outcomes.update(terminated=300, truncated=290, failed=10)
    progress.judge_dimensions = 7
    for supporter, labels in (("alpha", (4, 3)), ("beta", (2, 1))):
        for dimension in DIMENSIONS:
            progress.judge_queued(2)
            for label in labels:
                progress.score(supporter, dimension, label)
    progress.judge_queued(5)
    seeker = BackendStats("seeker", requests=3000, in_flight=41, retries=7,
                          faults=Counter({"429": 5, "timeout": 2, "http": 1}), latencies=[i / 1000 for i in range(1, 101)],
                          limit=6, limit_min=2, throttled_waits=5, throttled_seconds=12.4)
    alpha = BackendStats("alpha", requests=1700, in_flight=23, latencies=[2.0] * 10)
    judge = BackendStats("judge", requests=28, in_flight=5, completion_tokens=280, faults=Counter({"5xx": 3}), retries=3)
    return progress, [seeker, alpha, judge]


def test_live_snapshot_renders_progress_counts_latency_faults_and_leaderboard() -> None:
    progress, stats = sample_progress()
    snapshot = LiveSource(progress, stats, title="unit").snapshot()
    assert (snapshot.total, snapshot.completed, snapshot.active, snapshot.queued) == (1000, 700, 64, 236)
    assert snapshot.judge_pending == 5 and snapshot.judge_done == 28
    assert snapshot.tokens["judge"] == 280  # taken from the judge endpoint while progress does not count them
    seeker = snapshot.endpoints[0]
    assert (seeker.p50, seeker.p95, seeker.in_flight) == (0.05, 0.095, 41)
    assert [row.supporter for row in snapshot.leaderboard] == ["alpha", "beta"]
    assert snapshot.leaderboard[0].values["overall"] == 87.5 and snapshot.leaderboard[1].values["empathic"] == 37.5

    text = text_of(snapshot)
    assert "700/1,000" in text and "70.0%" in text and "ETA" in text
    assert "active 64" in text and "queued 236" in text and "done 590" in text and "failed 10" in text
    assert "skipped 100" in text and "terminated 300" in text
    assert "backlog 5 scores pending" in text and "28 scored" in text
    assert "50ms" in text and "95ms" in text and "2.00s" in text
    assert "429:5 timeout:2 http:1" in text and "5xx:3" in text
    assert "5 · 12s · limit 6 (min 2)" in text  # throttled waits, and the in-flight limit they drove down
    for name in ("Fluency", "Expression", "Empathy", "Information", "Skillful", "Humanoid", "Overall"):
        assert name in text
    alpha_row = [line for line in text.splitlines() if line.strip().startswith("alpha")][-1]  # endpoint, then leaderboard
    assert alpha_row.split()[1:] == ["2"] + ["87.5"] * 7
    assert "\x1b" not in text


def test_rates_come_from_the_recent_window() -> None:
    meter = RateMeter(window=10)
    meter.add(0.0, {"turns": 0})
    assert meter.rate("turns") is None
    meter.add(5.0, {"turns": 50})
    meter.add(20.0, {"turns": 350})
    assert meter.rate("turns") == pytest.approx(300 / 15)  # the sample at 0 s fell out of the window
    assert percentile([], 0.5) is None and percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0


def test_score_keeps_running_means_and_the_backlog() -> None:
    progress = RunProgress(judge_dimensions=2)
    progress.ended(EpisodeEnded("a/1", "en", "terminated", "bye"))
    progress.ended(EpisodeEnded("a/2", "en", "failed", "500"))  # failed episodes are not judged
    assert progress.judge_pending == 2
    progress.score("a", "fluency", 3)
    progress.score("a", "overall", -1)  # no label in the answer: answered, not averaged
    progress.score("a", "overall", None)  # request failed
    progress.score("a", "fluency", 4)
    assert progress.judge_pending == 0 and progress.judge_done == 4 and progress.judge_failed == 1
    assert progress.leaderboard() == {"a": {"fluency": 87.5}}


def test_running_means_count_each_card_once_as_the_report_does() -> None:
    """Card 0 has two episodes (4 and 0), card 1 one (0): the report's score is (2 + 0) / 2 × 25 = 25, not 4/3 × 25."""
    progress = RunProgress()
    progress.cards.update({"e1": "en:0", "e2": "en:0", "e3": "en:1"})
    for episode, label in (("e1", 4), ("e2", 0), ("e3", 0)):
        progress.score("a", "overall", label, episode)
    assert progress.leaderboard() == {"a": {"overall": 25.0}}
    progress.score("a", "overall", 2, "e2")                          # a second judge sample of e2: its mean is 1
    assert progress.leaderboard()["a"]["overall"] == pytest.approx((4 + 1) / 2 / 2 * 25)


def test_spotlight_cycles_to_the_next_episode_and_can_follow_one() -> None:
    progress = RunProgress(spotlight_dwell=0)
    progress.turn(TurnTaken("e1", 0, "supporter", "hello"))
    progress.turn(TurnTaken("e2", 0, "supporter", "hello"))
    progress.turn(TurnTaken("e1", 1, "seeker", "I am sad"))
    assert progress.spotlight_key == "e1" and [t.text for t in progress.spotlight] == ["hello", "I am sad"]
    progress.ended(EpisodeEnded("e1", "en", "truncated", "rounds"))
    assert progress.spotlight_outcome == "truncated"
    progress.turn(TurnTaken("e2", 1, "seeker", "still e2"))  # not a new episode: e1 stays on screen
    assert progress.spotlight_key == "e1"
    progress.turn(TurnTaken("e3", 0, "supporter", "hello e3"))
    assert progress.spotlight_key == "e3" and progress.spotlight_outcome is None
    progress.follow("e2")
    progress.turn(TurnTaken("e2", 2, "supporter", "for e2"))
    progress.turn(TurnTaken("e4", 0, "supporter", "hello e4"))
    assert progress.spotlight_key == "e2" and [t.text for t in progress.spotlight] == ["for e2"]


# -- refresh cost: counters only ------------------------------------------------------------------


class CountingProgress(RunProgress):
    reads = 0

    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        if not name.startswith("__"):
            type(self).reads += 1
        return super().__getattribute__(name)


def busy_progress(episodes: int) -> CountingProgress:
    progress = CountingProgress(planned=episodes * 2, judge_dimensions=7)
    for i in range(episodes):
        progress.active += 1
        progress.turn(TurnTaken(f"sup{i % 3}/default/{i:05d}/s0/r0", 0, "supporter", "hello", 0, 0, 0.0))
        progress.turn(TurnTaken(f"sup{i % 3}/default/{i:05d}/s0/r0", 1, "seeker", "I feel alone", 10, 4, 0.3))
        if i % 2:
            progress.ended(EpisodeEnded(f"sup{i % 3}/default/{i:05d}/s0/r0", "en", "terminated", "bye"))
            progress.active -= 1
            for dimension in DIMENSIONS:
                progress.score(f"sup{i % 3}", dimension, i % 5)
    return progress


def test_snapshot_reads_counters_not_episodes() -> None:
    """A refresh must cost the same with 5,000 episodes in flight as with 10 (timings live in benchmarks/)."""
    small, large = busy_progress(10), busy_progress(5000)
    assert large.active == 2500 and large.turns == 10_000
    for field in fields(RunProgress):  # no collection grows with the number of episodes
        value = getattr(large, field.name)
        if isinstance(value, (list, dict, set, deque, tuple)):
            assert len(value) < 50, field.name
    stats = [BackendStats("seeker", latencies=[0.1] * 2048)]
    reads = []
    for progress in (small, large):
        source = LiveSource(progress, stats)
        CountingProgress.reads = 0
        source.snapshot()
        reads.append(CountingProgress.reads)
    assert reads[0] == reads[1]


# -- the same run through its store ------------------------------------------------------------------


def planned(key: str, ordinal: int, supporter: str) -> PlannedEpisode:
    return PlannedEpisode(key, ordinal, ordinal, f"card{ordinal}", "en", "work", "test", supporter, "default", 0, ordinal)


class Twin:
    """Feeds the same events to a store and to live counters, as the runner does."""

    def __init__(self, store: Store, progress: RunProgress):
        self.store, self.progress = store, progress
        self.stats = {name: BackendStats(name, listener=self._event) for name in ("seeker", "alpha", "beta", "judge")}

    def _event(self, endpoint: str, kind: str, detail: str) -> None:
        self.store.add_event(kind, detail, endpoint=endpoint)

    def start(self, key: str) -> None:
        self.store.start_episode(key)
        self.progress.active += 1

    def turn(self, key: str, supporter: str, index: int, role: str, text: str, tokens: int, latency: float) -> None:
        turn = TurnTaken(key, index, role, text, 5, tokens, latency, time.time())
        self.store.add_turn(turn)
        self.progress.turn(turn)
        if latency:  # the opener is not generated
            self.stats["seeker" if role == "seeker" else supporter].done(Completion(text, 5, tokens, latency))

    def end(self, key: str, outcome: str) -> None:
        self.store.end_episode(key, outcome, "test", time.time())
        self.progress.ended(EpisodeEnded(key, "en", outcome, "test"))
        self.progress.active -= 1

    def score(self, key: str, supporter: str, dimension: str, label: int | None, latency: float) -> None:
        status = "ok" if label is not None else "failed"
        self.store.add_score(key, dimension, label, None if label is None else f"{label}", "rank", latency, status=status)
        self.progress.score(supporter, dimension, label, key)
        if label is not None:
            self.stats["judge"].done(Completion(str(label), 50, 1, latency))


async def fill(path: Path) -> tuple[RunProgress, list[BackendStats]]:
    """Five planned episodes: three finished (one failed), one running, one never started."""
    keys = [("alpha/default/00000-card0/s0/r0", "alpha"), ("alpha/default/00001-card1/s0/r0", "alpha"),
            ("beta/default/00000-card0/s0/r0", "beta"), ("beta/default/00001-card1/s0/r0", "beta"),
            ("beta/default/00002-card2/s0/r0", "beta")]
    store = Store.open(path, create=True)
    store.set_meta(config={"run": {"name": "twin"}, "judge": {"profile": "default"}})
    store.plan(planned(key, i, supporter) for i, (key, supporter) in enumerate(keys))
    progress = hour_old_progress(planned=5, judge_dimensions=len(DIMENSIONS))
    twin = Twin(store, progress)
    await store.start_writer()
    for n, (key, supporter) in enumerate(keys[:4]):
        twin.start(key)
        twin.turn(key, supporter, 0, "supporter", "Hello, how are you feeling today?", 0, 0.0)
        for i in range(1, 5):
            role = "seeker" if i % 2 else "supporter"
            twin.turn(key, supporter, i, role, f"line {i} of {key}", 10 * i + n, 0.1 * i + 0.01 * n)
        if n == 2:
            twin.stats["beta"].fault("5xx", "HTTP 503", retried=True)
            twin.stats["beta"].fault("timeout", "120 s", retried=False)
            twin.end(key, "failed")
        elif n < 2:
            twin.end(key, "terminated" if n == 0 else "truncated")  # episode 3 is left running
    twin.stats["seeker"].fault("429", "slow down", retried=True)
    twin.stats["seeker"].fault("429", "slow down", retried=True)
    for (key, supporter), labels in zip(keys[:2], ((4, 3, 3, 2, 4, 3, 4), (2, None, 3, -1, 1, 2, 3))):
        for dimension, label in zip(DIMENSIONS, labels):
            twin.score(key, supporter, dimension, label, 0.2 + 0.01 * (label or 0))
    await store.close()
    return progress, list(twin.stats.values())


async def test_store_source_gives_the_numbers_the_live_counters_give(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    progress, stats = await fill(path)
    live = LiveSource(progress, stats).snapshot()
    source = StoreSource(path)
    try:
        stored = source.snapshot()
    finally:
        source.close()

    for name in ("total", "done", "failed", "active", "queued", "turns", "judge_pending", "judge_done", "judge_failed"):
        assert getattr(stored, name) == getattr(live, name), name
    assert (stored.total, stored.done, stored.failed, stored.active, stored.queued) == (5, 2, 1, 1, 1)
    assert stored.judge_pending == 0 and stored.judge_done == 14 and stored.judge_failed == 1
    assert dict(stored.outcomes) == dict(live.outcomes) == {"terminated": 1, "truncated": 1, "failed": 1}
    assert stored.tokens["seeker"] == live.tokens["seeker"] and stored.tokens["supporter"] == live.tokens["supporter"]
    assert stored.tokens["judge"] is None  # scores do not record tokens
    by_name = {e.name: e for e in live.endpoints}
    assert {e.name for e in stored.endpoints} == set(by_name)
    for endpoint in stored.endpoints:
        twin = by_name[endpoint.name]
        assert (endpoint.requests, endpoint.p50, endpoint.p95, endpoint.retries, dict(endpoint.faults)) == (
            twin.requests, twin.p50, twin.p95, twin.retries, dict(twin.faults)), endpoint.name
        assert endpoint.in_flight is None
    assert dict(by_name["seeker"].faults) == {"429": 2} and by_name["seeker"].retries == 2
    assert dict(by_name["beta"].faults) == {"5xx": 1, "timeout": 1} and by_name["beta"].retries == 1
    assert stored.dimensions == live.dimensions == DIMENSIONS
    assert [(r.supporter, r.scored, dict(r.values)) for r in stored.leaderboard] == [
        (r.supporter, r.scored, dict(r.values)) for r in live.leaderboard]
    alpha = stored.leaderboard[0]
    assert alpha.scored == 2 and alpha.values["fluency"] == 75.0 and alpha.values["diversity"] == 75.0
    assert alpha.values["suggestion"] == 50.0  # labels 2 and -1: the -1 (no label) is left out of the mean

    def section(text: str, start: str, end: str) -> str:
        return text[text.index(start):text.index(end)]

    live_text, stored_text = text_of(live), text_of(stored)
    assert section(stored_text, "Leaderboard", "Episode") == section(live_text, "Leaderboard", "Episode")
    assert section(stored_text, "Episodes", "Turns") == section(live_text, "Episodes", "Turns")
    assert section(stored_text, "Judge", "Endpoints") == section(live_text, "Judge", "Endpoints")


async def test_following_an_episode_shows_its_turns_in_both_views(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    key = "alpha/default/00001-card1/s0/r0"
    await fill(path)
    source = StoreSource(path, episode="alpha/default/00001")  # a unique part of a key will do
    try:
        stored = source.snapshot()
    finally:
        source.close()
    assert stored.spotlight_key == key and stored.following
    assert [line.index for line in stored.spotlight] == [0, 1, 2, 3, 4]
    assert stored.spotlight[2].text == f"line 2 of {key}" and stored.spotlight_outcome == "truncated"
    text = text_of(stored)
    assert f"Episode {key}  (following, truncated)" in text and f"line 4 of {key}" in text

    live = RunProgress()
    live.follow(key)
    live.turn(TurnTaken("other", 0, "supporter", "not this one"))
    for line in stored.spotlight:
        live.turn(TurnTaken(key, line.index, line.role, line.text))
    live.ended(EpisodeEnded(key, "en", "truncated", "rounds"))
    assert LiveSource(live).snapshot().spotlight == stored.spotlight

    with pytest.raises(StoreError, match="no episode key contains"):
        StoreSource(path, episode="nope")
    with pytest.raises(StoreError, match="several"):
        StoreSource(path, episode="alpha/")


async def test_store_source_knows_when_the_run_is_over(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    store = Store.open(path, create=True)
    store.plan([planned("alpha/x", 0, "alpha")])
    await store.start_writer()
    store.start_episode("alpha/x")
    store.add_turn(TurnTaken("alpha/x", 0, "supporter", "hi", 0, 3, 0.2, time.time()))
    store.end_episode("alpha/x", "terminated", "bye", time.time())
    await store.close()
    source = StoreSource(path)
    try:
        snapshot = await asyncio.wait_for(watch(source, live=False, interval=0.01, exit_when_finished=True, out=io.StringIO()), 10)
    finally:
        source.close()
    assert snapshot.finished and snapshot.state == "finished" and snapshot.judge_pending is None
    assert "no judge in this run" in text_of(snapshot)


# -- plain output -----------------------------------------------------------------------------------


async def test_plain_reporter_prints_lines_and_a_summary_without_control_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # even when the environment asks for colour
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    progress, stats = sample_progress()
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(watch(LiveSource(progress, stats), live=False, interval=0.02, stop=stop, out=out))
    await asyncio.sleep(0.1)
    progress.done += 10
    stop.set()
    await task
    text = out.getvalue()
    assert "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert len(lines) >= 2 and "episodes 700/1,000 (70.0%)" in lines[0]
    assert "errors 429:5 5xx:3 timeout:2 http:1" in lines[0] and "throttled waits 5 |" in lines[0]
    assert "710/1,000" in text and "Leaderboard" in text and "87.5" in text


async def test_monitor_once_prints_one_plain_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    path = tmp_path / "run.sqlite"
    await fill(path)
    assert monitor_command(path, None, True, None) == 0  # stdout is not a terminal under pytest
    text = capsys.readouterr().out
    assert "\x1b" not in text
    assert "episodes 3/5" in text and "active 1 · queued 1" in text and "alpha" in text and "Overall" in text
    assert "Endpoints" in text and "429:2" in text


# -- the dashboard ----------------------------------------------------------------------------------


async def test_dashboard_redraws_and_logs_through_its_console() -> None:
    progress, stats = sample_progress()
    console = Console(file=io.StringIO(), force_terminal=True, width=WIDTH, color_system="standard")
    dashboard = Dashboard(console)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(watch(LiveSource(progress, stats), live=True, interval=0.01, stop=stop, dashboard=dashboard))
        await asyncio.sleep(0.05)
        assert handler not in root.handlers  # the stderr handler would tear the display
        logging.getLogger("esc-eval-test").warning("endpoint seeker slowed down")
        stop.set()
        final = await task
    finally:
        root.removeHandler(handler)
    assert handler not in root.handlers and not any(type(h).__name__ == "RichHandler" for h in root.handlers)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Leaderboard" in output and "endpoint seeker slowed down" in output and "\x1b[" in output
    assert final.completed == 700


# -- in the runner --------------------------------------------------------------------------------


def runner_for(path: Path, *, concurrency: int = 3) -> Runner:
    url = "http://127.0.0.1:9/v1"
    config = parse_config({
        "run": {"rounds": 2, "concurrency": concurrency},
        "cards": {"language": "en", "limit": 3},
        "seeker": {"base_url": url, "model": "seeker"},
        "supporters": [{"name": "a", "base_url": url, "model": "a"}],
    })
    backends = {"seeker": ScriptedBackend(name="seeker", delay=0.01), "a": ScriptedBackend(name="a", delay=0.01)}
    return Runner(RunPlan.prepare(config), Store.open(path, create=True), backends=backends)


async def test_run_with_monitor_watches_the_runner_and_ends_with_it(tmp_path: Path) -> None:
    out = io.StringIO()
    result = await asyncio.wait_for(run_with_monitor(runner_for(tmp_path / "s.sqlite"), live=False, interval=0.01, out=out), 60)
    assert result.progress.done == 3
    text = out.getvalue()
    assert "\x1b" not in text and "episodes 3/3" in text and "finished" in text
    assert "seeker" in text and "a " in text  # the endpoints came from the runner's backend pool

    console = Console(file=io.StringIO(), force_terminal=True, width=WIDTH)
    result = await asyncio.wait_for(run_with_monitor(runner_for(tmp_path / "t.sqlite"), live=True, interval=0.01, console=console), 60)
    assert result.progress.done == 3 and "3/3" in console.file.getvalue()  # type: ignore[attr-defined]
    assert not math.isnan(result.progress.elapsed())


async def test_first_ctrl_c_stops_admitting_and_the_run_ends_normally(tmp_path: Path) -> None:
    runner = runner_for(tmp_path / "s.sqlite", concurrency=1)
    out = io.StringIO()
    run = asyncio.create_task(run_with_monitor(runner, live=False, interval=0.01, out=out))
    while runner.progress.finished < 1:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)  # the handler run_with_monitor installed, not KeyboardInterrupt
    result = await asyncio.wait_for(run, 60)
    assert 1 <= result.progress.done < 3 and result.progress.active == 0
    assert "stopped" in out.getvalue()
    reader = Store.open(tmp_path / "s.sqlite", readonly=True)
    try:
        assert reader.counts().get("planned", 0) >= 1  # left for --resume
    finally:
        reader.close_sync()


async def test_a_failing_view_never_costs_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: LiveSource) -> Snapshot:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(LiveSource, "snapshot", broken)
    result = await asyncio.wait_for(run_with_monitor(runner_for(tmp_path / "s.sqlite"), live=False, interval=0.01), 60)
    assert result.progress.done == 3


def test_seeker_state_is_summarised_for_the_episode_view() -> None:
    from esc_eval.runs.monitor import state_summary

    state = json.dumps({"persona": "guarded", "emotion": "upset", "distress": 5, "facts": 3, "revealed": ["job"],
                        "unhelpful": 2, "leaving": None, "role_break": {"cue": "as an AI", "in_role": False}})
    assert state_summary(state) == "persona guarded · emotion upset · distress 5 · revealed 1/3 · unhelpful 2 · role break kept"
    assert state_summary("") == "" and state_summary("not json") == ""
