"""The persona file schema, declared once: pydantic models that validate each file and give its JSON Schema.

``esc_eval.roles.personas`` validates every file it reads with ``PersonaFile`` (so an error names the
file that holds it) and merges the validated fields over the ``extends`` chain; the
reference of the fields is ``docs/personas.md``. ``esc-eval personas schema`` prints
``persona_schema()``. Imported only when a persona file is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationError,
)

from esc_eval.roles.cards import LANGUAGES
from esc_eval.roles.persona_model import (
    ALL,
    CUE_KINDS,
    DISCLOSURE_STYLES,
    DISTRESS_MAX,
    LENGTHS,
    LEVELS,
    NAME_PATTERN,
    PHRASES,
    REGISTERS,
    RISK_KINDS,
    RISK_LEVELS,
    RISK_TEXTS,
    PersonaError,
)
from esc_eval.roles.schema_errors import Section, checks, describe, invalid, without_null_defaults


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def _text(value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise invalid(f"must be {'' if empty else 'non-empty '}text, got {_show(value)}")
    return value


def _whole(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"must be a whole number, got {_show(value)}")
        if not low <= value <= high:
            raise invalid(f"must be between {low} and {high}, got {value}")
        return value
    return check


def _number(low: int, high: int) -> PlainValidator:
    return checks(_whole(low, high), Annotated[int, Field(ge=low, le=high)])


def _choice(choices: tuple[str, ...]) -> PlainValidator:
    def check(value: Any) -> str:
        if value not in choices:
            raise invalid(f"must be one of {', '.join(choices)}, got {value!r:.60}")
        return value
    return checks(check, Literal[choices])


def _key(keys: tuple[str, ...]) -> PlainValidator:
    """A mapping key that must be one of ``keys`` (an unknown one is reported as an unknown field)."""
    def check(value: Any) -> str:
        if value not in keys:
            raise invalid(f"unknown field (known: {', '.join(sorted(keys))})")
        return value
    return checks(check, Literal[keys])


def _name(value: Any) -> str:
    name = _text(value)
    if not NAME_PATTERN.match(name) or name.startswith("_"):
        raise invalid(f"must be letters, digits, '.', '-', '_', got {name!r}")
    return name


def _true_or_false(value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"must be true or false, got {value!r}")
    return value


def _cue_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"must be a list of text, got {type(value).__name__}")
    return value


def _fact_count(value: Any) -> int | None:
    return None if value == ALL else _FACTS(value)


def _reveal(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise invalid(f"must be a non-empty list of fact counts (numbers or '{ALL}'), got {value!r:.60}")
    return value


def _never_fewer(counts: list[int | None]) -> list[int | None]:
    for i in range(1, len(counts)):
        before, count = counts[i - 1], counts[i]
        if before is None or (count is not None and count < before):
            raise invalid("must not decrease: facts once shared cannot be taken back", at=f"[{i}]")
    return counts


def _one_text_for_all(value: Any) -> Any:
    """A single text stands for every language."""
    return {lang: _text(value) for lang in LANGUAGES} if isinstance(value, str) else value


def _some_language(texts: dict[str, str]) -> dict[str, str]:
    if not texts:
        raise invalid(f"must give text for {' and/or '.join(LANGUAGES)}")
    return texts


def _round_number(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _some_band(bands: dict[int, str]) -> dict[int, str]:
    if not bands:
        raise invalid("must map distress levels to names")
    return bands


_FACTS = _whole(0, 1000)
# Every field of a persona file may be left out (None) but not set to null: the checks refuse None.
Text = Annotated[str | None, checks(_text, str)]
Language = Annotated[str, _key(LANGUAGES)]
Distress = Annotated[int | None, _number(0, DISTRESS_MAX)]
Change = Annotated[int | None, _number(-DISTRESS_MAX, DISTRESS_MAX)]
Turns = Annotated[int | None, _number(1, 1000)]
Level = Annotated[str | None, _choice(LEVELS)]
Cues = Annotated[list[Text], BeforeValidator(_cue_list)]
CuesByLanguage = dict[Language, Cues]
# mypy cannot read Literal[...] of a tuple constant: this one is a runtime type, for the JSON Schema only.
PerLanguage = Annotated[dict[Language, Text], BeforeValidator(_one_text_for_all, json_schema_input_type=str | dict[Literal[LANGUAGES], str]),  # type: ignore[valid-type]
                        AfterValidator(_some_language)]


class EmotionSection(Section):
    """Distress (0 calm .. 10 overwhelmed) at the start and how it moves after each supporter reply."""

    start: Distress = None
    on_empathy: Change = None
    on_advice: Change = None
    on_neither: Change = None
    drift: Change = None
    show: Annotated[bool | None, checks(_true_or_false, bool)] = None
    """Tell the seeker its current feeling every round."""


class DisclosureSection(Section):
    reveal: Annotated[list[Annotated[int | None, checks(_fact_count, int | Literal[ALL])]], BeforeValidator(_reveal),
                      AfterValidator(_never_fewer)] = Field(None, validate_default=True)
    """How many facts of the card's problem the seeker may have shared by reply 1, 2, 3, ... ('all': every fact; the last repeats)."""


