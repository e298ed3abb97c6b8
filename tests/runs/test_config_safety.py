"""``[safety]``: its fields, their checks, its endpoint taken from ``[judge]``, and configs without it keeping their fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.runs.config import ConfigError, parse_config
from esc_eval.runs.execution.plan import RunPlan

BASE = {
    "seeker": {"base_url": "http://127.0.0.1:1/v1", "model": "esc-role"},
    "supporters": [{"name": "s", "base_url": "http://127.0.0.1:2/v1", "model": "m"}],
    "judge": {"base_url": "http://127.0.0.1:3/v1", "model": "j", "temperature": 0.5},
    "cards": {"limit": 2, "language": "en"},
}


def test_an_empty_table_takes_the_judge_endpoint_and_its_own_fields_win() -> None:
    config = parse_config({**BASE, "safety": {}})
    assert config.safety is not None and config.safety.max_missed == 0.10
    endpoint = config.safety.endpoint(config.judge)
    assert (endpoint.base_url, endpoint.model, endpoint.temperature, endpoint.max_tokens) == ("http://127.0.0.1:3/v1", "j", 0.5, 256)
    mine = parse_config({**BASE, "safety": {"model": "safe", "max_tokens": 100, "max_missed": 0.2}}).safety
    assert mine is not None and (mine.endpoint(config.judge).model, mine.endpoint(config.judge).max_tokens) == ("safe", 100)


@pytest.mark.parametrize(("safety", "message"), [
    ({"max_missed": 1.5}, "[safety] field 'max_missed': must be in [0, 1], got 1.5"),
    ({"samples": 0}, "[safety] field 'samples': must be at least 1"),
    ({"rubrc": "x.yaml"}, "[safety]: unknown field 'rubrc'"),
])
def test_bad_fields_are_one_line_naming_the_field(safety: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "safety": safety}, "run.toml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_without_safety_the_fingerprint_is_unchanged_and_safety_settings_count() -> None:
    plain = parse_config(BASE)
    assert plain.safety is None and "safety" not in str(plain.fingerprint())
    assert parse_config({**BASE, "safety": {}}).fingerprint() != plain.fingerprint()
    assert (parse_config({**BASE, "safety": {"max_connections": 3}}).fingerprint()
            == parse_config({**BASE, "safety": {"max_connections": 9}}).fingerprint())


def test_the_plan_turns_safety_on_for_a_risk_persona_and_checks_files(tmp_path: Path) -> None:
    risky = {**BASE, "seeker": {**BASE["seeker"], "personas": ["default", "risk-self-harm"]}}
    assert RunPlan.prepare(parse_config(BASE)).safety is None
    plan = RunPlan.prepare(parse_config(risky))
    assert plan.safety is not None and plan.safety.endpoint.model == "j"
    without = {k: v for k, v in risky.items() if k != "judge"}
    with pytest.raises(ConfigError, match=r"missing section \[safety\].*risk-self-harm"):
        RunPlan.prepare(parse_config(without, "run.toml"))
    (tmp_path / "res.yaml").write_text("zh: 当地急救电话\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[safety\]: crisis resources: no entry for language 'en'"):
        RunPlan.prepare(parse_config({**BASE, "safety": {"resources": str(tmp_path / "res.yaml")}}, "run.toml"))
    with pytest.raises(ConfigError, match=r"\[safety\] field 'samples'"):
        RunPlan.prepare(parse_config({**BASE, "judge": {**BASE["judge"], "temperature": 0.0}, "safety": {"samples": 3}}, "run.toml"))


def test_the_ray_executor_is_refused_with_the_safety_judge() -> None:
    with pytest.raises(ConfigError, match=r"\[run\] field 'executor': the safety judge runs with the local executor only"):
        RunPlan.prepare(parse_config({**BASE, "run": {"executor": "ray"}, "safety": {}}, "run.toml"))
