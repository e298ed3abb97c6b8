"""Card extraction as data: the builder's prompts (a replaceable YAML file) and the reply contract.

The model is asked for one JSON object with exactly ``REPLY_KEYS``; ``parse_reply`` says
precisely why a reply is not such an object, because that reason goes back to the model once
and then into the build report. ``card_text`` lays a reply out as ESC-Eval's ``base``
(``Age: ...\\nGender: ...``), in the card's language.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from esc_eval.roles.cards import CATEGORIES, LANGUAGES
from esc_eval.roles.yaml_errors import yaml_error

REPLY_KEYS = ("age", "gender", "occupation", "problem", "category", "quality")
QUALITIES = ("low", "middle", "high")
"""Worst to best: ``--min-quality middle`` keeps middle and high."""
PROMPT_KEYS = ("system", "user", "retry", "translate_system", "translate_user", "languages")
PLACEHOLDERS = {"system": ("language_name", "not_mentioned"), "user": ("text",), "retry": ("error",),
                "translate_system": ("language_name", "labels"), "translate_user": ("card",)}
"""What each prompt may fill in; checked when the file is read, not at the first item."""


class PromptError(ValueError):
    """The prompts file is unusable; the message names the file and the key."""


class ReplyError(ValueError):
    """A model's reply is not the card object asked for; the message says why."""


@dataclass(frozen=True)
class Language:
    name: str
    not_mentioned: str
    labels: tuple[str, str, str, str]
    separator: str


@dataclass(frozen=True)
class BuilderPrompts:
    """The texts the builder sends; ``{placeholders}`` are filled per item."""

    system: str
    user: str
    retry: str
    translate_system: str
    translate_user: str
    languages: dict[str, Language]
    text: str
    """The file as read: a build store remembers it, so a resumed build uses the same prompts."""


@dataclass(frozen=True)
class Extracted:
    """A reply that keeps the contract."""

    age: str
    gender: str
    occupation: str
    problem: str
    category: str
    quality: str


def load_prompts(path: str | Path | None = None) -> BuilderPrompts:
    """The prompts in ``path``, or the built-in ``roles/data/builder/extract.yaml``."""
    name = str(path) if path else "builtin:builder/extract.yaml"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else \
            (resources.files("esc_eval.roles") / "data" / "builder" / "extract.yaml").read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise PromptError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PromptError(f"{name}: {yaml_error(exc)}") from None
    except UnicodeDecodeError:
        raise PromptError(f"{name}: not UTF-8 text") from None
    if not isinstance(raw, dict):
        raise PromptError(f"{name}: expected a mapping of prompts")
    for key in PROMPT_KEYS:
        if key not in raw:
            raise PromptError(f"{name}: missing key '{key}'")
        if key != "languages" and not isinstance(raw[key], str):
            raise PromptError(f"{name}: key '{key}' must be text")
    for key, fields in PLACEHOLDERS.items():
        try:
            raw[key].format(**{field: "" for field in fields})
        except (KeyError, IndexError, ValueError) as exc:
            # a literal brace (a JSON example) must be doubled: {{"age": ...}}
            raise PromptError(f"{name}: key '{key}': unknown or malformed placeholder ({exc}); "
                              f"it may use {', '.join('{' + f + '}' for f in fields) or 'none'}, and literal braces doubled") from None
    languages = {}
    for lang in LANGUAGES:
        entry = raw["languages"].get(lang) if isinstance(raw["languages"], dict) else None
        labels = entry.get("labels") if isinstance(entry, dict) else None
        if not (isinstance(entry, dict) and {"name", "not_mentioned", "separator"} <= entry.keys() and isinstance(labels, list | tuple)
                and len(labels) == 4 and all(isinstance(x, str) for x in labels)):
            raise PromptError(f"{name}: key 'languages.{lang}' needs name, not_mentioned, labels (four) and separator")
        languages[lang] = Language(str(entry["name"]), str(entry["not_mentioned"]), (labels[0], labels[1], labels[2], labels[3]),
                                   str(entry["separator"]))
    return BuilderPrompts(raw["system"], raw["user"], raw["retry"], raw["translate_system"], raw["translate_user"], languages, text)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_reply(text: str) -> Extracted:
    """The reply as a card, or ``ReplyError`` saying what is wrong (sent back to the model once).

    A JSON object in a Markdown code fence is accepted: many chat models wrap JSON so.
    """
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        value: Any = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ReplyError(f"not JSON ({exc.msg}, at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ReplyError(f"expected a JSON object, got {type(value).__name__}")
    missing = [k for k in REPLY_KEYS if k not in value]
    extra = [k for k in value if k not in REPLY_KEYS]
    if missing or extra:
        raise ReplyError("keys differ: " + "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "", f"unexpected {', '.join(extra)}" if extra else "") if part))
    for key in REPLY_KEYS:
        if not isinstance(value[key], (str, int)) or isinstance(value[key], bool) or not str(value[key]).strip():
            raise ReplyError(f"'{key}' must be non-empty text, got {value[key]!r:.40}")
    fields = {k: str(value[k]).strip() for k in REPLY_KEYS}
    if fields["category"] not in CATEGORIES:
        raise ReplyError(f"'category' must be one of {', '.join(CATEGORIES)}, got {fields['category']!r:.40}")
    if fields["quality"] not in QUALITIES:
        raise ReplyError(f"'quality' must be one of {', '.join(QUALITIES)}, got {fields['quality']!r:.40}")
    return Extracted(**fields)


def card_text(card: Extracted, language: Language) -> str:
    """ESC-Eval's ``base`` layout: four labelled lines."""
    values = (card.age, card.gender, card.occupation, card.problem)
    return "\n".join(f"{label}{language.separator}{' '.join(value.split())}" for label, value in zip(language.labels, values))
