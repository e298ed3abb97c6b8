"""The ray executor on a local 2-CPU Ray cluster (loopback only), against a fake server on a thread.

* 2,000 episodes (with the judge's 7 dimensions) give the same store as the single-process executor.
* A worker SIGKILLed mid-run: its unfinished episodes run on a replacement, each exactly once in the store.
* ``esc-eval run --ray ADDRESS`` drives the same executor from the command line.
Ray is started once for the module (``ray.init(num_cpus=2, include_dashboard=False)``) and shut down at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from esc_eval.runs.config import load_config
from esc_eval.runs.distributed import DistributedRunner
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.scenarios import DIMENSIONS, audit_store
from tests.runs.distributed.helpers import ThreadedServer, dump, write_config

# Before Ray is imported: with this, Ray takes 127.0.0.1 as the node address and binds every server to loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()


@pytest.fixture
def server():
    with ThreadedServer() as running:
        yield running


def new_store(path: Path, plan: RunPlan) -> Store:
    return Store.create(path, config=plan.config.to_dict(), fingerprint=plan.fingerprint())


@pytest.mark.timeout(240)
async def test_2000_episodes_same_store_as_single_process(cluster, server, tmp_path):
    config = write_config(tmp_path, server.base_url, cards=1000, rounds=1)  # 2 supporters x 1,000 cards
    plan = RunPlan.prepare(load_config(config))
    keys = [p.key for p, _ in plan.episodes()]
    assert len(keys) == 2000

    started = time.perf_counter()
    local = await Runner(plan, new_store(tmp_path / "local.sqlite", plan)).run()
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    runner = DistributedRunner(plan, new_store(tmp_path / "ray.sqlite", plan), workers=2)
    result = await runner.run()
    ray_seconds = time.perf_counter() - started
    print(f"single process {local_seconds:.1f}s, 2 Ray workers {ray_seconds:.1f}s, driver applied {runner.records:,} "
          f"records in {runner.driver_seconds:.2f}s")

    for store in (local.store, result.store):
        audit = audit_store(store, keys, rounds=1, dimensions=DIMENSIONS, unique_texts=False)
        assert audit.ok and audit.done == 2000, (audit.problems[:3], audit.lost, audit.duplicates)
    expected, got = dump(local.store), dump(result.store)
    assert len(got["turns"]) == 2000 * 3 and len(got["scores"]) == 2000 * DIMENSIONS
    for table in ("episodes", "turns", "scores"):
        assert got[table] == expected[table], table
    # both workers took half, finished it, and the driver's counters match the store
    assert {w.name: (w.state, w.assigned, w.finished) for w in result.progress.workers.values()} == {
        "w0": ("finished", 1000, 1000), "w1": ("finished", 1000, 1000)}
    assert (result.progress.done, result.progress.failed, result.progress.active) == (2000, 0, 0)
    assert result.progress.judge_done == 2000 * DIMENSIONS and result.progress.judge_pending == 0
    assert len({w.pid for w in result.progress.workers.values()}) == 2


@pytest.mark.timeout(180)
async def test_killed_worker_episodes_rerun_exactly_once(cluster, tmp_path):
    with ThreadedServer(delay=0.01) as server:
        config = write_config(tmp_path, server.base_url, cards=300, rounds=2, concurrency=32)  # 600 episodes
        plan = RunPlan.prepare(load_config(config))
        keys = [p.key for p, _ in plan.episodes()]
        runner = DistributedRunner(plan, new_store(tmp_path / "ray.sqlite", plan), workers=2)
        run = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not run.done():
            w0 = runner.progress.workers.get("w0")
            if w0 is not None and w0.state == "running" and w0.finished >= 60:
                break
            await asyncio.sleep(0.01)
        assert not run.done(), "the run ended before the worker could be killed"
        victim = runner.progress.workers["w0"]
        killed_at, victim_pid = victim.finished, victim.pid
        os.kill(victim_pid, signal.SIGKILL)
        result = await asyncio.wait_for(run, 150)

    audit = audit_store(result.store, keys, rounds=2, dimensions=DIMENSIONS, unique_texts=False)
    assert audit.ok, (audit.problems[:3], audit.lost, audit.duplicates)
    assert (audit.done, audit.failed, audit.lost, audit.duplicates) == (600, 0, 0, 0)
    assert audit.events["worker-lost"] == 1
    assert killed_at < 300 and audit.attempts > 600  # w0 had unfinished episodes; some were started twice
    w0 = result.progress.workers["w0"]
    assert (w0.state, w0.assigned, w0.finished, w0.lost) == ("finished", 300, 300, 1) and w0.pid != victim_pid
    assert (result.progress.done, result.progress.active) == (600, 0)
    # restarted episodes hold the same, deterministic transcript as any other: opener, then numbered replies
    conn = sqlite3.connect(f"file:{result.store}?mode=ro", uri=True)
    texts = conn.execute("SELECT DISTINCT idx, text FROM turns WHERE idx > 0 AND role='seeker'").fetchall()
    conn.close()
    assert sorted(texts) == [(1, "esc-role reply 2"), (3, "esc-role reply 4")]


@pytest.mark.timeout(120)
async def test_cli_run_with_ray_address(cluster, server, tmp_path):
    config = write_config(tmp_path, server.base_url, cards=20, rounds=1, judge=False)
    store = tmp_path / "cli.sqlite"
    done = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--ray", cluster, timeout=100)
    assert done.returncode == 0, done.stderr
    assert "40 episodes finished" in done.stdout
    keys = [p.key for p, _ in RunPlan.prepare(load_config(config)).episodes()]
    audit = audit_store(store, keys, rounds=1, unique_texts=False)
    assert audit.ok and audit.done == 40
    assert audit.events["distributed"] == 1
    again = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--ray", cluster, "--resume", timeout=100)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


@pytest.mark.timeout(240)
async def test_sigterm_to_a_ray_run_stops_within_the_grace_period_and_resume_finishes(cluster, tmp_path):
    """The Ray driver takes the run's signal path: stop admitting, cancel what is in flight after the grace period,
    runs row ``stopped``, exit 3, one checkpointed file; ``--resume`` then plays every episode once."""
    from esc_eval.runs.execution.interrupt import GRACE_SECONDS

    with ThreadedServer(delay=0.3) as slow:
        config = write_config(tmp_path, slow.base_url, cards=60, rounds=3, judge=False, concurrency=8)
        store = tmp_path / "ray.sqlite"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "esc_eval.runs.cli", "run", str(config), "--store", str(store), "--no-monitor", "--ray", cluster,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not _done_episodes(store):
            assert proc.returncode is None and time.monotonic() < deadline, "the run did not get going"
            await asyncio.sleep(0.1)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 3, err.decode()
        assert time.monotonic() - signalled < GRACE_SECONDS + 30, "the grace period did not end the run"
        assert "not started" in out.decode() + err.decode()
        assert not Path(f"{store}-wal").exists() and not Path(f"{store}-shm").exists()
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            assert [row[0] for row in conn.execute("SELECT status FROM runs")] == ["stopped"]
            assert conn.execute("SELECT COUNT(*) FROM episodes WHERE status != 'done'").fetchone()[0] > 0
        finally:
            conn.close()
        again = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", "--ray", cluster, "--resume", timeout=150)
        assert again.returncode == 0, again.stderr
    keys = [p.key for p, _ in RunPlan.prepare(load_config(config)).episodes()]
    audit = audit_store(store, keys, rounds=3, unique_texts=False)
    assert audit.ok and audit.done == 120


def _done_episodes(store: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT COUNT(*) FROM episodes WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:  # not made yet
        return 0
    finally:
        conn.close()
