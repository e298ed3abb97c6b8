"""A run that meets a fault of its own making: a plugin that raises, a store write that fails, an endpoint that is not there.

Each runs the real runner (``esc_eval.run_async``) against the fake OpenAI server on this loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import esc_eval
from esc_eval.environments.episode import Episode, Outcome, Role
from esc_eval.environments.termination import TERMINATION, Detector
from esc_eval.environments.turn_policies import TURN_POLICIES
from esc_eval.runs.execution.result import BAD_INPUT, DONE, FAILED_EPISODES
from esc_eval.runs.store import Store
from esc_eval.testing.fake_server import FakeOpenAIServer
from esc_eval.testing.model_server import free_port
from esc_eval.testing.scenarios import write_cards, write_run_config


@dataclass(frozen=True)
class BadOnThirdCard(Detector):
    """A termination detector with a bug: it raises on one card's episodes."""

    def check(self, episode: Episode) -> Outcome | None:
        if episode.card.id == "c00002":
            raise ValueError("detector bug\non two lines")
        return None


@dataclass(frozen=True)
class BadPolicyOnFirstCard:
    """A turn policy with a bug: it raises on one card's episodes."""

    opener: bool = True

    def next_speaker(self, episode: Episode) -> Role | None:
        if episode.card.id == "c00000":
            raise KeyError("policy bug")
        return Role.SEEKER if episode.last is None or episode.last.role is Role.SUPPORTER else Role.SUPPORTER


@pytest.fixture(autouse=True)
def buggy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The buggy detector and policy as built-ins for this module's tests only: a registration made at import
    would outlive them and change every later test's list of known names."""
    monkeypatch.setitem(TERMINATION._builtin, "test-bad-on-third-card", (BadOnThirdCard, "raises on one card"))  # noqa: SLF001
    monkeypatch.setitem(TURN_POLICIES._builtin, "test-bad-policy-on-first-card",  # noqa: SLF001
                        (BadPolicyOnFirstCard, "raises on one card"))


def config(tmp_path: Path, url: str, *, cards: int = 5, run: str = "", seeker_url: str | None = None) -> Path:
    """``run``: TOML lines added to ``[run]``."""
    rounds = {} if "termination" in run else {"rounds": 2}  # termination replaces rounds
    path = write_run_config(
        tmp_path / "run.toml", run={"name": "faults", "concurrency": 2, **rounds},
        cards={"path": str(write_cards(tmp_path / "cards.jsonl", cards))},
        seeker={"base_url": seeker_url or url, "model": "seeker-model", "max_attempts": 1},
        supporters=[{"name": "alpha", "base_url": url, "model": "alpha-model"}],
    )
    path.write_text(path.read_text(encoding="utf-8").replace("[run]\n", f"[run]\n{run}\n", 1), encoding="utf-8")
    return path


def events(store: Path, kind: str) -> list[tuple[str, str]]:
    with Store.open(store, readonly=True) as reader:
        return [(row[0], row[1]) for row in reader._conn.execute(  # noqa: SLF001 - the events table as stored
            "SELECT episode_key, detail FROM events WHERE kind=? ORDER BY episode_key", (kind,))]


