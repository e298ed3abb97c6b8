"""Our judge-profile schema is declared once (``esc_eval.agents.judge.profile_schema``): the loader validates with it,
and ``esc-eval judge schema`` prints its JSON Schema, which accepts the shipped profile and refuses what the
loader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from esc_eval.agents.judge.profile_schema import ProfileFile, profile_schema
from esc_eval.agents.judge.profiles import ProfileError, builtin_profiles, load_profile
from esc_eval.testing.cli import esc_eval

PROFILES = Path(__file__).resolve().parents[3] / "agents" / "judge" / "data" / "profiles"
GOOD = {"template": "{rubric}{dialogue}", "dimensions": [{"key": "empathic", "rubric": {"en": "r"}}]}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = profile_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_field_is_in_the_schema() -> None:
    schema = profile_schema()
    assert set(schema["properties"]) == set(ProfileFile.model_fields)
    assert schema["required"] == ["template", "dimensions"]
    assert schema["properties"]["parse"]["enum"] == ["esc_rank", "label"]


@pytest.mark.parametrize("name", builtin_profiles())
def test_the_shipped_profiles_are_valid(validator: jsonschema.Draft202012Validator, name: str) -> None:
    data = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    assert list(validator.iter_errors(data)) == []


@pytest.mark.parametrize("change", [
    {"templat": "x"},
    {"parse": "magic"},
    {"dimensions": []},
    {"dimensions": ["fluency"]},
    {"dimensions": [{"key": "empathic"}]},
    {"languages": {"zh": {"foo": "x"}}},
    {"rewrites": [["a"]]},
    {"join": 3},
])
def test_what_the_loader_refuses_the_schema_refuses(validator: jsonschema.Draft202012Validator, tmp_path: Path,
                                                    change: dict[str, object]) -> None:
    data = {**GOOD, **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"^.*bad\.json: field '"):
        load_profile(path)
    assert list(validator.iter_errors(data)) != []


def test_a_missing_rubric_says_missing(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**GOOD, "dimensions": [{"key": "empathic"}]}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"mine.json: field 'dimensions\[0\].rubric': missing$"):
        load_profile(path)


def test_errors_inside_entries_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    for change, field, message in [
        ({"rewrites": [["a", "b"], ["", "c"]]}, r"rewrites\[1\]", r"must be a pair \[old, new\] of text, old non-empty"),
        ({"dimensions": [{"key": "empathic", "rubric": {"en": "r"}, "name_in_prompt": {"zh": 3}}]},
         r"dimensions\[0\].name_in_prompt.zh", "must be non-empty text, got int"),
        ({"languages": {"zh": {"template": "x"}}}, "languages.zh.template", r"must contain \{rubric\}"),
        ({"dimensions": [{"key": "kind", "rubric": {"en": "r"}}]}, r"dimensions\[0\].paper_name", "unknown dimension key 'kind'"),
    ]:
        path.write_text(json.dumps({**GOOD, **change}), encoding="utf-8")
        with pytest.raises(ProfileError, match=rf"mine.json: field '{field}': {message}"):
            load_profile(path)


def test_a_valid_file_loads_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "languages": {"zh": {"system_prompt": None, "seeker_prefix": "U："}},
                                    "dimensions": [{"key": "empathic", "rubric": {"en": "r", "zh": "z"},
                                                    "name_in_prompt": {"zh": "共情", "en": "empathy"}}],
                                    "rewrites": [["a", "b"]]}, allow_unicode=True), encoding="utf-8")
    profile = load_profile(path)
    assert profile.by_language == {"zh": {"system_prompt": None, "seeker_prefix": "U："}}
    assert profile.dimension("empathic").prompt_name("zh") == "共情" and profile.dimension("empathic").name_in_prompt == "empathy"
    assert profile.rewrites == (("a", "b"),) and profile.parse_rule == "label" and profile.name == "mine"


async def test_the_command_prints_the_schema() -> None:
    result = await esc_eval("judge", "schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == profile_schema()
