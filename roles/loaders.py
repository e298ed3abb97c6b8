"""Read role cards from ESC-Eval JSON lists, JSONL or YAML, with one clear error per problem.

Two record shapes are accepted in every format:
  * ESC-Eval's: ``base`` (profile), ``res`` (category, in Chinese), ``source``,
    ``language`` (``english``/``chinese``), ``id``, plus ``base_biaozhu`` etc.
  * ours: ``id``, ``language`` (``en``/``zh``), ``profile``, ``category``, ``source``,
    optional ``annotations``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from roles.cards import CATEGORIES, LANGUAGES, CardError, RoleCard

_LANGUAGE_NAMES = {"en": "en", "english": "en", "zh": "zh", "chinese": "zh"}
_CATEGORY_NAMES = {
    "家庭生活": "family_life",
    "工作学习": "work_study",
    "社会与其他": "society_other",
    **{c: c for c in CATEGORIES},
}
_OUR_FIELDS = {"id", "language", "profile", "category", "source", "annotations"}
_ESC_FIELDS = {"base": "profile", "res": "category"}


def load_cards(path: str | Path, *, language: str | None = None) -> list[RoleCard]:
    """Load and validate every card in ``path``.

    Args:
        path: a ``.json`` list, a ``.jsonl`` file or a ``.yaml``/``.yml`` list.
        language: when given, every card must be in this language.

    Raises:
        CardError: naming the file, the card index and the field at fault.
    """
    path = Path(path)
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CardError(name, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CardError(name, f"not UTF-8 text (byte {exc.start})") from None
    records = _parse(name, text, path.suffix.lower())
    return _validate(name, records, language)


def builtin_cards(language: str | None = None) -> list[RoleCard]:
    """The project's own cards (written for esc-eval), optionally of one language."""
    folder = resources.files("roles") / "data" / "cards"
    cards: list[RoleCard] = []
    for lang in LANGUAGES if language is None else (language,):
        entry = folder / f"{lang}.yaml"
        cards += _validate(f"builtin:{lang}", _parse(str(entry), entry.read_text(encoding="utf-8"), ".yaml"), lang)
    return cards


def _parse(name: str, text: str, suffix: str) -> list[Any]:
    if not text.strip():
        raise CardError(name, "the file is empty")
    try:
        if suffix == ".jsonl":
            records = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise CardError(name, f"line {lineno}: not valid JSON: {exc.msg}") from None
            data: Any = records
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
            if isinstance(data, dict) and "cards" in data:
                data = data["cards"]
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise CardError(name, f"unknown card format '{suffix}' (use .json, .jsonl, .yaml)")
    except json.JSONDecodeError as exc:
        raise CardError(name, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except yaml.YAMLError as exc:
        raise CardError(name, f"not valid YAML: {exc}") from None
    if not isinstance(data, list):
        raise CardError(name, "expected a list of cards")
    if not data:
        raise CardError(name, "the file holds no cards")
    return data


def _validate(name: str, records: Iterable[Any], language: str | None) -> list[RoleCard]:
    if language is not None and language not in LANGUAGES:
        raise CardError(name, f"unknown language '{language}' (use one of {', '.join(LANGUAGES)})")
    cards = []
    for index, record in enumerate(records):
        cards.append(_card(name, index, record, language))
    return cards


def _card(name: str, index: int, record: Any, language: str | None) -> RoleCard:
    if not isinstance(record, dict):
        raise CardError(name, f"expected an object, got {type(record).__name__}", index=index)
    fields = {_ESC_FIELDS.get(k, k): v for k, v in record.items()}

    def text(field: str) -> str:
        if field not in fields:
            raise CardError(name, "missing", index=index, field=_source_name(record, field))
        value = fields[field]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and field == "id":
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise CardError(name, f"must be non-empty text, got {value!r:.60}", index=index, field=_source_name(record, field))
        return value

    profile = text("profile")
    lang = _LANGUAGE_NAMES.get(text("language").strip().lower())
    if lang is None:
        raise CardError(name, f"unknown language {fields['language']!r} (use en/english or zh/chinese)", index=index, field="language")
    if language is not None and lang != language:
        raise CardError(name, f"card is '{lang}' but the run requires '{language}'", index=index, field="language")
    category = _CATEGORY_NAMES.get(text("category").strip())
    if category is None:
        raise CardError(
            name, f"unknown category {fields['category']!r} (use one of {', '.join(_CATEGORY_NAMES)})",
            index=index, field=_source_name(record, "category"),
        )
    card_id = text("id") if "id" in fields else str(index)
    annotations = fields.get("annotations", {})
    if not isinstance(annotations, dict):
        raise CardError(name, "must be a mapping", index=index, field="annotations")
    extra = {k: v for k, v in record.items() if _ESC_FIELDS.get(k, k) not in _OUR_FIELDS}
    return RoleCard(card_id, lang, profile, category, text("source"), {**extra, **annotations})


def _source_name(record: dict[str, Any], field: str) -> str:
    """Name a field as the file spells it (ESC-Eval files say ``base``/``res``)."""
    for original, ours in _ESC_FIELDS.items():
        if ours == field and (original in record or "base" in record):
            return original
    return field
