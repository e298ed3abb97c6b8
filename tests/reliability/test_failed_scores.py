"""Failed judge scores count: the run exits 1 and says how many; ``--resume --retry-failed`` fills the hole.

A judge server fails one (episode, dimension) request for good (HTTP 500 on every attempt,
``max_attempts = 2``) while the rest of the run succeeds, through the real ``esc-eval`` command.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from esc_eval.testing.cli import esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.scenarios import DIMENSIONS, JUDGE_MODEL, ChainResponder, write_run_config

BROKEN_MODEL = "judge-empathic"
CARDS = 3


class FailOneRequest:
    """``fault_for``: HTTP 500 for the first ``judge-empathic`` request seen and its retries, until healed."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.healed = False

    def __call__(self, body: dict[str, Any]) -> str | None:
        if self.healed or body.get("model") != BROKEN_MODEL:
            return None
        messages = json.dumps(body["messages"], sort_keys=True)
        self.target = self.target or messages
        return "500" if messages == self.target else None


def scores(store: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM scores GROUP BY status").fetchall())
    finally:
        conn.close()


async def test_a_judge_call_that_fails_for_good_exits_1_and_retry_failed_fills_the_hole(tmp_path: Path) -> None:
    responder, fail = ChainResponder(), FailOneRequest()
    sim = await FakeOpenAIServer(responder=responder).start()
    judge = await FakeOpenAIServer(responder=lambda body: "Score: 3", fault_for=fail).start()
    try:
        config = write_run_config(
            tmp_path / "run.toml",
            run={"name": "judge-fails", "rounds": 1, "concurrency": 4},
            cards={"language": "en", "limit": CARDS},
            seeker={"base_url": sim.base_url, "model": "esc-role", "temperature": 0.7},
            supporters=[{"name": "s", "base_url": sim.base_url, "model": "s-model", "temperature": 0.7}],
            judge={"base_url": judge.base_url, "model": JUDGE_MODEL, "max_attempts": 2},
        )
        config.write_text(config.read_text(encoding="utf-8") + f'\n[judge.models]\nempathic = "{BROKEN_MODEL}"\n', encoding="utf-8")
        store = tmp_path / "run.sqlite"
        run = ["run", str(config), "--store", str(store), "--no-monitor"]

        first = await esc_eval(*run)
        assert first.returncode == 1, (first.stdout, first.stderr)
        assert "0 failed" in first.stdout, "no episode failed: the exit code is the score's"
        assert "hint: 1 judge scores failed (the judge gave up) and are missing from the results; " \
               "run them again with --resume --retry-failed" in first.stdout, first.stdout
        assert scores(store) == {"ok": CARDS * DIMENSIONS - 1, "failed": 1}

        judged = len(judge.requests)
        resumed = await esc_eval(*run, "--resume")
        assert resumed.returncode == 1 and "hint: 1 judge scores failed" in resumed.stdout, resumed.stdout
        assert f"nothing to do: all {CARDS} planned episodes already ended\n" in resumed.stdout, "not 'and are scored'"
        assert len(judge.requests) == judged, "a plain --resume leaves failed scores alone"

        fail.healed = True
        retried = await esc_eval(*run, "--resume", "--retry-failed")
        assert retried.returncode == 0, (retried.stdout, retried.stderr)
        assert "judge scores failed" not in retried.stdout
        assert [r["model"] for r in judge.requests[judged:]] == [BROKEN_MODEL], "only the failed score is asked again"
        assert scores(store) == {"ok": CARDS * DIMENSIONS}
    finally:
        await sim.stop()
        await judge.stop()
