"""Read role cards from ESC-Eval JSON lists, JSONL or YAML, with one clear error per problem.

Two record shapes are accepted in every format:
  * ESC-Eval's: ``base`` (profile), ``res`` (category, in Chinese), ``source``,
    ``language`` (``english``/``chinese``), ``id``, plus ``base_biaozhu`` etc.
  * ours: ``id``, ``language`` (``en``/``zh``), ``profile``, ``category``, ``source``,
    optional ``annotations``.

A JSON or YAML file holds a list of records, or a mapping whose ``cards`` key holds
that list; a JSONL file holds one record per non-blank line. Fields the loader does
not know (ESC-Eval's ``base_biaozhu``, ...) are kept in ``RoleCard.annotations``.

``CARD_READERS`` maps a file suffix (without the dot) to a reader ``(name, text) -> records``;
a plugin adds a format through the entry point group ``esc_eval.card_readers`` (its reader
raises ``CardError`` naming the file for text it cannot parse).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from esc_eval.roles.cards import CATEGORIES, LANGUAGES, CardError, RoleCard
from esc_eval.roles.jsonl import json_error, read_jsonl
from esc_eval.roles.registry import Registry, RegistryError
from esc_eval.roles.yaml_errors import yaml_error

CARD_READERS: Registry[Any] = Registry("card reader", "esc_eval.card_readers")
"""File suffix without the dot -> ``reader(name, text)`` returning a list of records (or ``{cards: [...]}``)."""


@CARD_READERS.register("json")
def read_json(name: str, text: str) -> Any:
    """A JSON list of cards (ESC-Eval's card files), or ``{"cards": [...]}``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(name, json_error(exc)) from None


@CARD_READERS.register("jsonl")
def read_cards_jsonl(name: str, text: str) -> Any:
    """One card per non-blank line."""
    # objects=False: a record that is not an object is named by its card index, as in JSON and YAML files
    return [record for _, record in read_jsonl(text, None, lambda message: CardError(name, message), objects=False)]


@CARD_READERS.register("yaml")
def read_yaml(name: str, text: str) -> Any:
    """A YAML list of cards, or ``cards: [...]``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CardError(name, yaml_error(exc)) from None


CARD_READERS.register("yml", "A YAML list of cards, or ``cards: [...]``.")(read_yaml)

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
        language: when given, every card must be in this language (``"en"``/``"zh"``).

    Returns:
        The cards in file order; a card's index in this list is its ESC-Eval result key.

    Raises:
        CardError: naming the file, the card index and the field at fault.

    Examples:
        >>> cards = load_cards("roles/data/cards/en.yaml", language="en")  # the built-in cards, from the repository's root
        >>> cards[0].id, cards[0].language
        ('en-001', 'en')
        >>> cards = load_cards("../shared/esc-eval/card_high_en.json", language="en")  # doctest: +SKIP
    """
    path = Path(path)
    name = str(path)
    suffix = path.suffix.lower()
    if suffix[1:] not in CARD_READERS.names():
        known = ", ".join(f".{s}" for s in CARD_READERS.names())
        raise CardError(name, f"unknown card format '{suffix or '(no suffix)'}' (use {known})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CardError(name, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CardError(name, f"not UTF-8 text (byte {exc.start})") from None
    return _validate(name, _parse(name, text, suffix), language)


def builtin_cards(language: str | None = None) -> list[RoleCard]:
    """The project's own cards (written for esc-eval), optionally of one language."""
    if language is not None and language not in LANGUAGES:
        raise CardError("builtin", f"unknown language '{language}' (use one of {', '.join(LANGUAGES)})")
    folder = resources.files("esc_eval.roles") / "data" / "cards"
    cards: list[RoleCard] = []
    for lang in LANGUAGES if language is None else (language,):
        entry = folder / f"{lang}.yaml"
        name = f"builtin:cards/{lang}.yaml"
        cards += _validate(name, _parse(name, entry.read_text(encoding="utf-8"), ".yaml"), lang)
    return cards


def _parse(name: str, text: str, suffix: str) -> list[Any]:
    if not text.strip():
        raise CardError(name, "the file is empty")
    try:
        data = CARD_READERS.get(suffix[1:])(name, text)
    except RegistryError as exc:  # a plugin that cannot be imported
        raise CardError(name, str(exc)) from None
    except RecursionError:
        raise CardError(name, "nested too deeply to be a card file") from None
    if isinstance(data, dict) and "cards" in data:
        data = data["cards"]
    if not isinstance(data, list):
        raise CardError(name, f"expected a list of cards, got {type(data).__name__}")
    if not data:
        raise CardError(name, "the file holds no cards")
    return data


def _validate(name: str, records: Iterable[Any], language: str | None) -> list[RoleCard]:
    if language is not None and language not in LANGUAGES:
        raise CardError(name, f"unknown language '{language}' (use one of {', '.join(LANGUAGES)})")
    cards: list[RoleCard] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        card = _card(name, index, record, language)
        if card.id in seen:
            # Episode keys (and so resume) are built from the card id: it must be unique.
            raise CardError(name, f"duplicate id {card.id!r} (also card {seen[card.id] + 1})", index=index, field="id")
        seen[card.id] = index
        cards.append(card)
    return cards


def _card(name: str, index: int, record: Any, language: str | None) -> RoleCard:
    if not isinstance(record, dict):
        raise CardError(name, f"expected an object, got {type(record).__name__}", index=index)
    for original, ours in _ESC_FIELDS.items():
        if original in record and ours in record:
            raise CardError(name, f"has both '{original}' and '{ours}'; keep one", index=index, field=ours)
    fields = {_ESC_FIELDS.get(k, k): v for k, v in record.items()}

    def text(field: str) -> str:
        spelled = _source_name(record, field)
        if field not in fields:
            raise CardError(name, "missing", index=index, field=spelled)
        value = fields[field]
        if field == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise CardError(name, f"must be non-empty text, got {type(value).__name__} {shown}", index=index, field=spelled)
        return value

    profile = text("profile")
    raw_language = text("language")
    lang = _LANGUAGE_NAMES.get(raw_language.strip().lower())
    if lang is None:
        raise CardError(
            name, f"unknown language {raw_language[:40]!r} (use en/english or zh/chinese)", index=index, field="language"
        )
    if language is not None and lang != language:
        raise CardError(name, f"card is '{lang}' but '{language}' is required", index=index, field="language")
    raw_category = text("category")
    category = _CATEGORY_NAMES.get(raw_category.strip()) or _CATEGORY_NAMES.get(raw_category.strip().lower())
    if category is None:
        raise CardError(
            name,
            f"unknown category {raw_category[:40]!r} (use one of {', '.join(_CATEGORY_NAMES)})",
            index=index,
            field=_source_name(record, "category"),
        )
    card_id = text("id").strip() if "id" in fields else str(index)
    source = text("source")
    annotations = fields.get("annotations", {})
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict):
        raise CardError(name, f"must be a mapping, got {type(annotations).__name__}", index=index, field="annotations")
    extra = {k: v for k, v in record.items() if _ESC_FIELDS.get(k, k) not in _OUR_FIELDS}
    return RoleCard(card_id, lang, profile, category, source, {**extra, **annotations})


def _source_name(record: dict[str, Any], field: str) -> str:
    """Name a field as the file spells it (ESC-Eval files say ``base``/``res``)."""
    for original, ours in _ESC_FIELDS.items():
        if ours == field and ours not in record and (original in record or "base" in record or "res" in record):
            return original
    return field
