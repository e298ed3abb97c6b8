"""``esc-eval config schema``: the JSON Schema accepts what parse_config accepts and refuses what it refuses."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from esc_eval.runs.config import CardsSection, JudgeSection, RunSection, SeekerSection, SupporterSection, parse_config
from esc_eval.runs.config_schema import config_schema
from esc_eval.testing.cli import esc_eval, write_config

SEEKER = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
SUPPORTER = {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_section_field_is_in_the_schema() -> None:
    defs = config_schema()["$defs"]
    for cls in (RunSection, CardsSection, SeekerSection, SupporterSection, JudgeSection):
        assert set(defs[cls.__name__]["properties"]) == {f.name for f in fields(cls)}, cls.__name__
        assert defs[cls.__name__]["additionalProperties"] is False


def test_configs_parse_config_accepts_are_valid(validator: jsonschema.Draft202012Validator, tmp_path: Path) -> None:
    demo = tomllib.loads((resources.files("esc_eval.runs") / "data" / "demo.toml").read_text(encoding="utf-8"))
    written = tomllib.loads(write_config(tmp_path / "c.toml", seeker_url="http://127.0.0.1:9/v1", supporters={"a": "http://127.0.0.1:9/v1"},
                                         extra='\n[judge]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "j"\nmodels = {fluency = "f"}\n')
                            .read_text(encoding="utf-8"))
    named = {"run": {"termination": [{"name": "max_rounds", "rounds": 5}, {"name": "end_token"}],
                     "turn_policy": {"name": "alternating", "opener": True}},
             "seeker": SEEKER, "supporters": [SUPPORTER]}
    for raw in (demo, written, named):
        parse_config(raw)
        assert list(validator.iter_errors(raw)) == []


@pytest.mark.parametrize("raw", [
    {"seeker": SEEKER, "supporters": [SUPPORTER], "run": {"round": 5}},
    {"seeker": SEEKER, "supporters": [SUPPORTER], "run": {"rounds": "5"}},
    {"seeker": {**SEEKER, "backend": "llamafile"}, "supporters": [SUPPORTER]},
    {"seeker": SEEKER, "supporters": [SUPPORTER], "run": {"termination": [{"name": "max_turns"}]}},
    {"seeker": SEEKER, "supporters": []},
    {"supporters": [SUPPORTER]},
    {"seeker": SEEKER, "supporters": [SUPPORTER], "extra": {}},
])
def test_what_parse_config_refuses_the_schema_refuses(validator: jsonschema.Draft202012Validator, raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_config(raw)
    assert list(validator.iter_errors(raw)), raw


async def test_the_command_prints_the_schema() -> None:
    result = await esc_eval("config", "schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(config_schema()))
