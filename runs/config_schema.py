"""The JSON Schema of a config file, for editor completion of TOML files (``esc-eval config schema``).

Generated from the models that validate each section (``esc_eval.runs.config_model``: types, defaults,
bounds and docs of the section dataclasses), so the schema cannot drift from what
``parse_config`` accepts; the names a config may use (backends, detectors, turn policies)
come from the registries, installed plugins included.
"""

from __future__ import annotations

from typing import Any, Required

from pydantic import TypeAdapter, with_config
from typing_extensions import TypedDict

from esc_eval.runs.config import CardsSection, JudgeSection, RunSection, SafetySection, SeekerSection, SupporterSection
from esc_eval.runs.config_model import model

Run, Cards, Seeker, Supporter, Judge, Safety = map(model, (RunSection, CardsSection, SeekerSection, SupporterSection, JudgeSection,
                                                           SafetySection))


@with_config({"extra": "forbid"})
class ConfigFile(TypedDict, total=False):
    """An esc-eval run config (TOML): docs in README.md, docs/plugins.md."""

    run: Run  # type: ignore[valid-type]
    cards: Cards  # type: ignore[valid-type]
    seeker: Seeker  # type: ignore[valid-type]
    seekers: list[Seeker]  # type: ignore[valid-type]
    supporters: Required[list[Supporter]]  # type: ignore[valid-type]
    judge: Judge  # type: ignore[valid-type]
    safety: Safety  # type: ignore[valid-type]


def config_schema() -> dict[str, Any]:
    """The schema (draft 2020-12) of a config file; a judge-only file is a config with only ``[judge]``."""
    from esc_eval.agents.backends import BACKENDS
    from esc_eval.environments.termination import TERMINATION
    from esc_eval.environments.turn_policies import TURN_POLICIES

    schema = _without_null(TypeAdapter(ConfigFile).json_schema())
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "esc-eval config"}
    defs = schema["$defs"]
    schema["properties"]["supporters"]["minItems"] = 1
    schema["properties"]["seekers"] |= {"minItems": 1, "items": {"allOf": [{"$ref": "#/$defs/SeekerSection"}, {"required": ["name"]}]}}
    schema["oneOf"] = [{"required": ["seeker"]}, {"required": ["seekers"]}]  # one seeker, or several named ones
    defs["SupporterSection"]["required"] = ["name"]
    for section in ("SeekerSection", "SupporterSection", "JudgeSection"):
        defs[section]["properties"]["backend"]["enum"] = BACKENDS.names()
    run = defs["RunSection"]["properties"]
    run["termination"]["items"] = _spec(TERMINATION.names())
    run["turn_policy"] = {**run["turn_policy"], **_spec(TURN_POLICIES.names())}
    defs["CardsSection"]["properties"]["language"]["enum"] = ["en", "zh"]
    return schema


def _spec(names: list[str]) -> dict[str, Any]:
    """A ``{name = ..., ARG = ...}`` table naming one of ``names``."""
    return {"type": "object", "required": ["name"], "properties": {"name": {"enum": names}}, "additionalProperties": True}


def _without_null(node: Any) -> Any:
    """TOML has no null: an optional field is just its type (leaving it out means the default)."""
    if isinstance(node, dict):
        options = node.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            node = {k: v for k, v in node.items() if k != "anyOf"} | (rest[0] if len(rest) == 1 else {"anyOf": rest})
            if node.get("default", 0) is None:
                del node["default"]
        return {k: _without_null(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_null(v) for v in node]
    return node


__all__ = ["ConfigFile", "config_schema"]
