"""The runner in-process with scripted backends: admission, resume, retry of failed episodes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.loaders import builtin_cards
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.execution.runner import Runner
from esc_eval.runs.store import Store

URL = "http://127.0.0.1:9/v1"


def make_config(**run: object):  # type: ignore[no-untyped-def]
    return parse_config({
        "run": {k: v for k, v in {"rounds": 2, "concurrency": 4, **run}.items() if v is not None},
        "cards": {"language": "en", "limit": 5},
        "seeker": {"base_url": URL, "model": "seeker"},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}, {"name": "b", "base_url": URL, "model": "b"}],
    })


async def run_once(store_path: Path, backends: dict[str, ScriptedBackend], *, create: bool, retry_failed: bool = False, **run: object):  # type: ignore[no-untyped-def]
    config = make_config(**run)
    store = Store.open(store_path, create=create)
    runner = Runner(RunPlan.prepare(config), store, backends=backends, retry_failed=retry_failed)
    return await runner.run()


async def test_concurrency_limit_is_respected(tmp_path: Path) -> None:
    active = peak = 0

    class Counting(ScriptedBackend):
        async def complete(self, messages, params, *, model=None):  # type: ignore[no-untyped-def]
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            return await super().complete(messages, params, model=model)

    backend = Counting()
    result = await run_once(tmp_path / "s.sqlite", {"seeker": ScriptedBackend(), "a": backend, "b": backend}, create=True, concurrency=3)
    assert result.progress.done == 10 and result.exit_code == 0
    assert 1 < peak <= 3


async def test_resume_skips_done_and_retry_failed_reruns_only_failed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    broken_card = builtin_cards("en")[1].profile

    def flaky(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        if broken and broken_card in seeker_prompts.get(messages[1]["content"], ""):
            raise ServerError("HTTP 500: injected")
        return f"{model} ok"

    # map each seeker line to the card it came from, so the supporter can fail for one card only
    seeker_prompts: dict[str, str] = {}

    def seeker_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        line = f"seeker line {len(seeker_prompts)}"
        seeker_prompts[line] = messages[0]["content"]
        return line

    broken = True
    first = await run_once(path, {"seeker": ScriptedBackend(seeker_script), "a": ScriptedBackend(flaky), "b": ScriptedBackend()}, create=True)
    store = Store.open(path, readonly=True)
    failed = store.episodes(status="failed")
    store.close_sync()
    assert first.exit_code == 1 and first.progress.failed == len(failed) == 1
    assert all(e.supporter == "a" and "injected" in e.reason for e in failed)

    again = await run_once(path, {"seeker": ScriptedBackend(seeker_script), "a": ScriptedBackend(flaky), "b": ScriptedBackend()}, create=False)
    assert again.progress.skipped == 10 and again.progress.done == again.progress.failed == 0

    broken = False
    supporter_a = ScriptedBackend(flaky)
    retried = await run_once(path, {"seeker": ScriptedBackend(seeker_script), "a": supporter_a, "b": ScriptedBackend()},
                             create=False, retry_failed=True)
    assert retried.exit_code == 0 and retried.progress.done == len(failed)
    assert len(supporter_a.requests) == 2 * len(failed)
    store = Store.open(path, readonly=True)
    assert store.counts() == {"done": 10}
    for e in store.episodes():
        assert len(store.transcript(e.key)) == 5
    assert all(e.attempts == 2 for e in store.episodes() if e.key in {f.key for f in failed})
    store.close_sync()


async def test_resume_after_a_crash_restarts_partial_episodes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    await run_once(path, {"seeker": ScriptedBackend(), "a": ScriptedBackend(), "b": ScriptedBackend()}, create=True)
    # simulate a crash mid-episode: one episode back to 'running' with a stale partial transcript
    conn = Store.open(path)._conn  # noqa: SLF001 - forging a crashed state
    key = conn.execute("SELECT key FROM episodes ORDER BY ordinal LIMIT 1").fetchone()[0]
    conn.execute("UPDATE episodes SET status='running', outcome=NULL WHERE key=?", (key,))
    conn.execute("DELETE FROM turns WHERE episode_key=? AND idx>1", (key,))
    conn.execute("UPDATE turns SET text='stale' WHERE episode_key=? AND idx=1", (key,))
    conn.close()
    seeker = ScriptedBackend()
    result = await run_once(path, {"seeker": seeker, "a": ScriptedBackend(), "b": ScriptedBackend()}, create=False)
    assert result.progress.done == 1 and result.progress.skipped == 9
    store = Store.open(path, readonly=True)
    transcript = store.transcript(key)
    assert len(transcript) == 5 and all(text != "stale" for _, text in transcript)
    assert len(store.turns()) == 50
    store.close_sync()


def test_episode_keys_are_deterministic() -> None:
    plan = RunPlan.prepare(make_config(seed=3, repeats=2))
    keys = [p.key for p, _ in plan.episodes()]
    again = [p.key for p, _ in RunPlan.prepare(make_config(seed=3, repeats=2)).episodes()]
    assert keys == again and len(keys) == len(set(keys)) == 5 * 2 * 2
    seeds = [p.seed for p, _ in plan.episodes()]
    assert seeds == [p.seed for p, _ in RunPlan.prepare(make_config(seed=3, repeats=2)).episodes()]
    assert seeds != [p.seed for p, _ in RunPlan.prepare(make_config(seed=4, repeats=2)).episodes()]
    card = plan.cards[0]
    assert keys[0] == f"a/default/00000-{card.id}/s3/r0"


async def test_a_run_stopped_early_has_every_supporter_on_the_same_cards(tmp_path: Path) -> None:
    """Interleaved plan: stop admitting after a few episodes and the finished ones still pair up by card."""
    store = Store.open(tmp_path / "s.sqlite", create=True)
    runner = Runner(RunPlan.prepare(make_config(concurrency=2)), store,
                    backends={"seeker": ScriptedBackend(), "a": ScriptedBackend(), "b": ScriptedBackend(delay=0.01)})

    ended = runner.progress.ended

    def stop_after_four(message):  # type: ignore[no-untyped-def]
        ended(message)
        if runner.progress.done == 4:
            runner.stop_admitting()

    runner.progress.ended = stop_after_four  # type: ignore[method-assign]
    result = await runner.run()
    done = [row for row in Store.open(tmp_path / "s.sqlite", readonly=True).episodes() if row.status == "done"]
    assert 4 <= result.progress.done < 10, "the run did stop early"
    cards = {s: {r.card_index for r in done if r.supporter == s} for s in ("a", "b")}
    assert len(cards["a"] & cards["b"]) >= 2, f"both supporters played the same cards: {cards}"
    assert len(cards["a"] ^ cards["b"]) <= 1, f"at most the card in flight at the stop is unpaired: {cards}"


async def test_named_termination_and_turn_policy_drive_the_run(tmp_path: Path) -> None:
    seeker = ScriptedBackend(lambda messages, params, model: "I am fine [END]" if len(messages) > 2 else "I feel low")
    termination = [{"name": "end_token", "token": "[END]"}, {"name": "max_rounds", "rounds": 4}]
    result = await run_once(tmp_path / "s.sqlite", {"seeker": seeker, "a": ScriptedBackend(), "b": ScriptedBackend()},
                            create=True, rounds=None, termination=termination, turn_policy={"name": "alternating", "opener": False})
    assert result.progress.done == 10
    with Store.open(tmp_path / "s.sqlite", readonly=True) as store:
        for e in store.episodes():
            roles = [role for role, _ in store.transcript(e.key)]
            assert roles == ["seeker", "supporter", "seeker"]  # no opener; the seeker's [END] ends before round 4
            assert "end_token='[END]'" in e.reason


def test_a_new_store_records_the_resolved_specs(tmp_path: Path) -> None:
    from esc_eval.runs.execution.resume import open_run_store

    plan = RunPlan.prepare(make_config(end_token="[END]"))
    opened = open_run_store(plan, tmp_path / "s.sqlite", resume=False)
    opened.store.close_sync()
    store = Store.open(tmp_path / "s.sqlite", readonly=True)
    try:
        assert store.meta("plugins") == {
            "backends": {"seeker": "openai", "a": "openai", "b": "openai"},
            "turn_policy": {"name": "alternating", "opener": True},
            "termination": [{"name": "end_token", "token": "[END]"}, {"name": "max_rounds", "rounds": 2}],
            "personas": ["default"],
        }
    finally:
        store.close_sync()
