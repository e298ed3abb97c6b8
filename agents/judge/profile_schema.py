"""Our judge-profile file schema, declared once: pydantic models that validate a file and give its JSON Schema.

The form is that of ``agents/judge/data/profiles/default.yaml``; ``esc_eval.agents.judge.profiles``
validates such a file with ``ProfileFile`` and builds the ``JudgeProfile`` from it.
``esc-eval judge schema`` prints ``profile_schema()``. ESC-Eval's ``esc_rank_prompts.json``
is a fixed foreign format, read by ``esc_rank_profile`` with the same checks. Imported
only when a profile file is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)

from esc_eval.agents.judge.labels import PARSE_RULES
from esc_eval.agents.judge.profile_fields import ProfileError
from esc_eval.agents.judge.profile_fields import dimension_list as _checked_dimension_list
from esc_eval.agents.judge.profile_fields import paper_name as _checked_paper_name
from esc_eval.agents.judge.profile_fields import rewrites as _checked_rewrites
from esc_eval.agents.judge.profile_fields import template as _checked_template
from esc_eval.agents.judge.profile_fields import text as _checked_text
from esc_eval.roles.schema_errors import Section, checks, describe, invalid, without_null_defaults


@contextmanager
def _reported() -> Iterator[None]:
    """A check of ``esc_eval.agents.judge.profiles`` (which raises ``ProfileError``) reported as a pydantic error."""
    try:
        yield
    except ProfileError as exc:
        raise invalid(exc.reason, at=exc.field or "") from None


def _text(value: Any) -> str:
    with _reported():
        return _checked_text(value, "", "")


def _any_text(value: Any) -> str:
    with _reported():
        return _checked_text(value, "", "", allow_empty=True)


def _template(value: Any) -> str:
    with _reported():
        return _checked_template(value, "", "")


def _parse_rule(value: Any) -> str:
    if value not in PARSE_RULES:
        raise invalid(f"unknown parse rule {value!r} (use one of {', '.join(PARSE_RULES)})")
    return value


def _system_prompt(value: Any) -> str | None:
    return None if value is None else _text(value)


def _dimension_list(value: Any) -> Any:
    with _reported():
        return _checked_dimension_list(value, "", "")


def _rewrites(value: Any) -> tuple[tuple[str, str], ...]:
    with _reported():
        return _checked_rewrites(value, "", "")


def _names(value: Any) -> str | dict[str, str]:
    """One name, or a name per language (a mapping that must name the dimension at all)."""
    if not isinstance(value, dict):
        return _text(value)
    if not value:
        raise invalid("must name the dimension")
    with _reported():
        return {str(lang): _checked_text(name, "", f".{lang}") for lang, name in value.items()}


def _rubric(value: Any) -> Any:
    if isinstance(value, dict):
        if not value:
            raise invalid("needs a rubric for at least one language")
        return {str(lang): rubric for lang, rubric in value.items()}
    return value


def _language_keys(value: Any) -> Any:
    """No ``languages`` (or null) overrides nothing; a language is named by text."""
    return {str(lang): overrides for lang, overrides in value.items()} if isinstance(value, dict) else value or {}


# A field that may be left out is None; the checks refuse null where the field does not allow it (its docs say so).
Text = Annotated[str, checks(_text, str)]
AnyText = Annotated[str, checks(_any_text, str)]
Template = Annotated[str, checks(_template, str)]
SystemPrompt = Annotated[str | None, checks(_system_prompt, str | None)]


class LanguageOverrides(Section):
    """What changes for judging in one language (only what is set overrides)."""

    template: Annotated[str | None, checks(_template, str)] = None
    system_prompt: SystemPrompt = None
    supporter_prefix: Annotated[str | None, checks(_any_text, str)] = None
    seeker_prefix: Annotated[str | None, checks(_any_text, str)] = None


class DimensionEntry(Section):
    """One scored dimension."""

    key: Text
    """The score-file key (fluency, diversity, empathic, suggestion, tech, human, overall, or your own)."""
    name_in_prompt: Annotated[str | dict[str, str] | None, checks(_names, str | dict[str, str])] = None
    """How the prompt names the dimension: text, or {LANG: text}; default: the key."""
    rubric: Annotated[dict[str, Text], BeforeValidator(_rubric)]
    """{LANG: rubric text} placed at {rubric}."""
    paper_name: Annotated[str | None, checks(_text, str)] = None
    """The ESC-Eval paper's name; needed for a key the paper does not use."""

    @model_validator(mode="after")
    def _named_in_the_paper(self) -> DimensionEntry:
        if self.paper_name is None:
            with _reported():
                self.paper_name = _checked_paper_name(self.key, None, "", ".paper_name")
        return self


class ProfileFile(Section):
    """An esc-eval judge profile (YAML or JSON), as agents/judge/data/profiles/default.yaml."""

    parse: Annotated[str, checks(_parse_rule, Literal[tuple(PARSE_RULES)])] = "label"
    """How a label is read from a judge reply."""
    system_prompt: SystemPrompt = None
    """The system message; null for a user message only."""
    languages: Annotated[dict[str, LanguageOverrides], BeforeValidator(_language_keys)] = Field(default_factory=dict)
    """{LANG: overrides of template, system_prompt, supporter_prefix, seeker_prefix}."""
    dimensions: Annotated[list[DimensionEntry], BeforeValidator(_dimension_list)] = Field(
        None, validate_default=True, json_schema_extra={"minItems": 1})
    name: Annotated[str | None, checks(_text, str)] = None
    """Default: the file's stem."""
    template: Template = Field(default=None, validate_default=True)
    """The user prompt: {rubric}, {dialogue} or {dialogue_stripped}, {name_in_prompt}; other braces are literal."""
    supporter_prefix: AnyText = ""
    seeker_prefix: AnyText = ""
    join: AnyText = "\n"
    """Between dialogue lines."""
    rewrites: Annotated[tuple[tuple[str, str], ...], checks(_rewrites, list[Annotated[list[str], Field(min_length=2, max_length=2)]])] = ()
    """[[old, new], ...] replacements applied in order to the joined dialogue."""
    description: Annotated[str | None, checks(lambda value: value, str)] = None


def validate_profile_file(source: str, data: Any) -> ProfileFile:
    """``data`` checked against our schema; ``ProfileError`` names ``source`` and the field."""
    try:
        return ProfileFile.model_validate(data)
    except ValidationError as exc:
        field, message = describe(exc, ProfileFile, unknown="unknown key (allowed: {known})", mapping="must be a mapping, got {type}")
        raise ProfileError(source, message, field=field) from None


def profile_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a judge profile file in our schema, for editor completion."""
    schema = without_null_defaults(ProfileFile.model_json_schema())
    schema["required"] = ["template", "dimensions"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "esc-eval judge profile"}


__all__ = ["DimensionEntry", "LanguageOverrides", "ProfileFile", "profile_schema", "validate_profile_file"]
