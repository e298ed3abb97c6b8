"""Seeker protocols: the prompts and visibility rules of a simulated conversation, as data.

A protocol says what the seeker model is told (a system prompt embedding the card),
the supporter's fixed opening line, the supporter's default system prompt, and who
sees the opener. The project ships its own protocols (``roles/data/protocols``);
ESC-Eval's ``esc_role_protocol.json`` loads unchanged, so requests match its own.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from esc_eval.roles.cards import LANGUAGES, RoleCard
from esc_eval.roles.jsonl import json_error
from esc_eval.roles.yaml_errors import yaml_error

CARD_SLOT = "{card}"
# ESC-Eval's protocol file states its default supporter prompt only in prose.
_DEFAULT_SYSTEM_NOTE = re.compile(r"default system message '([^']*)'")


class ProtocolError(ValueError):
    """A protocol file is missing, unreadable or incomplete."""


@dataclass(frozen=True, slots=True)
class SeekerProtocol:
    """What each side of a conversation is told.

    Attributes:
        name: built-in name or the file path it was loaded from.
        seeker_system_prompt: per language, a template containing ``{card}``.
        supporter_opener: per language, the supporter's fixed first line.
        supporter_system_prompt: per language, used when a supporter config sets none.
        supporter_sees_opener: ESC-Eval hides the opener from the model under test.
    """

    name: str
    seeker_system_prompt: dict[str, str]
    supporter_opener: dict[str, str]
    supporter_system_prompt: dict[str, str]
    supporter_sees_opener: bool = False

    def seeker_prompt(self, card: RoleCard) -> str:
        """The seeker's system prompt for ``card``: the card's profile put verbatim into ``{card}``."""
        return _fill_card(self._pick(self.seeker_system_prompt, card.language), card.profile)

    def opener(self, language: str) -> str:
        """The supporter's fixed first line in ``language``."""
        return self._pick(self.supporter_opener, language)

    def supporter_prompt(self, language: str) -> str:
        """The supporter's system prompt in ``language`` when its config sets none."""
        return self._pick(self.supporter_system_prompt, language)

    def _pick(self, table: dict[str, str], language: str) -> str:
        try:
            return table[language]
        except KeyError:
            raise ProtocolError(f"protocol {self.name}: no text for language '{language}'") from None


_BUILTIN_SUFFIXES = (".yaml", ".yml", ".json")


@functools.lru_cache(maxsize=1024)
def _fill_card(template: str, profile: str) -> str:
    """One shared string per card: every seeker request of every episode on that card carries it.

    str.replace, not str.format: card text may hold braces.
    """
    return template.replace(CARD_SLOT, profile)


def builtin_protocols() -> list[str]:
    """Names of the protocols shipped in ``roles/data/protocols``."""
    folder = resources.files("esc_eval.roles") / "data" / "protocols"
    return sorted({p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(_BUILTIN_SUFFIXES)})


def load_protocol(name_or_path: str | Path) -> SeekerProtocol:
    """Load a protocol file (YAML/JSON) by path, or a built-in protocol by name.

    Args:
        name_or_path: an existing file (e.g. ESC-Eval's ``esc_role_protocol.json``),
            or the name of a built-in protocol (``"default"``).

    Raises:
        ProtocolError: the file is unreadable or incomplete, or the name is unknown
            (the message lists the built-ins).

    Examples:
        >>> load_protocol("default").supporter_sees_opener
        False
    """
    path = Path(name_or_path)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{path}: cannot read protocol: {exc}") from None
        return _parse(str(path), text, path.suffix.lower())
    folder = resources.files("esc_eval.roles") / "data" / "protocols"
    for suffix in _BUILTIN_SUFFIXES:
        candidate = folder / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return _parse(str(name_or_path), candidate.read_text(encoding="utf-8"), suffix)
    raise ProtocolError(
        f"unknown protocol '{name_or_path}': not a file, and not one of the built-ins "
        f"({', '.join(builtin_protocols())})"
    )


def _parse(name: str, text: str, suffix: str) -> SeekerProtocol:
    try:
        data: Any = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{name}: {json_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{name}: {yaml_error(exc)}") from None
    except RecursionError:
        raise ProtocolError(f"{name}: nested too deeply to be a protocol") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{name}: a protocol must be a mapping")
    seeker = _per_language(name, data, "seeker_system_prompt")
    for lang, template in seeker.items():
        if CARD_SLOT not in template:
            raise ProtocolError(f"{name}: field 'seeker_system_prompt.{lang}' lacks the {CARD_SLOT} slot")
    opener = _per_language(name, data, "supporter_opener")
    if "supporter_system_prompt" in data:
        supporter = _per_language(name, data, "supporter_system_prompt")
    else:
        # ESC-Eval's file states its default supporter prompt only in its protocol notes.
        notes = data.get("protocol", [])
        notes = " ".join(str(n) for n in notes) if isinstance(notes, list) else str(notes)
        found = _DEFAULT_SYSTEM_NOTE.search(notes)
        if not found:
            raise ProtocolError(f"{name}: missing field 'supporter_system_prompt'")
        supporter = {lang: found.group(1) for lang in seeker}
    for field, table in (("supporter_opener", opener), ("supporter_system_prompt", supporter)):
        missing = sorted(set(seeker) - set(table))
        if missing:
            raise ProtocolError(f"{name}: field '{field}' has no text for {', '.join(missing)}")
    sees = data.get("supporter_sees_opener", False)
    if not isinstance(sees, bool):
        raise ProtocolError(f"{name}: field 'supporter_sees_opener' must be true or false, got {sees!r}")
    return SeekerProtocol(name, seeker, opener, supporter, sees)


def _per_language(name: str, data: dict[str, Any], field: str) -> dict[str, str]:
    value = data.get(field)
    if isinstance(value, str):
        return {lang: value for lang in LANGUAGES}
    if not isinstance(value, dict) or not value:
        raise ProtocolError(f"{name}: field '{field}' must map languages to text")
    for lang, text in value.items():
        if lang not in LANGUAGES or not isinstance(text, str) or not text.strip():
            raise ProtocolError(f"{name}: field '{field}.{lang}' must be non-empty text for one of {LANGUAGES}")
    return dict(value)
