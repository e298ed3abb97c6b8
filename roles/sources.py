"""Read the raw datasets role cards are built from: one reader per published shape.

``SOURCE_READERS`` maps a shape name to ``reader(path) -> SourceBatch``; a plugin adds a
shape through the entry point group ``esc_eval.source_readers``. Built-in shapes:

* ``esconv``: an ESConv-style JSON list of dialogues (``situation``, ``emotion_type``,
  ``problem_type``, ``dialog`` turns with ``speaker`` ``seeker``/``supporter`` and ``content``);
* ``dialogues``: JSONL, one ``{"id", "dialog": [{"role", "content"}]}`` per line;
* ``posts``: JSONL, one question post ``{"id", "title", "text"}`` per line (PsyQA's shape).

A bad record (broken JSON line, empty dialogue, missing field) is a ``Problem`` naming the
file and the line or record, and the batch goes on without it: one broken line in a
thousand must not cost the other 999.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.roles.jsonl import json_error
from esc_eval.roles.registry import Registry


class SourceError(ValueError):
    """A source file cannot be read at all (missing, not UTF-8, not the shape asked for)."""


class BadRecord(ValueError):
    """One record cannot be read; it becomes a ``Problem`` and the file goes on."""


@dataclass(frozen=True)
class SourceItem:
    """One dialogue or post to extract a card from.

    Attributes:
        key: ``dataset:record id``, unique across a build (resume and reports use it).
        dataset: the card's ``source`` (the file's stem: ``ESConv``, ``PsyQA``...).
        text: the dialogue or post as the extraction prompt shows it.
        where: ``file: line N`` or ``file: record N``, for messages.
    """

    key: str
    dataset: str
    text: str
    where: str


@dataclass(frozen=True)
class Problem:
    """A record skipped while reading: where it is and why."""

    where: str
    reason: str


@dataclass
class SourceBatch:
    items: list[SourceItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


SourceReader = Callable[[Path], SourceBatch]
SOURCE_READERS: Registry[SourceReader] = Registry("source reader", "esc_eval.source_readers")


def read_source(path: str | Path, shape: str | None = None) -> SourceBatch:
    """Every item of ``path`` read as ``shape`` (detected from the file when ``None``).

    Raises:
        SourceError: the file cannot be read, or its shape is unknown.
    """
    path = Path(path)
    shape = shape or detect_shape(path)
    if shape not in SOURCE_READERS.names():
        raise SourceError(f"{path}: unknown source shape {shape!r} (known: {', '.join(SOURCE_READERS.names())})")
    return SOURCE_READERS.get(shape)(path)


def detect_shape(path: Path) -> str:
    """``esconv`` for a ``.json`` file; for JSONL, the shape of the first line that parses."""
    if path.suffix.lower() == ".json":
        return "esconv"
    if path.suffix.lower() != ".jsonl":
        raise SourceError(f"{path}: cannot tell the source shape from the suffix {path.suffix or '(none)'!r} (use .json or .jsonl, or --shape)")
    for line in _text(path).split("\n"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "dialog" in record:
            return "dialogues"
        if isinstance(record, dict) and ("title" in record or "text" in record):
            return "posts"
    raise SourceError(f"{path}: no line holds a dialogue ('dialog') or a post ('title'/'text')")


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _nonempty(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _render_turns(turns: Any, who: str, what: str) -> str:
    """``speaker: text`` lines; raises ``BadRecord`` when there is nothing to read."""
    if not isinstance(turns, list):
        raise BadRecord(f"'dialog' must be a list of turns, got {type(turns).__name__}")
    lines = []
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise BadRecord(f"turn {number}: expected an object, got {type(turn).__name__}")
        speaker, content = _nonempty(turn.get(who)), _nonempty(turn.get(what))
        if speaker is None:
            raise BadRecord(f"turn {number}: missing '{who}'")
        if content is not None:
            lines.append(f"{speaker}: {content}")
    if not lines:
        raise BadRecord("empty dialogue")
    return "\n".join(lines)


@SOURCE_READERS.register("esconv")
def read_esconv(path: Path) -> SourceBatch:
    """ESConv's JSON list: ``situation``, ``emotion_type``, ``problem_type``, ``dialog`` by seeker/supporter."""
    try:
        records = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: {json_error(exc)}") from None
    if not isinstance(records, list):
        raise SourceError(f"{path}: expected a JSON list of dialogues, got {type(records).__name__}")
    batch = SourceBatch()
    for number, record in enumerate(records, 1):
        where = f"{path}: record {number}"
        try:
            if not isinstance(record, dict):
                raise BadRecord(f"expected an object, got {type(record).__name__}")
            dialogue = _render_turns(record.get("dialog"), "speaker", "content")
        except BadRecord as exc:
            batch.problems.append(Problem(where, str(exc)))
            continue
        header = [f"{label}: {value}" for label, key in (("Situation", "situation"), ("Emotion", "emotion_type"),
                                                          ("Problem type", "problem_type"))
                  if (value := _nonempty(record.get(key)))]
        record_id = record.get("id", number)
        batch.items.append(SourceItem(f"{path.stem}:{record_id}", path.stem, "\n".join([*header, dialogue]), where))
    return batch


def _read_lines(path: Path, item: Callable[[dict[str, Any]], str]) -> SourceBatch:
    batch = SourceBatch()
    for number, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            batch.problems.append(Problem(where, json_error(exc, with_line=False)))
            continue
        try:
            if not isinstance(record, dict):
                raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
            if record.get("id") is None or isinstance(record["id"], (dict, list)):
                raise BadRecord("missing 'id'")
            text = item(record)
        except BadRecord as exc:
            batch.problems.append(Problem(where, str(exc)))
            continue
        batch.items.append(SourceItem(f"{path.stem}:{record['id']}", path.stem, text, where))
    return batch


@SOURCE_READERS.register("dialogues")
def read_dialogues(path: Path) -> SourceBatch:
    """JSONL dialogues: ``{"id", "dialog": [{"role", "content"}]}`` per line."""
    return _read_lines(path, lambda record: _render_turns(record.get("dialog"), "role", "content"))


@SOURCE_READERS.register("posts")
def read_posts(path: Path) -> SourceBatch:
    """JSONL question posts (PsyQA): ``{"id", "title", "text"}`` per line."""

    def post(record: dict[str, Any]) -> str:
        parts = [p for p in (_nonempty(record.get("title")), _nonempty(record.get("text"))) if p]
        if not parts:
            raise BadRecord("empty post (no 'title' or 'text')")
        return "\n".join(parts)

    return _read_lines(path, post)
