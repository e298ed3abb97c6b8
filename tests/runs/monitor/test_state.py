"""The monitor's run state comes from the store's own records, and reading never writes beside the store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.monitor import StoreSource
from esc_eval.runs.store import HEARTBEAT_SECONDS, Store
from esc_eval.testing.cli import ROOT

URL = "http://127.0.0.1:9/v1"


def _config(limit: int = 3):  # type: ignore[no-untyped-def]
    return parse_config({
        "run": {"rounds": 1, "concurrency": 2},
        "cards": {"language": "en", "limit": limit},
        "seeker": {"base_url": URL, "model": "seeker"},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}],
    })


async def _finished_store(path: Path) -> None:
    await Runner(RunPlan.prepare(_config()), Store.open(path, create=True),
                 backends={"seeker": ScriptedBackend(), "a": ScriptedBackend(delay=0.01)}).run()


def _monitor_once(store: Path, *, prefix: str = "") -> subprocess.CompletedProcess[str]:
    command = f"{prefix}{shlex.quote(sys.executable)} -m esc_eval.runs.cli monitor {shlex.quote(str(store))} --once"
    return subprocess.run(["sh", "-c", command], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)


def _folder_state(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def test_a_finished_store_is_one_file_and_reads_as_finished_without_a_trace(tmp_path: Path) -> None:
    store = tmp_path / "run.sqlite"
    await _finished_store(store)
    before = _folder_state(tmp_path)
    assert list(before) == ["run.sqlite"], "a cleanly closed store leaves no -wal/-shm beside it"
    for _ in range(3):  # the old mtime rule said "running" for most just-finished stores
        shown = _monitor_once(store)
        assert shown.returncode == 0, shown.stderr
        assert "finished" in shown.stdout and "running" not in shown.stdout.split("\n")[0]
    assert _folder_state(tmp_path) == before, "the read-only monitor created or changed files"


async def test_the_monitor_reads_a_store_in_a_read_only_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "run.sqlite"
    await _finished_store(store)
    if os.geteuid() == 0:  # root writes through permission bits: make the folder a read-only mount instead
        assert shutil.which("unshare"), "util-linux's unshare is needed to mount a folder read-only as root"
        quoted = shlex.quote(str(folder))
        prefix = f"unshare -m sh -c 'mount --bind -o ro {quoted} {quoted} && exec \"$0\" \"$@\"' "
        probe = subprocess.run(["sh", "-c", f"{prefix}touch {quoted}/probe"], capture_output=True, text=True)
        assert probe.returncode != 0 and "Read-only" in probe.stderr, "the folder is read-only under the mount"
    else:
        prefix = ""
        folder.chmod(0o555)
    try:
        shown = _monitor_once(store, prefix=prefix)
    finally:
        folder.chmod(0o755)
    assert shown.returncode == 0, shown.stderr
    assert "finished" in shown.stdout


async def test_a_wal_store_without_its_wal_opens_without_creating_one(tmp_path: Path) -> None:
    """A store another tool left in WAL mode (no writer, no -wal): the read-only open is immutable."""
    path = tmp_path / "run.sqlite"
    await _finished_store(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    for side in ("run.sqlite-wal", "run.sqlite-shm"):
        (tmp_path / side).unlink(missing_ok=True)
    before = _folder_state(tmp_path)
    store = Store.open(path, readonly=True)
    assert store.counts() == {"done": 3}
    store.close_sync()
    assert _folder_state(tmp_path) == before


async def test_running_crashed_and_stopped_runs_read_as_such(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    writer = Store.open(path, create=True)
    writer.plan(p for p, _ in RunPlan.prepare(_config()).episodes())
    await writer.start_writer()
    writer.begin_run()
    source = StoreSource(path)
    try:
        state = source.snapshot()
        assert (state.state, state.finished) == ("running", False)
        with sqlite3.connect(path) as db:  # a SIGKILLed runner stops beating
            db.execute("UPDATE runs SET heartbeat=?", (time.time() - 10 * HEARTBEAT_SECONDS,))
        state = source.snapshot()
        assert state.state.startswith("no heartbeat for") and "--resume" in state.state and not state.finished
    finally:
        source.close()
        writer.end_run("stopped")
        await writer.close()
    source = StoreSource(path)
    try:
        state = source.snapshot()
        assert state.finished and state.state == "stopped: 3 episodes not started (continue with esc-eval run --resume)"
    finally:
        source.close()


async def test_the_heartbeat_advances_while_a_run_waits_on_slow_models(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    runner = Runner(RunPlan.prepare(_config(limit=1)), Store.open(path, create=True),
                    backends={"seeker": ScriptedBackend(), "a": ScriptedBackend(delay=3 * HEARTBEAT_SECONDS)})
    task = asyncio.create_task(runner.run())
    beats: set[float] = set()
    while not task.done():
        await asyncio.sleep(HEARTBEAT_SECONDS / 4)
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT heartbeat FROM runs WHERE status='running'").fetchone()
        if row:
            beats.add(row[0])
    await task
    assert len(beats) >= 3, f"no writes for {3 * HEARTBEAT_SECONDS}s, yet the heartbeat kept beating: {sorted(beats)}"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT status, ended_at IS NOT NULL FROM runs").fetchall() == [("finished", 1)]
