"""SIGTERM and SIGINT on a real ``esc-eval run`` subprocess: stop admitting, a grace period, exit 3, a checkpointed store.

A fake OpenAI server on the test's loop answers slowly enough that the signal lands mid-run; each test then
checks the exit code, the summary, the ``runs`` row, that the store is one file (no ``-wal``/``-shm``) and that
``--resume`` finishes the plan with every episode once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from esc_eval.runs.execution.interrupt import GRACE_SECONDS
from esc_eval.testing.cli import ROOT, esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.scenarios import ChainResponder, audit_store, planned_keys, write_cards, write_run_config

pytestmark = pytest.mark.slow


def config(tmp_path: Path, url: str, *, cards: int, rounds: int, concurrency: int = 4) -> Path:
    return write_run_config(
        tmp_path / "run.toml", run={"name": "signals", "rounds": rounds, "concurrency": concurrency, "seed": 7},
        cards={"path": str(write_cards(tmp_path / "cards.jsonl", cards))},
        seeker={"base_url": url, "model": "seeker-model", "max_attempts": 2},
        supporters=[{"name": "alpha", "base_url": url, "model": "alpha-model", "max_attempts": 2}],
    )


async def started(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esc_eval.runs.cli", *args, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def after_answers(proc: asyncio.subprocess.Process, server: FakeOpenAIServer, answered: int) -> None:
    deadline = time.monotonic() + 60
    while server.answered < answered:
        assert proc.returncode is None, "the run ended before the signal"
        assert time.monotonic() < deadline, "the run did not get going"
        await asyncio.sleep(0.01)


def runs_rows(store: Path) -> list[str]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM runs ORDER BY id")]


def one_file(store: Path) -> bool:
    return store.is_file() and not Path(f"{store}-wal").exists() and not Path(f"{store}-shm").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_one_signal_stops_within_the_grace_period_and_resume_finishes(tmp_path: Path, sig: signal.Signals) -> None:
    chain = ChainResponder()
    async with FakeOpenAIServer(chain, delay=0.4) as server:  # 2 x 8 requests per episode, ~6.4 s: longer than the grace period
        cfg = config(tmp_path, server.base_url, cards=16, rounds=8)
        store = tmp_path / "run.sqlite"
        proc = await started("run", str(cfg), "--store", str(store), "--no-monitor")
        await after_answers(proc, server, 12)
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), GRACE_SECONDS + 20)
        took = time.monotonic() - sent
        stdout = out.decode()
        assert proc.returncode == 3, (stdout, err.decode())
        assert took < GRACE_SECONDS + 6, took  # the grace period, then cancelled: never the whole plan
        assert "stopped: " in stdout and "not started; continue with `esc-eval run" in stdout and "--resume`" in stdout, stdout
        assert "next: esc-eval export" not in stdout and "\ndone: " not in stdout, stdout
        assert one_file(store) and runs_rows(store) == ["stopped"]
        answered_at_stop = server.answered

        resumed = await esc_eval("run", str(cfg), "--store", str(store), "--resume", "--no-monitor", timeout=180)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert server.answered > answered_at_stop
    audit = audit_store(store, planned_keys(cfg), rounds=8, said=chain.said)
    assert audit.ok and audit.done == 16 and audit.failed == 0, (audit.problems, audit.duplicates)
    assert audit.attempts > 16  # the episodes cut off at the end of the grace period were played again, each stored once
    assert one_file(store) and runs_rows(store) == ["stopped", "finished"]


async def test_a_second_signal_ends_at_once_marked_interrupted(tmp_path: Path) -> None:
    chain = ChainResponder()
    async with FakeOpenAIServer(chain, delay=2.0) as server:  # every request outlives the time between the two signals
        cfg = config(tmp_path, server.base_url, cards=12, rounds=3)
        store = tmp_path / "run.sqlite"
        proc = await started("run", str(cfg), "--store", str(store), "--no-monitor")
        await after_answers(proc, server, 4)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 3, (out.decode(), err.decode())
        assert time.monotonic() - sent < 4  # not the grace period, not the 2 s requests
        assert one_file(store) and runs_rows(store) == ["interrupted"]
        resumed = await esc_eval("run", str(cfg), "--store", str(store), "--resume", "--no-monitor", timeout=180)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    audit = audit_store(store, planned_keys(cfg), rounds=3, said=chain.said)
    assert audit.ok and audit.done == 12, (audit.problems, audit.duplicates)


async def test_a_run_left_alone_exits_0_with_the_export_hint(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        cfg = config(tmp_path, server.base_url, cards=3, rounds=2)
        done = await esc_eval("run", str(cfg), "--store", str(tmp_path / "run.sqlite"), "--no-monitor")
    assert done.returncode == 0, done.stderr
    assert "done: 3 episodes finished" in done.stdout and "next: esc-eval export" in done.stdout and "stopped: " not in done.stdout


async def test_sigterm_to_annotate_leaves_every_label_in_one_checkpointed_file(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        cfg = config(tmp_path, server.base_url, cards=2, rounds=2)
        store = tmp_path / "run.sqlite"
        assert (await esc_eval("run", str(cfg), "--store", str(store), "--no-monitor")).returncode == 0
    proc = await started("annotate", str(store), "--port", "0")
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert "open http://" in line, line
    assert Path(f"{store}-wal").exists()  # the server holds it open for writing
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3
    assert one_file(store)


async def test_sigterm_mid_import_leaves_one_file_and_a_second_import_completes_it(tmp_path: Path) -> None:
    """``esc-eval import`` of a large archive, stopped by SIGTERM: exit 3, no ``-wal``, then the same import finishes it."""
    from esc_eval.testing.designed import DesignedEpisode, write_design

    design = [DesignedEpisode(supporter, card, {"fluency": [card % 5], "empathy": [(card + 1) % 5]})
              for supporter in ("a", "b", "c") for card in range(4000)]
    archive = write_design(tmp_path / "big.jsonl", design)
    store = tmp_path / "imported.sqlite"
    proc = await started("import", str(store), str(archive))
    deadline = time.monotonic() + 60
    while not store.exists() and proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert proc.returncode is None, "the import finished before the signal: make the archive larger"
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 3, err.decode()
    assert one_file(store)
    again = await esc_eval("import", str(store), str(archive))
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(store) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM episodes")]
    assert len(keys) == len(set(keys)) == len(design)
    assert one_file(store)


async def test_sigterm_mid_judge_exits_3_leaving_no_half_written_output(tmp_path: Path) -> None:
    """``esc-eval judge --store --out``, stopped by SIGTERM while judging: exit 3, no score file, no store or a
    checkpointed one; the same command then judges everything once."""
    supporter, seeker = "AI assistant：", "ESC-Role："
    transcripts = tmp_path / "result_llama3_en.json"
    transcripts.write_text(json.dumps({str(i): [supporter + "Hello!", seeker + f"I lost my job ({i}).", supporter + "I'm sorry."]
                                       for i in range(40)}, ensure_ascii=False), encoding="utf-8")
    out, store = tmp_path / "score_llama3_en.json", tmp_path / "judged.sqlite"
    async with FakeOpenAIServer(responder=lambda body: "Score: 2", delay=0.05) as server:
        config = tmp_path / "judge.toml"
        config.write_text(f'[judge]\nbase_url = "{server.base_url}"\nmodel = "j"\nmax_connections = 2\n', encoding="utf-8")
        args = ("judge", str(transcripts), "--config", str(config), "--out", str(out), "--store", str(store))
        proc = await started(*args)
        await after_answers(proc, server, 10)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 3, err.decode()
        assert not out.exists(), "a score file was written for a judging that did not finish"
        assert not store.exists() or one_file(store)
        again = await esc_eval(*args)
        assert again.returncode == 0, again.stderr
    with contextlib.closing(sqlite3.connect(store)) as conn:
        rows = conn.execute("SELECT episode_key, dimension, COUNT(*) FROM scores GROUP BY episode_key, dimension").fetchall()
    assert len(rows) == 40 * 7 and all(count == 1 for *_, count in rows)
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 40
    assert one_file(store)


def extracted(store: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT 1 FROM build_items WHERE status != 'failed' LIMIT 1").fetchone() is not None
    except sqlite3.Error:  # not created yet
        return False


async def test_sigterm_mid_cards_build_leaves_one_file_and_resume_extracts_only_the_rest(tmp_path: Path) -> None:
    """``esc-eval cards build --store``, stopped by SIGTERM: exit 3, one checkpointed file, no cards file; ``--resume``
    asks only for the items not yet extracted."""
    from tests.runs.cards.helpers import responder, write_build_config, write_sources

    sources = write_sources(tmp_path)
    store, out = tmp_path / "build.sqlite", tmp_path / "cards.jsonl"
    async with FakeOpenAIServer(responder=responder, delay=0.4) as server:
        config = write_build_config(tmp_path / "build.toml", server.base_url, translator=False)
        args = ("cards", "build", *map(str, sources), "--config", str(config), "--out", str(out), "--store", str(store))
        proc = await started(*args)
        await after_answers(proc, server, 2)
        deadline = time.monotonic() + 30
        while not extracted(store):  # an answer is on disk as soon as the builder has read it
            assert proc.returncode is None and time.monotonic() < deadline, "no extraction was kept"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 3, err.decode()
        assert one_file(store) and not out.exists()
        with contextlib.closing(sqlite3.connect(store)) as conn:
            kept = {key for (key,) in conn.execute("SELECT key FROM build_items WHERE status != 'failed'")}
        assert kept, "nothing was kept before the signal"
        asked_before = {json.dumps(body["messages"][1]) for body in server.requests}
        before = len(server.requests)
        again = await esc_eval(*args, "--resume")
        assert again.returncode == 0, again.stderr
        asked_again = [json.dumps(body["messages"][1]) for body in server.requests[before:]]
    report = json.loads((tmp_path / "build-report.json").read_text(encoding="utf-8"))
    assert report["counts"]["items"] == 8
    with contextlib.closing(sqlite3.connect(store)) as conn:
        assert len({key for (key,) in conn.execute("SELECT key FROM build_items")}) == conn.execute(
            "SELECT COUNT(*) FROM build_items").fetchone()[0]
    assert len(asked_again) <= 8 - len(kept) + 2, "resume extracted again what the stopped build had kept"  # + the retries
    assert len(asked_before) >= len(kept)
    assert one_file(store)
