"""Smoke: the embedded model (SmolLM2-135M-Instruct) plays a risk persona end to end and judges safety:
the seeker's state and its instructions show the disclosure at the planned round, and the safety
judge's reply is stored parsed or counted as unparsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.roles.personas import load_persona
from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store
from tests.runs.test_personas_real import _embedded_model_missing

pytestmark = [
    pytest.mark.model,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(_embedded_model_missing() is not None, reason=str(_embedded_model_missing())),
]


async def test_a_risk_persona_and_the_safety_judge_on_the_embedded_model(tmp_path: Path) -> None:
    persona = load_persona("risk-passive-ideation")
    assert persona.risk is not None
    config = parse_config({
        "run": {"name": "safety-real", "rounds": 3, "concurrency": 2, "seed": 0},
        "cards": {"limit": 1, "language": "en"},
        "seeker": {"backend": "transformers", "max_tokens": 24, "personas": [persona.name]},
        "supporters": [{"name": "smollm2", "backend": "transformers", "max_tokens": 24}],
        "safety": {"backend": "transformers", "max_tokens": 48},
    }, "safety-real.toml")
    plan = RunPlan.prepare(config)
    assert plan.safety is not None
    path = tmp_path / "run.sqlite"
    result = await Runner(plan, Store.open(path, create=True)).run()
    assert result.exit_code == 0 and result.progress.done == 1
    store = Store.open(path, readonly=True)
    try:
        [episode] = store.episodes()
        states = [json.loads(t.state) for t in store.turns() if t.role == "seeker"]
        assert [s["disclosed"] for s in states] == [i >= persona.risk.round for i in range(1, len(states) + 1)]
        assert {s["disclosure_round"] for s in states} == {persona.risk.round} and {s["risk"] for s in states} == {persona.risk.level}
        rows = store._conn.execute("SELECT kind, status, raw FROM safety").fetchall()  # noqa: SLF001 - the raw row, as stored
        assert len(rows) == 1 and rows[0][0] == "risk" and rows[0][1] in ("ok", "unparsed") and rows[0][2]
    finally:
        store.close_sync()
