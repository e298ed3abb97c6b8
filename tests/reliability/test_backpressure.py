"""Backpressure: 2,000 planned episodes never mean 2,000 of anything in flight.

Against a slow server, a real ``esc-eval run`` with ``concurrency = 200`` keeps each
endpoint within its ``max_connections`` and its memory small; in-process, the runner
never holds more than ``concurrency`` Episode objects alive at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path

import pytest

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.environments.episode import Episode
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store
from esc_eval.testing.cli import ROOT
from esc_eval.testing.scenarios import write_cards, write_run_config

EPISODES = 2000
CONCURRENCY = 200
CONNECTIONS = 20
RSS_LIMIT_MB = 400

# esc_eval.runs.cli.main in the child, then its own peak RSS on stderr: a measure of that one process.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child of a large pytest
# process (one that loaded a model) would report the parent's peak.
_MEASURED_MAIN = (
    "import re, sys\n"
    "from esc_eval.runs.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print(f'peak_rss_kb={hwm}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


async def test_2000_episodes_keep_connection_limits_and_bounded_memory(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(delay=0.05, record=False)
    config = write_run_config(
        tmp_path / "run.toml",
        run={"name": "backpressure", "rounds": 1, "concurrency": CONCURRENCY},
        cards={"path": str(write_cards(tmp_path / "cards.jsonl", EPISODES))},
        seeker={"base_url": server.base_url, "model": "esc-role", "max_connections": CONNECTIONS},
        supporters=[{"name": "s", "base_url": server.base_url, "model": "s-model", "max_connections": CONNECTIONS}],
    )
    store = tmp_path / "run.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MEASURED_MAIN, "run", str(config), "--store", str(store), "--no-monitor",
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]

    # every request a seeker or supporter turn: 2 per episode, never more than the limits at once
    assert server.answered == 2 * EPISODES
    assert server.peak_in_flight <= 2 * CONNECTIONS, server.peak_in_flight
    assert all(peak <= CONNECTIONS for peak in server.peak_in_flight_by_model.values()), server.peak_in_flight_by_model
    assert min(server.peak_in_flight_by_model.values()) >= CONNECTIONS // 2, "the limit, not the load, must be what bounds"

    peak_kb = int(err.decode().rsplit("peak_rss_kb=", 1)[1].split()[0])
    assert peak_kb < RSS_LIMIT_MB * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"

    s = Store.open(store, readonly=True)
    try:
        assert s.counts() == {"done": EPISODES}
        assert len(s.turns()) == 3 * EPISODES
    finally:
        s.close_sync()


class CountedEpisode(Episode):
    """An Episode that counts its live instances (created and not yet garbage)."""

    live = 0
    peak = 0
    created = 0
    active_seen = 0
    runner: Runner | None = None

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        cls = CountedEpisode
        cls.live += 1
        cls.created += 1
        cls.peak = max(cls.peak, cls.live)
        if cls.runner is not None:
            cls.active_seen = max(cls.active_seen, cls.runner.progress.active)

    def __del__(self) -> None:
        CountedEpisode.live -= 1


async def test_the_runner_never_holds_more_than_concurrency_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("esc_eval.runs.execution.runner.Episode", CountedEpisode)
    concurrency, planned = 50, 1500
    url = "http://127.0.0.1:9/v1"
    config = parse_config({
        "run": {"rounds": 1, "concurrency": concurrency, "repeats": planned // 15},
        "cards": {"language": "en"},  # 15 built-in cards x 100 repeats
        "seeker": {"base_url": url, "model": "seeker"},
        "supporters": [{"name": "s", "base_url": url, "model": "s"}],
    })
    seeker, supporter = ScriptedBackend(delay=0.002), ScriptedBackend(delay=0.004)
    runner = Runner(RunPlan.prepare(config), Store.open(tmp_path / "s.sqlite", create=True), backends={"seeker": seeker, "s": supporter})
    CountedEpisode.runner = runner
    sampled = 0

    async def sample() -> None:
        nonlocal sampled
        while True:
            sampled = max(sampled, runner.progress.active)
            await asyncio.sleep(0.001)

    sampler = asyncio.create_task(sample())
    try:
        result = await runner.run()
    finally:
        sampler.cancel()
        CountedEpisode.runner = None
    assert result.progress.done == planned and CountedEpisode.created == planned
    assert CountedEpisode.peak <= concurrency, f"{CountedEpisode.peak} Episode objects alive at once"
    assert CountedEpisode.active_seen <= concurrency and sampled <= concurrency
    assert sampled >= concurrency // 2, "the run must actually fill its slots"
    gc.collect()
    assert CountedEpisode.live == 0, f"{CountedEpisode.live} Episode objects outlive the run"
