"""The persona file schema is declared once (``esc_eval.roles.persona_schema``): the loader validates with it, and
``esc-eval personas schema`` prints its JSON Schema, which accepts the shipped personas and refuses what the
loader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from esc_eval.roles.persona_model import PersonaError
from esc_eval.roles.persona_schema import PersonaFile, persona_schema
from esc_eval.roles.personas import persona_from_file
from esc_eval.testing.cli import esc_eval

BUILTIN = Path(__file__).resolve().parents[2] / "roles" / "data" / "personas"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = persona_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def as_json(text: str) -> object:
    """A YAML file as an editor's JSON view of it (mapping keys are text)."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def test_every_documented_field_is_in_the_schema() -> None:
    props = persona_schema()["properties"]
    assert set(props) == {f.alias or name for name, f in PersonaFile.model_fields.items()}
    assert {"extends", "emotion", "disclosure", "style", "ending", "round_directives", "phrases"} <= set(props)
    assert persona_schema()["$defs"]["StyleSection"]["properties"]["register"]["anyOf"][0]["enum"] == ["casual", "formal"]


@pytest.mark.parametrize("path", sorted(BUILTIN.glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_personas_are_valid(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert list(validator.iter_errors(as_json(path.read_text(encoding="utf-8")))) == []


@pytest.mark.parametrize("text", [
    "mood: sad\n",
    "emotion: {start: 11}\n",
    "emotion: {warmth: 1}\n",
    "style: {length: huge}\n",
    "style: {register: loud}\n",
    "directives: {fr: bonjour}\n",
    "cues: {empathy: {en: sounds}}\n",
    "openness: 5\n",
    "round_directives: {soon: hi}\n",
])
def test_what_the_loader_refuses_the_schema_refuses(validator: jsonschema.Draft202012Validator, tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PersonaError):
        persona_from_file(path)
    assert list(validator.iter_errors(as_json(text))) != []


def test_validated_fields_are_normalised_for_merging(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("directives: Be brief.\nround_directives: {'3': {en: Later.}}\ndisclosure: {reveal: [0, all]}\nextends: null\n",
                    encoding="utf-8")
    persona = persona_from_file(path)
    assert persona.directives == {"en": "Be brief.", "zh": "Be brief."}
    assert persona.round_directives == ((3, {"en": "Later."}),)
    assert persona.reveal == (0, None)
    assert "extends" not in persona.spec


async def test_the_command_prints_the_schema() -> None:
    result = await esc_eval("personas", "schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == persona_schema()
