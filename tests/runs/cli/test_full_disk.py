"""A store on a real, tiny filesystem that fills up mid-run: the run stops at once, says why, loses nothing.

As root the test mounts a 3 MiB tmpfs; the fake server's long replies fill it after a few dozen episodes.
``esc-eval run`` must stop admitting and exit 1 naming the store and "No space left on device"; the
episodes the store holds as done are complete; after the filesystem is grown, ``--resume`` finishes the
plan with every episode once. Where mounting is not permitted the test is skipped and
``tests/runs/execution/test_write_failure.py`` covers the same path with an injected writer fault.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esc_eval.testing.cli import ROOT, esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.scenarios import audit_store, planned_keys, write_cards, write_run_config

pytestmark = pytest.mark.slow

REPLY = 20_000
"""Characters per reply: five turns of these are ~100 KB an episode, so 3 MiB fill after a few dozen."""


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); test_write_failure.py injects the fault instead")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def long_reply(body: dict[str, Any]) -> str:
    count = len(body.get("messages", []))
    return f"{body.get('model')} turn {count} " + "x" * REPLY + f" #{time.monotonic_ns()}"


async def test_a_full_disk_stops_the_run_and_resume_finishes_after_space_is_freed(tmp_path: Path, tiny_disk: Path) -> None:
    store = tiny_disk / "run.sqlite"
    async with FakeOpenAIServer(long_reply, delay=0.02) as server:
        cfg = write_run_config(
            tmp_path / "run.toml", run={"name": "full", "rounds": 2, "concurrency": 4, "seed": 3},
            cards={"path": str(write_cards(tmp_path / "cards.jsonl", 150))},
            seeker={"base_url": server.base_url, "model": "seeker-model"},
            supporters=[{"name": "alpha", "base_url": server.base_url, "model": "alpha-model"}],
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "esc_eval.runs.cli", "run", str(cfg), "--store", str(store), "--no-monitor",
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        full_at = None
        while proc.returncode is None:
            if full_at is None and free_bytes(tiny_disk) < 64_000:
                full_at = time.monotonic()
            try:
                await asyncio.wait_for(proc.wait(), 0.05)
            except TimeoutError:
                pass
            assert full_at is None or time.monotonic() - full_at < 15, "the run went on after the disk filled"
        out, err = (part.decode() for part in await proc.communicate())
        assert full_at is not None, "the disk never filled: make the replies longer"
        answered_at_stop = server.answered
        assert proc.returncode == 1, (out, err)
        assert f"{store}: a write failed: No space left on device" in err, err
        assert answered_at_stop < 150 * 5 // 2, answered_at_stop  # stopped: far from every planned request
        assert "next: esc-eval export" not in out
        stored = int(err.split("the run stopped with ")[1].split(" episodes")[0])

        partial = audit_store(store, planned_keys(cfg), rounds=2, unique_texts=False)
        assert partial.problems == [] and partial.duplicates == 0, partial.problems
        assert partial.done == stored > 0 and partial.lost == 150 - stored  # what it said is stored is stored, complete

        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
        resumed = await esc_eval("run", str(cfg), "--store", str(store), "--resume", "--no-monitor", timeout=600)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    audit = audit_store(store, planned_keys(cfg), rounds=2, unique_texts=False)
    assert audit.ok and audit.done == 150 and audit.failed == 0, (audit.problems, audit.duplicates, audit.lost)
    assert not Path(f"{store}-wal").exists()