class StyleSection(Section):
    length: Annotated[str, _choice(LENGTHS)] | None = None
    # the alias: ``register`` is a method of the models' base class
    register_: Annotated[str, _choice(REGISTERS)] | None = Field(default=None, alias="register")
    language: Annotated[str, _choice(LANGUAGES)] | None = None
    """Default: the card's language."""


class EndingSection(Section):
    marker: Text = None
    when_satisfied: Distress | None = None
    """Leave once distress is at most this."""
    when_advice_repeated: Turns | None = None
    """Leave after this many advice replies in a row."""
    after_unhelpful: Turns | None = None
    """Leave after this many replies without empathy."""


class RoleBreakSection(Section):
    cues: CuesByLanguage = Field(default_factory=dict)
    reminder: PerLanguage = Field(default_factory=dict)
    retries: Annotated[int, _number(0, 100)] | None = None


class RiskSection(Section):
    """A risk persona's hidden ground truth (docs/safety.md): the safety judge's reference, never shown to the supporter."""

    kind: Annotated[str, _choice(RISK_KINDS)] | None = None
    level: Annotated[str, _choice(RISK_LEVELS)] | None = None
    style: Annotated[str, _choice(DISCLOSURE_STYLES)] | None = None
    """direct: said in plain words; indirect: hinted (the signals models miss)."""
    round: Annotated[int, _number(1, 100)] | None = None
    """The seeker reply that discloses the risk (the built-ins: 3 at the latest, so 5 rounds leave the supporter turns to respond)."""
    texts: dict[Language, dict[Annotated[str, _key(RISK_TEXTS)], Text]] = Field(default_factory=dict)
    """Per language: ``disclose`` (the instruction at the disclosure round), ``on_asked``, ``on_ignored``, ``on_resources``."""


class PersonaFile(Section):
    """A seeker persona file (YAML): every field optional, merged over the persona it ``extends`` (docs/personas.md)."""

    name: Annotated[str | None, checks(_name, str)] = None
    """Default: the file's stem."""
    description: Annotated[str | None, checks(lambda value: _text(value, empty=True), str)] = None
    extends: Text | None = None
    """A persona name (a sibling NAME.yaml first, then a built-in) or a .yaml path relative to this file."""
    emotion: EmotionSection = Field(default_factory=EmotionSection)
    disclosure: DisclosureSection | None = None
    openness: Level | None = None
    resistance: Level | None = None
    """Resistance to suggestions."""
    style: StyleSection = Field(default_factory=StyleSection)
    ending: EndingSection = Field(default_factory=EndingSection)
    directives: PerLanguage | None = None
    """Free text added every round."""
    round_directives: dict[Annotated[Turns, BeforeValidator(_round_number)], PerLanguage] | None = Field(
        None, json_schema_extra={"propertyNames": {"pattern": "^[0-9]+$"}})
    """Free text from round N on."""
    cues: dict[Annotated[str, _key(CUE_KINDS)], CuesByLanguage] = Field(default_factory=dict)
    role_break: RoleBreakSection = Field(default_factory=RoleBreakSection)
    emotion_labels: dict[Language, Annotated[dict[Annotated[int, _number(0, DISTRESS_MAX)], Text], AfterValidator(_some_band)]] = Field(
        default_factory=dict)
    phrases: dict[Language, dict[Annotated[str, _key(PHRASES)], Text]] = Field(default_factory=dict)
    risk: RiskSection | None = None
    """Makes this a risk persona (docs/safety.md); personas without it are the safety judge's controls."""


def validate_persona_file(label: str, data: dict[str, Any]) -> dict[str, Any]:
    """The fields ``data`` sets, checked and normalised; ``PersonaError`` names ``label`` and the field."""
    try:
        fields = PersonaFile.model_validate(data).model_dump(exclude_unset=True, by_alias=True)
    except ValidationError as exc:
        field, message = describe(exc, PersonaFile, unknown="unknown field (known: {known})",
                                  mapping="must be a mapping, got {type} {value!r:.60}")
        raise PersonaError(label, message, field=field) from None
    if fields.get("extends") is None:
        fields.pop("extends", None)
    return fields


def persona_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a persona file, for editor completion."""
    schema = without_null_defaults(PersonaFile.model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "esc-eval persona"}


__all__ = ["PersonaFile", "persona_schema", "validate_persona_file"]
