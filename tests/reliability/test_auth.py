"""Credentials: a key variable that is not set is bad input; an endpoint refusing the key stops the run.

Both through the real ``esc-eval`` command against fake servers on loopback.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from esc_eval.testing.cli import esc_eval
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.scenarios import JUDGE_MODEL, ChainResponder, write_run_config
from tests.reliability.test_bad_input import UNSET_KEY, snapshot

CARDS = 12
CONCURRENCY = 2


def statuses(store: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM episodes GROUP BY status").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("refusing, status", [("supporter", "401"), ("judge", "403")])
async def test_an_endpoint_refusing_the_key_stops_the_run_at_once(tmp_path: Path, refusing: str, status: str) -> None:
    good = await FakeOpenAIServer(responder=ChainResponder()).start()
    bad = await FakeOpenAIServer(fault_rates={status: 1.0}).start()
    try:
        supporter_url = bad.base_url if refusing == "supporter" else good.base_url
        judge_url = bad.base_url if refusing == "judge" else good.base_url
        config = write_run_config(
            tmp_path / "run.toml",
            run={"name": "auth", "rounds": 2, "concurrency": CONCURRENCY},
            cards={"language": "en", "limit": CARDS},
            seeker={"base_url": good.base_url, "model": "esc-role"},
            supporters=[{"name": "locked", "base_url": supporter_url, "model": "locked-model", "max_attempts": 6}],
            judge={"base_url": judge_url, "model": JUDGE_MODEL, "max_attempts": 6},
        )
        store = tmp_path / "run.sqlite"
        result = await esc_eval("run", str(config), "--store", str(store), "--no-monitor")
    finally:
        await good.stop()
        await bad.stop()

    endpoint = "locked" if refusing == "supporter" else "judge"
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"esc-eval: {endpoint}: HTTP {status}" in result.stderr and "refused the credentials" in result.stderr, result.stderr
    assert "--retry-failed" not in result.stdout + result.stderr, "retrying cannot fix a key"
    assert bad.faults_served[status] == len(bad.requests), "never retried: one request each"
    counts = statuses(store)
    assert counts.get("planned", 0) >= CARDS - 2 * CONCURRENCY, f"the run went on admitting episodes: {counts}"
    if refusing == "supporter":
        assert len(bad.requests) == CONCURRENCY and counts.get("failed") == CONCURRENCY, counts


async def test_an_unset_key_variable_is_bad_input_for_esc_eval_judge_too(tmp_path: Path) -> None:
    config = tmp_path / "judge.toml"
    config.write_text(f'[judge]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "j"\napi_key_env = "{UNSET_KEY}"\n', encoding="utf-8")
    transcripts = tmp_path / "result_x_en.json"
    transcripts.write_text('{"0": ["AI assistant：Hello", "ESC-Role：hi"]}', encoding="utf-8")
    before = snapshot(tmp_path)
    result = await esc_eval("judge", str(transcripts), "--config", str(config), "--out", str(tmp_path / "scores.json"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == f"esc-eval: error: {config}: [judge] field 'api_key_env': environment variable {UNSET_KEY} is not set"
    assert snapshot(tmp_path) == before
