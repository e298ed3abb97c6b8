"""Throttling is not failure: a server answering 429 for 20 s delays a run, and nothing fails.

In-process: a ``Runner`` writes a real store while fake servers on this test's loop serve it.
Mid-run, the simulation server answers 429 without ``Retry-After`` and the judge server 429
with ``Retry-After: 1`` for 20 s, then both recover. Every episode must end ``done`` with all
seven scores, and each throttled endpoint's in-flight limit must have dropped and be back at
``max_connections`` when the run ends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from esc_eval.agents.backends.openai_http import OpenAIHTTPBackend
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store
from esc_eval.testing.scenarios import DIMENSIONS, JUDGE_MODEL, ChainResponder, audit_store, write_cards

THROTTLE_SECONDS = 20.0
CARDS = 24
ROUNDS = 2


def backend(url: str, model: str, name: str, connections: int) -> OpenAIHTTPBackend:
    """The run's HTTP backend with a short backoff ceiling (the default 30 s would only lengthen the test)."""
    return OpenAIHTTPBackend(url, model, name=name, max_connections=connections, backoff=0.1, max_backoff=1.0,
                             max_attempts=3, max_retry_time=120.0, timeout=10.0)


@pytest.mark.slow
async def test_429_for_20_seconds_delays_the_run_and_fails_nothing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    responder = ChainResponder()
    sim = await fake_server(responder=responder, delay=0.05)
    judge = await fake_server(responder=responder, delay=0.02)
    config = parse_config({
        "run": {"name": "throttled", "rounds": ROUNDS, "concurrency": 4},
        "cards": {"path": str(write_cards(tmp_path / "cards.jsonl", CARDS)), "language": "en"},
        "seeker": {"base_url": sim.base_url, "model": "esc-role", "temperature": 0.7},
        "supporters": [{"name": "s", "base_url": sim.base_url, "model": "s-model", "temperature": 0.7}],
        "judge": {"base_url": judge.base_url, "model": JUDGE_MODEL},
    }, "throttled.toml")
    backends = {"seeker": backend(sim.base_url, "esc-role", "seeker", 4), "s": backend(sim.base_url, "s-model", "s", 4),
                "judge": backend(judge.base_url, JUDGE_MODEL, "judge", 8)}
    plan = RunPlan.prepare(config)
    store_path = tmp_path / "run.sqlite"
    runner = Runner(plan, Store.open(store_path, create=True), backends=backends)
    run = asyncio.create_task(runner.run())

    while judge.answered < 3:  # judging has begun: both the judge and the simulation get throttled mid-flight
        await asyncio.sleep(0.005)
    sim.throttle(THROTTLE_SECONDS)
    judge.throttle(THROTTLE_SECONDS, retry_after=1.0)
    assert runner.progress.finished < CARDS, "the simulation must still be running when the throttling starts"
    result = await asyncio.wait_for(run, 120)

    assert result.exit_code == 0 and (result.progress.done, result.progress.failed) == (CARDS, 0)
    audit = audit_store(store_path, [p.key for p, _ in plan.episodes()], rounds=ROUNDS, dimensions=DIMENSIONS, said=responder.said)
    assert audit.ok and audit.done == CARDS, (audit.lost, audit.duplicates, audit.problems[:3])
    assert audit.score_status == {"ok": CARDS * DIMENSIONS}, "every score present, none failed"
    served = sim.faults_served["429"] + judge.faults_served["429-retry-after"]
    assert sim.faults_served["429"] > 0 and judge.faults_served["429-retry-after"] > 0
    assert audit.fault_events() == {"429": served}, "every 429 is a retry event, none a give-up"
    assert not any(kind.startswith("fault:") for kind in audit.events)

    throttled = {name for name, b in backends.items() if b.stats.throttled_waits}
    assert "judge" in throttled and throttled & {"seeker", "s"}, throttled  # which sim role waits depends on timing
    for name in throttled:
        stats, maximum = backends[name].stats, backends[name]._slots.maximum  # noqa: SLF001
        assert stats.limit_min < maximum, f"{name}: the in-flight limit never dropped"
        assert stats.limit == maximum, f"{name}: the limit did not recover ({stats.limit} of {maximum})"
    assert backends["judge"].stats.limit_min == 1, "20 one-second rounds of 429 halve 8 down to 1"
    judge_stats = backends["judge"].stats
    assert judge_stats.throttled_seconds == judge_stats.throttled_waits * 1.0, "each wait is the server's Retry-After"
