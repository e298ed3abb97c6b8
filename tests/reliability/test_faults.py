"""Faults from the model servers never lose or duplicate an episode, and every one is on record.

Each fault kind the fake server knows is served at 25% of all requests (seeker, two
supporters and the judge share the server) to a real ``esc-eval run`` subprocess. Every
episode must end ``done`` with a complete, non-empty transcript and seven scores, or
``failed`` with its reason; every fault served must be one ``retry:<kind>`` or
``fault:<kind>`` row in the store's events table.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from esc_eval.testing.fake_server import CLIENT_FAULT_KIND
from esc_eval.testing.scenarios import DIMENSIONS, FAULT_KINDS, run_fault_scenario, run_give_up_scenario


@pytest.mark.slow
async def test_every_fault_kind_at_25_percent_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # all kinds at once: the subprocesses mostly sleep in backoff, so this costs one scenario's wall time
    results = await asyncio.gather(*(run_fault_scenario(tmp_path / kind, kind, 0.25, seed=i) for i, kind in enumerate(FAULT_KINDS)))
    failures = []
    for r in results:
        a = r.audit
        served = sum(r.faults_served.values())
        why = []
        failed_scores = a.score_status.get("failed", 0)
        if r.run.returncode != (1 if a.failed or failed_scores else 0):
            why.append(f"exit {r.run.returncode} with {a.failed} failed episodes, {failed_scores} failed scores: {r.run.stderr[-400:]}")
        if not a.ok:
            why.append(f"lost {a.lost}, duplicates {a.duplicates}, problems {a.problems[:3]}")
        if a.done + a.failed != a.planned or a.planned != 20:
            why.append(f"{a.done} done + {a.failed} failed of {a.planned}")
        if served < 20:
            why.append(f"only {served} faults served: the scenario did not exercise {r.fault}")
        if not r.matched:
            why.append(f"served {dict(r.faults_served)} but events {dict(a.fault_events())}")
        if set(a.fault_events()) != {CLIENT_FAULT_KIND[r.fault]}:
            why.append(f"events of kinds {set(a.fault_events())}, expected {CLIENT_FAULT_KIND[r.fault]}")
        endpoints = {endpoint for endpoint, kind in a.events_by_endpoint if kind.startswith(("retry:", "fault:"))}
        if not endpoints <= {"seeker", "alpha", "beta", "judge"} or "judge" not in endpoints:
            why.append(f"fault events name endpoints {endpoints}")
        if any("gave up" not in reason for reason in a.failed_reasons):
            why.append(f"failed reasons {a.failed_reasons}")
        if why:
            failures.append(f"{r.fault}: " + "; ".join(why))
    assert not failures, "\n".join(failures)


async def test_a_backend_that_always_fails_then_retry_failed_completes_each_episode_once(tmp_path: Path) -> None:
    r = await run_give_up_scenario(tmp_path, cards=4, rounds=2)
    cards = r.cards

    assert r.first.returncode == 1, r.first.stderr
    a = r.first_audit
    assert a.ok and (a.done, a.failed) == (cards, cards), (a.lost, a.duplicates, a.problems)
    assert all("bad" in why and "gave up after 2 attempts: 5xx: HTTP 500" in why for why in a.failed_reasons), a.failed_reasons
    # each failed episode: one retry, then the give-up, both on record under the endpoint's name
    assert a.events_by_endpoint == Counter({("bad", "retry:5xx"): cards, ("bad", "fault:5xx"): cards})

    # a plain --resume leaves them failed: exit 1 as for the first run, and a hint how to run them again
    assert r.resumed.returncode == 1 and f"nothing to do: all {2 * cards} planned episodes already ended\n" in r.resumed.stdout, r.resumed.stdout
    assert f"hint: {cards} failed episodes remain in the store ({cards} from an earlier attempt); " \
           "run them again with --resume --retry-failed" in r.resumed.stdout, r.resumed.stdout
    assert "--retry-failed" in r.first.stdout and "--retry-failed" not in r.retried.stdout
    assert r.faults_after_resume == 2 * cards, "a plain --resume must not run failed episodes again"

    assert r.retried.returncode == 0, r.retried.stderr
    a = r.retried_audit
    assert a.ok and (a.done, a.failed) == (2 * cards, 0), (a.lost, a.duplicates, a.problems)
    assert r.sim_requests_on_retry == cards * r.rounds, "each failed episode runs again exactly once"
    assert r.judge_requests_on_retry == cards * DIMENSIONS
    assert r.attempts == {"good": {1}, "bad": {2}}
    assert a.score_status == {"ok": 2 * cards * DIMENSIONS}
