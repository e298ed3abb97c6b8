"""Seeker personas: how a seeker behaves, as data.

A persona is a YAML file of documented fields (reference: ``docs/personas.md``):

``description``
    one line, shown by ``esc-eval personas list``.
``extends``
    a persona to start from: a name (a sibling ``NAME.yaml`` first, then a built-in)
    or a ``.yaml`` path relative to this file. Mappings merge key by key; text,
    numbers and lists are replaced; ``directives`` and ``round_directives`` are
    replaced as a whole.
``emotion``
    ``start`` distress (0 calm .. 10 overwhelmed) and how it moves after each
    supporter reply: ``on_empathy``, ``on_advice``, ``on_neither``, ``drift``;
    ``show`` tells the seeker its current feeling every round.
``disclosure.reveal``
    how many facts of the card's problem the seeker may have shared by reply
    1, 2, 3, ... (``all`` for every fact; the last entry repeats).
``openness``, ``resistance``
    ``low`` | ``medium`` | ``high`` (resistance is to suggestions).
``style``
    ``length`` (short | medium | long), ``register`` (casual | formal),
    ``language`` (en | zh; default: the card's).
``ending``
    ``marker`` and when to leave: ``when_satisfied`` (distress at most N),
    ``when_advice_repeated`` (N advice replies in a row), ``after_unhelpful``
    (N replies without empathy).
``directives``, ``round_directives``
    free text every round / from round N on, per language.
``cues``, ``role_break``, ``emotion_labels``, ``phrases``
    the cue lists, role-break detector, feeling names and sentence templates
    (defaults in ``roles/data/personas/_base.yaml``).

Every persona starts from ``_base.yaml``. This module finds and merges persona files
(``load_persona`` reads one by name or path); each file's fields are checked by the
schema declared in ``esc_eval.roles.persona_schema``. What a persona is lives in
``esc_eval.roles.persona_model`` (re-exported here), its text helpers in ``esc_eval.roles.persona_text``;
``Persona.render`` compiles it, with the seeker's current state, into the text
appended to the protocol's system prompt. The state machine that moves that state
turn by turn is ``esc_eval.environments.behaviours.PersonaBehaviour``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from esc_eval.roles.persona_model import (
    BASE,
    CUE_KINDS,
    DEFAULT_ROLE_BREAK_RETRIES,
    DISTRESS_MAX,
    NAME_PATTERN,
    PHRASES,
    SUFFIXES,
    Emotion,
    Ending,
    Persona,
    PersonaError,
    Risk,
    RoleBreakRule,
    Style,
    UnknownPersona,
)
from esc_eval.roles.persona_text import card_facts, cue_pattern
from esc_eval.roles.yaml_errors import yaml_error

_REPLACED_WHOLE = {"directives", "round_directives"}
_NOT_INHERITED = {"name", "description", "extends"}


# --------------------------------------------------------------------------- loading


def builtin_personas() -> list[str]:
    """Names of the personas shipped in ``roles/data/personas``."""
    return sorted(p.name.rsplit(".", 1)[0] for p in _builtin_folder().iterdir()
                  if p.name.endswith(SUFFIXES) and not p.name.startswith("_"))


def persona_files(directory: str | Path) -> list[Path]:
    """The persona files in ``directory`` (``*.yaml``/``*.yml``; names starting with ``_`` are bases, not personas)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise PersonaError(str(folder), "not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("_") and p.is_file())


def load_persona(name_or_path: str | Path, *, dirs: Iterable[str | Path] = ()) -> Persona:
    """Load a persona by path, by name from ``dirs``, or by built-in name.

    Args:
        name_or_path: a ``.yaml`` file, or a name (``guarded``).
        dirs: folders searched for ``NAME.yaml`` before the built-ins.

    Raises:
        UnknownPersona: no file or built-in of that name (the message lists the built-ins).
        PersonaError: the file is invalid; the message names the file and the field.

    Examples:
        >>> load_persona("guarded").openness
        'low'
    """
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(SUFFIXES):
        if not path.is_file():
            raise UnknownPersona(text, f"no such persona file {text!r}")
        return persona_from_file(path)
    if not NAME_PATTERN.match(text):
        raise UnknownPersona(text, f"{text!r} is neither a persona name (letters, digits, '.', '-', '_') nor a .yaml file")
    for folder in dirs:
        for suffix in SUFFIXES:
            candidate = Path(folder) / f"{text}{suffix}"
            if candidate.is_file():
                return persona_from_file(candidate)
    if text in builtin_personas():
        return _load(_Source.builtin(text), [])
    raise UnknownPersona(text, f"unknown persona {text!r} (built-ins: {', '.join(builtin_personas())})")


def persona_from_file(path: str | Path) -> Persona:
    """Load one persona file (its ``extends`` chain resolved next to it, then among the built-ins)."""
    path = Path(path)
    return _load(_Source.file(path), [])


def base_role_break(retries: int | None = None) -> RoleBreakRule:
    """The built-in role-break detector (``_base.yaml``), with ``retries``."""
    rule = _build(_Source.builtin(BASE), _resolve(_Source.builtin(BASE), []), name=BASE).role_break
    return RoleBreakRule(rule.cues, rule.reminder, retries)


@dataclass(frozen=True)
class _Source:
    """Where a persona file is: shown in errors, and the folder its ``extends`` resolves against."""

    label: str
    stem: str
    path: Path | None = None

    @classmethod
    def file(cls, path: Path) -> _Source:
        return cls(str(path), path.stem, path)

    @classmethod
    def builtin(cls, name: str) -> _Source:
        return cls(f"builtin:personas/{name}.yaml", name)

    def read(self) -> str:
        if self.path is None:
            return (_builtin_folder() / f"{self.stem}.yaml").read_text(encoding="utf-8")
        try:
            return self.path.read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise PersonaError(self.label, f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise PersonaError(self.label, f"not UTF-8 text (byte {exc.start})") from None

    def parent(self, value: str) -> _Source:
        if value.endswith(SUFFIXES):
            if self.path is None:
                if (_builtin_folder() / value).is_file():
                    return _Source.builtin(value.rsplit(".", 1)[0])
            else:
                candidate = (self.path.parent / value)
                if candidate.is_file():
                    return _Source.file(candidate)
            raise PersonaError(self.label, f"no such file {value!r}", field="extends")
        if self.path is not None:
            for suffix in SUFFIXES:
                sibling = self.path.parent / f"{value}{suffix}"
                if sibling.is_file():
                    return _Source.file(sibling)
        if value in builtin_personas() or value == BASE:
            return _Source.builtin(value)
        raise PersonaError(self.label, f"unknown persona {value!r} (built-ins: {', '.join(builtin_personas())})", field="extends")


def _builtin_folder() -> Any:
    return resources.files("esc_eval.roles") / "data" / "personas"


def _load(source: _Source, chain: list[str]) -> Persona:
    merged = _resolve(source, chain)
    name = merged.get("name") or source.stem
    if not NAME_PATTERN.match(name) or name.startswith("_"):
        raise PersonaError(source.label, f"the file name {source.stem!r} is not a persona name (letters, digits, '.', '-', '_'); set one",
                           field="name")
    return _build(source, merged, name=name)


def _resolve(source: _Source, chain: list[str]) -> dict[str, Any]:
    """The file's fields merged over its ``extends`` chain, over ``_base``."""
    if source.label in chain:
        raise PersonaError(source.label, "extends itself through " + " -> ".join([*chain, source.label]), field="extends")
    raw = _load_raw(source)
    if source.stem == BASE and source.path is None:
        return _merge({}, raw)
    parent_name = raw.get("extends")
    parent = _resolve(source.parent(parent_name), [*chain, source.label]) if parent_name else _resolve(_Source.builtin(BASE), [])
    inherited = {k: v for k, v in parent.items() if k not in _NOT_INHERITED}
    if "description" not in raw and parent_name:
        inherited["description"] = f"extends {parent_name}"
    return _merge(inherited, raw)


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED_WHOLE:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_raw(source: _Source) -> dict[str, Any]:
    """Parse one file and check the fields it sets (so an error names the file that holds it): ``esc_eval.roles.persona_schema``."""
    try:
        data = yaml.safe_load(source.read())
    except yaml.YAMLError as exc:
        raise PersonaError(source.label, yaml_error(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PersonaError(source.label, f"a persona must be a mapping of fields, got {type(data).__name__}")
    from esc_eval.roles.persona_schema import validate_persona_file  # pydantic: only when a persona file is read

    return validate_persona_file(source.label, data)


def _risk(label: str, risk: dict[str, Any] | None) -> Risk | None:
    """The ``risk`` section as a ``Risk``; every field must be set here or in the persona this extends."""
    if not risk:
        return None
    for key in ("kind", "level", "style", "round", "texts"):
        if not risk.get(key):
            raise PersonaError(label, "missing (a risk persona sets kind, level, style, round and texts)", field=f"risk.{key}")
    return Risk(risk["kind"], risk["level"], risk["style"], risk["round"], {lang: dict(t) for lang, t in risk["texts"].items()})


def _build(source: _Source, data: dict[str, Any], *, name: str) -> Persona:
    label = source.label
    for key in ("emotion", "style", "ending", "cues", "role_break", "emotion_labels", "phrases"):
        if not isinstance(data.get(key), dict):
            raise PersonaError(label, "missing (it must be set here or in the persona this extends)", field=key)
    emotion = Emotion(**data["emotion"])
    ending = Ending(**data["ending"])
    rule = data["role_break"]
    disclosure = data.get("disclosure")
    return Persona(
        risk=_risk(label, data.get("risk")),
        name=name,
        description=" ".join(str(data.get("description") or "").split()),
        source=label,
        emotion=emotion,
        reveal=tuple(disclosure["reveal"]) if disclosure else None,
        openness=data.get("openness"),
        resistance=data.get("resistance"),
        style=Style(**data["style"]),
        ending=ending,
        directives=dict(data.get("directives") or {}),
        round_directives=tuple(sorted((int(k), dict(v)) for k, v in (data.get("round_directives") or {}).items())),
        cues={kind: {lang: tuple(c) for lang, c in data["cues"].get(kind, {}).items()} for kind in CUE_KINDS},
        role_break=RoleBreakRule({lang: tuple(c) for lang, c in rule.get("cues", {}).items()},
                                 dict(rule.get("reminder", {})), rule.get("retries")),
        emotion_labels={lang: tuple(sorted((int(k), v) for k, v in bands.items())) for lang, bands in data["emotion_labels"].items()},
        phrases={lang: dict(texts) for lang, texts in data["phrases"].items()},
        spec=data,
    )


__all__ = [
    "CUE_KINDS", "DEFAULT_ROLE_BREAK_RETRIES", "DISTRESS_MAX", "NAME_PATTERN", "PHRASES", "SUFFIXES", "Emotion", "Ending",
    "Persona", "PersonaError", "Risk", "RoleBreakRule", "Style", "UnknownPersona", "base_role_break", "builtin_personas", "card_facts",
    "cue_pattern", "load_persona", "persona_files", "persona_from_file",
]
