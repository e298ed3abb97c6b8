"""The config sections validate through pydantic models made from their dataclasses: strict as TOML, same objects, one-line errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from esc_eval.runs.cards.config import BuildSection, parse_build_config
from esc_eval.runs.config import CardsSection, ConfigError, EndpointConfig, JudgeSection, RunSection, SeekerSection, SupporterSection, parse_config
from esc_eval.runs.config_model import model

SEEKER = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
SUPPORTER = {"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.mark.parametrize("cls", [RunSection, CardsSection, SeekerSection, SupporterSection, JudgeSection, EndpointConfig, BuildSection])
def test_each_model_is_its_dataclass(cls: type) -> None:
    section = model(cls)
    assert section.__name__ == cls.__name__
    assert list(section.model_fields) == [f.name for f in fields(cls)]
    assert {name: f.get_default(call_default_factory=True) for name, f in section.model_fields.items()} == \
        {name: value for name, value in vars(cls()).items()}


def test_toml_lists_become_tuples_and_ints_floats() -> None:
    raw = {"seeker": {**SEEKER, "personas": ["a", "b"], "timeout": 5}, "supporters": [SUPPORTER],
           "run": {"termination": [{"name": "max_rounds", "rounds": 3}]}}
    config = parse_config(raw)
    assert config.seeker.personas == ("a", "b") and config.run.termination == ({"name": "max_rounds", "rounds": 3},)
    assert type(config.seeker.timeout) is float and config.seeker.timeout == 5.0
    assert isinstance(config.seeker, SeekerSection) and isinstance(config.supporters, tuple)


@pytest.mark.parametrize(("seeker", "expected"), [
    ({"max_tokens": "5"}, "[seeker] field 'max_tokens': expected int, got str '5'"),
    ({"max_tokens": 5.0}, "[seeker] field 'max_tokens': expected int, got float 5.0"),
    ({"max_tokens": True}, "[seeker] field 'max_tokens': expected int, got bool True"),
    ({"timeout": "5"}, "[seeker] field 'timeout': expected float, got str '5'"),
    ({"temperature": False}, "[seeker] field 'temperature': expected float, got bool False"),
    ({"model": 3}, "[seeker] field 'model': expected str, got int 3"),
    ({"personas": "a"}, "[seeker] field 'personas': must be a list of text values, got 'a'"),
])
def test_toml_types_are_strict(seeker: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"seeker": {**SEEKER, **seeker}, "supporters": [SUPPORTER]}, "c.toml")
    assert str(err.value) == f"c.toml: {expected}"


@pytest.mark.parametrize(("build", "expected"), [
    ({"near_duplicate_threshold": 1.5}, "field 'near_duplicate_threshold': must be in (0, 1], got 1.5"),
    ({"near_duplicate_threshold": 0}, "field 'near_duplicate_threshold': must be in (0, 1], got 0.0"),
    ({"concurrency": 0}, "field 'concurrency': must be at least 1, got 0"),
    ({"concurrency": 1.0}, "field 'concurrency': expected int, got float 1.0"),
    ({"pii": "hide"}, "field 'pii': must be one of reject, scrub, got 'hide'"),
    ({"min_quality": "best"}, "field 'min_quality': must be one of low, middle, high, got 'best'"),
])
def test_build_bounds_and_choices_come_from_field_metadata(build: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_build_config({"build": build, "extractor": SEEKER}, "b.toml", Path("."))
    assert str(err.value) == f"b.toml: [build] {expected}"