async def test_a_detector_and_a_turn_policy_that_raise_fail_their_episodes_and_the_run_goes_on(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as server:
        cfg = config(tmp_path, server.base_url, run=(
            'termination = [{name = "max_rounds", rounds = 2}, {name = "test-bad-on-third-card"}]\n'
            'turn_policy = {name = "test-bad-policy-on-first-card"}'))
        result = await esc_eval.run_async(cfg, tmp_path / "run.sqlite")
    assert result.exit_code == FAILED_EPISODES and result.done == 3 and result.failed == 2
    faults = events(tmp_path / "run.sqlite", "plugin_error")
    assert [key.split("/")[2].rsplit("-", 1)[1] for key, _ in faults] == ["c00000", "c00002"]
    assert faults[0][1] == "turn policy BadPolicyOnFirstCard error: KeyError: 'policy bug'"
    assert faults[1][1] == "termination detector BadOnThirdCard error: ValueError: detector bug on two lines"
    with Store.open(tmp_path / "run.sqlite", readonly=True) as reader:
        assert reader.counts() == {"done": 3, "failed": 2} and reader.last_run().status == "finished"  # type: ignore[union-attr]


async def test_a_failed_store_write_stops_the_run_and_resume_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The injected twin of test_full_disk.py: every write after the 6th batch fails as SQLite reports a full disk."""
    store = tmp_path / "run.sqlite"
    real_write, calls, failed_at = Store._write, [0], [0.0]  # noqa: SLF001

    def full_after_six(self: Store, ops: Any) -> None:
        calls[0] += 1
        if calls[0] > 6:
            failed_at[0] = failed_at[0] or time.monotonic()
            raise sqlite3.OperationalError("database or disk is full")
        real_write(self, ops)

    real_close, closed_at = Store.close, [0.0]

    async def close(self: Store) -> None:
        closed_at[0] = time.monotonic()  # the runner has stopped: nothing admitted, nothing in flight
        await real_close(self)

    monkeypatch.setattr(Store, "_write", full_after_six)
    monkeypatch.setattr(Store, "close", close)
    async with FakeOpenAIServer(delay=0.05) as server:
        cfg = config(tmp_path, server.base_url, cards=60)
        result = await esc_eval.run_async(cfg, store)
        assert result.exit_code == FAILED_EPISODES
        assert result.write_failure == f"{store}: a write failed: No space left on device"
        assert 0 < closed_at[0] - failed_at[0] < 1.0  # admission stopped and the episodes in flight were cancelled at once
        assert result.progress.done < 60
        with Store.open(store, readonly=True) as reader:
            stored = reader.counts().get("done", 0)
            for episode in reader.episodes(status="done"):  # what the store holds as done is whole: opener + 2 rounds
                assert len(reader.transcript(episode.key)) == 5
        monkeypatch.setattr(Store, "_write", real_write)  # space freed
        resumed = await esc_eval.run_async(cfg, store, resume=True)
    assert resumed.exit_code == DONE and resumed.skipped == stored and resumed.done == 60 - stored
    with Store.open(store, readonly=True) as reader:
        assert reader.counts() == {"done": 60}
        turns = reader._conn.execute("SELECT COUNT(*), COUNT(DISTINCT episode_key || '/' || idx) FROM turns").fetchone()  # noqa: SLF001
    assert turns == (300, 300)


async def test_preflight_refuses_a_closed_port_before_any_store_and_warns_of_an_unlisted_model(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    async with FakeOpenAIServer() as server:
        cfg = config(tmp_path, server.base_url, seeker_url=closed)
        started = time.monotonic()
        refused = await esc_eval.run_async(cfg, tmp_path / "run.sqlite")
        assert time.monotonic() - started < 5
        assert refused.exit_code == BAD_INPUT and not (tmp_path / "run.sqlite").exists()
        assert refused.error is not None and "[seeker] field 'base_url'" in refused.error and closed in refused.error
        assert "connection refused" in refused.error and server.answered == 0

        unresolvable = config(tmp_path, server.base_url, seeker_url="http://no-such-host.invalid/v1")
        refused = await esc_eval.run_async(unresolvable, tmp_path / "run.sqlite")
        assert refused.exit_code == BAD_INPUT and "does not resolve" in (refused.error or "")

        fine = config(tmp_path, server.base_url, cards=1)
        with caplog.at_level("WARNING"):
            result = await esc_eval.run_async(fine, tmp_path / "run.sqlite")
        assert result.exit_code == DONE and "/models" not in caplog.text, "a server listing no model: nothing to warn about"

    async with FakeOpenAIServer(models=("fake", "alpha-model")) as server:
        fine = config(tmp_path, server.base_url, cards=1)
        with caplog.at_level("WARNING"):
            result = await esc_eval.run_async(fine, tmp_path / "listed.sqlite")
        assert result.exit_code == DONE
        assert "does not list model seeker-model among /models (alpha-model, fake)" in caplog.text


async def test_no_preflight_leaves_a_closed_port_to_the_runs_retries(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    async with FakeOpenAIServer() as server:
        cfg = config(tmp_path, server.base_url, cards=2, seeker_url=closed)
        result = await asyncio.wait_for(esc_eval.run_async(cfg, tmp_path / "run.sqlite", preflight=False), 120)
    assert result.exit_code == FAILED_EPISODES and result.failed == 2
