"""execute (what esc-eval run and esc_eval.run share): checks before the store, the drive hook, the result's exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.distributed import DistributedRunner
from esc_eval.runs.execution.launch import RunOptionError, default_store, execute
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.execution.result import BAD_INPUT, DONE, FAILED_EPISODES, RunResult
from esc_eval.runs.execution.runner import Runner

URL = "http://127.0.0.1:9/v1"  # nothing listens: every role below is a scripted backend


def config(**run: object):  # type: ignore[no-untyped-def]
    return parse_config({
        "run": {"name": "launch", "rounds": 1, **run},
        "cards": {"language": "en", "limit": 2},
        "seeker": {"base_url": URL, "model": "seeker", "api_key_env": "LAUNCH_TEST_KEY"},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}],
    }, "launch.toml")


async def test_drive_runs_the_runner_and_the_result_counts_what_earlier_attempts_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCH_TEST_KEY", "k")
    driven: list[Runner | DistributedRunner] = []

    async def drive(runner: Runner | DistributedRunner) -> RunResult:
        driven.append(runner)
        return await runner.run()

    def flaky(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        raise ServerError("HTTP 500: down")

    store = tmp_path / "s.sqlite"
    first = await execute(config(), store, backends={"seeker": ScriptedBackend(), "a": ScriptedBackend(flaky)}, drive=drive)
    assert len(driven) == 1 and isinstance(driven[0], Runner)
    assert (first.exit_code, first.progress.failed, first.earlier_failed) == (FAILED_EPISODES, 2, 0)
    again = await execute(config(), store, resume=True, backends={"seeker": ScriptedBackend(), "a": ScriptedBackend()})
    assert (again.exit_code, again.idle, again.earlier_failed, again.failed) == (FAILED_EPISODES, True, 2, 2)
    healed = await execute(config(), store, resume=True, retry_failed=True, backends={"seeker": ScriptedBackend(), "a": ScriptedBackend()})
    assert (healed.exit_code, healed.done, healed.earlier_failed) == (DONE, 2, 0)


async def test_every_check_happens_before_the_store_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "s.sqlite"
    monkeypatch.delenv("LAUNCH_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="LAUNCH_TEST_KEY is not set"):
        await execute(config(), store)
    monkeypatch.setenv("LAUNCH_TEST_KEY", "k")
    with pytest.raises(RunOptionError, match="--retry-failed needs --resume"):
        await execute(config(), store, retry_failed=True)
    with pytest.raises(RunOptionError, match="cannot travel to Ray workers"):
        await execute(config(), store, ray="local", backends={"a": ScriptedBackend()})
    assert not store.exists()


def test_the_default_store_is_run_store_else_named_after_the_run() -> None:
    assert default_store(config()) == Path("esc-eval-runs") / "launch.sqlite"
    assert default_store(config(store="elsewhere.sqlite")) == Path("elsewhere.sqlite")


def test_the_exit_code_follows_the_readme_table() -> None:
    assert RunResult(Path("s"), RunProgress(done=3)).exit_code == DONE == 0
    assert RunResult(Path("s"), RunProgress(done=3, failed=1)).exit_code == FAILED_EPISODES == 1
    assert RunResult(Path("s"), RunProgress(done=3), earlier_failed=1).exit_code == FAILED_EPISODES
    assert RunResult(Path("s"), RunProgress(done=3), failed_scores=2).exit_code == FAILED_EPISODES
    assert RunResult(Path("s"), RunProgress(), auth_failure="seeker: HTTP 401").exit_code == FAILED_EPISODES
    assert RunResult(Path("s"), RunProgress(failed=1), error="launch.toml: bad").exit_code == BAD_INPUT == 2
