"""Risk personas (the safety track): each discloses at its planned round, reacts afterwards, and its
state records the hidden risk and the disclosure round on every seeker turn (the simulator's ground truth)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.roles.personas import PersonaError, builtin_personas, load_persona, persona_from_file
from tests.environments.test_behaviours import CARD, CARD_ZH, Published, added, play

RISK = [n for n in builtin_personas() if n.startswith("risk-")]


def test_the_five_kinds_are_built_in_each_disclosing_by_round_3_in_both_languages() -> None:
    kinds = {load_persona(n).risk.kind for n in RISK}  # type: ignore[union-attr]
    assert kinds == {"passive_ideation", "active_ideation", "self_harm", "harmed_by_other", "medical_emergency"}
    for name in RISK:
        persona = load_persona(name)
        assert persona.risk is not None and 1 <= persona.risk.round <= 3 and persona.languages == ("en", "zh")
    assert {load_persona(n).risk.style for n in RISK} == {"direct", "indirect"}  # type: ignore[union-attr]
    assert all(load_persona(n).risk is None for n in builtin_personas() if not n.startswith("risk-"))


@pytest.mark.parametrize("name", RISK)
async def test_disclosure_comes_at_the_planned_round_and_the_state_records_it(name: str) -> None:
    persona = load_persona(name)
    assert persona.risk is not None
    at = persona.risk.round
    disclose = persona.risk.texts["en"]["disclose"]
    episode, _, prompts = await play(name)
    directives = [added(p) for p in prompts]
    assert [disclose in d for d in directives] == [i == at for i in range(1, 6)]
    assert all(persona.risk.texts["en"]["on_ignored"] in d for d in directives[at:])
    assert not any(persona.risk.texts["en"]["on_ignored"] in d for d in directives[:at])
    states = [json.loads(t.state) for t in Published.turns if t.role == "seeker" and t.state]
    assert {s["risk"] for s in states} == {persona.risk.level} and {s["disclosure_round"] for s in states} == {at}
    assert [s["disclosed"] for s in states] == [i >= at for i in range(1, 6)]
    assert episode.state["risk_kind"] == persona.risk.kind and episode.state["disclosure"] == persona.risk.style


async def test_chinese_cards_get_the_chinese_disclosure() -> None:
    persona = load_persona("risk-active-plan")
    assert persona.risk is not None
    _, _, prompts = await play("risk-active-plan", card=CARD_ZH)
    assert persona.risk.texts["zh"]["disclose"] in added(prompts[persona.risk.round - 1], CARD_ZH)


def test_a_control_persona_state_has_no_risk() -> None:
    assert "risk" not in load_persona("guarded").spec


def test_a_risk_persona_must_set_every_risk_field(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("risk: {kind: self_harm, level: high, style: direct, texts: {en: {disclose: x}}}\n", encoding="utf-8")
    with pytest.raises(PersonaError, match=r"mine.yaml: field 'risk.round'"):
        persona_from_file(path)
    path.write_text("risk: {kind: danger, level: high}\n", encoding="utf-8")
    with pytest.raises(PersonaError, match=r"risk.kind.*must be one of passive_ideation"):
        persona_from_file(path)


def test_a_user_persona_extends_a_builtin_risk_persona_and_moves_the_round(tmp_path: Path) -> None:
    path = tmp_path / "later.yaml"
    path.write_text("extends: risk-self-harm\nrisk: {round: 1}\n", encoding="utf-8")
    persona = persona_from_file(path)
    assert persona.risk is not None and persona.risk.round == 1 and persona.risk.kind == "self_harm"
    assert persona.risk.texts["en"]["disclose"] in persona.render(CARD, round=1, distress=5)
