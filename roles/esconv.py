"""One ESConv-shaped dialogue record, read the same way by every command that takes people's dialogues.

ESConv (and our JSONL dialogues) hold ``{"id", "dialog": [{"speaker"|"role": "seeker"|"supporter", "content"}]}``
per dialogue. ``seeker eval --reference`` compares seekers with such dialogues and ``seeker train --dialogues``
learns from them; both read a record here, so both accept the same shapes, name a source item the same way
``cards build`` does (``FILESTEM:ID``) and refuse a bad record with the same words. It sits in ``roles`` (the
bottom layer) so every package may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = ("seeker", "supporter")
SPEAKER_FIELDS = ("speaker", "role")
"""ESConv's ``.json`` names a turn's speaker ``speaker``; JSONL dialogues (and chat exports) call it ``role``."""


@dataclass(frozen=True)
class DialogRecord:
    """A record's source item key (``FILESTEM:ID``, ID its ``id`` or 1-based number) and its non-empty utterances.

    Utterances stay as written (one speaker may say several in a row); text is stripped.
    """

    item: str
    transcript: tuple[tuple[str, str], ...]


def dialog_record(record: Any, stem: str, number: int, where: str, error: Callable[[str], Exception]) -> DialogRecord:
    """Read one record of a dialogues file.

    Args:
        record: the parsed JSON value.
        stem: the file's stem, the first half of the item key.
        number: the record's 1-based position (list index or JSONL line), its ID when it has no ``id``.
        where: what starts every message, e.g. ``"--reference: people.json: record 3"``.
        error: makes the exception raised from the message, e.g. ``TrainingError``.

    Raises:
        Whatever ``error`` returns, naming the record and the field, when the record is not an object, its
        ``dialog`` is not a non-empty list, or a turn's speaker is not seeker/supporter or its content not text.
    """
    if not isinstance(record, dict):
        raise error(f"{where}: expected an object {{\"dialog\": [...]}}, got {type(record).__name__}")
    turns = record.get("dialog")
    if not isinstance(turns, list) or not turns:
        raise error(f"{where}: field 'dialog' must be a non-empty list of {{speaker, content}}")
    transcript = []
    for n, turn in enumerate(turns, 1):
        named = [f for f in SPEAKER_FIELDS if isinstance(turn, dict) and f in turn] or ["speaker"]
        role = turn.get(named[0]) if isinstance(turn, dict) else None
        content = turn.get("content") if isinstance(turn, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise error(f"{where}: dialog turn {n}: field '{named[0]}' must be seeker or supporter and 'content' text")
        if content.strip():
            transcript.append((str(role), content.strip()))
    return DialogRecord(f"{stem}:{record.get('id', number)}", tuple(transcript))


__all__ = ["ROLES", "DialogRecord", "dialog_record"]
