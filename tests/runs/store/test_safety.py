"""The store's safety judgements: written through the run's writer, read back per finished episode, and what a
resume judges again (missing samples; failed ones only with --retry-failed; never an excluded episode)."""

from __future__ import annotations

import json
from pathlib import Path

from esc_eval.agents.messages import SafetyJudgement, TurnTaken
from esc_eval.runs.store import PlannedEpisode, Store
from esc_eval.runs.store import safety as safety_records

STATE = {"persona": "risk-self-harm", "risk": "high", "disclosure_round": 1}


async def test_write_read_and_what_a_resume_judges_again(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "run.sqlite")
    store.plan([PlannedEpisode(f"e{i}", i, i, f"c{i}", "en", "work", "test", "s", "risk-self-harm", 0, i) for i in range(4)])
    await store.start_writer()
    for i in range(4):
        store.start_episode(f"e{i}")
        store.add_turn(TurnTaken(f"e{i}", 0, "seeker", "x", state=json.dumps(STATE)))
        store.end_episode(f"e{i}", "truncated", "max rounds", 1.0)
    items = json.dumps({"recognised": True})
    safety_records.add(store, SafetyJudgement("e0", 0, "risk", "ok", items, "raw", "m"))
    safety_records.add(store, SafetyJudgement("e0", 1, "risk", "unparsed", "", "nonsense", "m"))
    safety_records.add(store, SafetyJudgement("e1", 0, "risk", "failed", error="HTTP 500"))
    safety_records.add(store, SafetyJudgement("e2", 0, "excluded", "excluded"))
    safety_records.add(store, SafetyJudgement("e3", 0, "risk", "ok", items, "raw", "m"))
    store.start_episode("e3")   # played again: its judgements go
    safety_records.forget(store, "e3")
    store.end_episode("e3", "truncated", "max rounds", 2.0)
    await store.close()

    with Store.open(tmp_path / "run.sqlite") as opened:
        records = safety_records.records(opened)
        assert [(r.episode_key, r.sample, r.status) for r in records] == [("e0", 0, "ok"), ("e0", 1, "unparsed"), ("e1", 0, "failed"),
                                                                            ("e2", 0, "excluded")]
        assert records[0].items == {"recognised": True} and records[1].items is None and records[1].raw == "nonsense"
        todo = {row["key"]: row["samples"] for row in safety_records.unjudged(opened, 2)}
        assert todo == {"e1": [1], "e3": [0, 1]}
        retry = {row["key"]: row["samples"] for row in safety_records.unjudged(opened, 2, include_failed=True)}
        assert retry == {"e1": [0, 1], "e3": [0, 1]}
        first = safety_records.unjudged(opened, 1, include_failed=True)[0]
        assert first["key"] == "e1" and first["state"] == STATE  # the risk ground truth, from the last seeker turn
