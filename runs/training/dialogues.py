"""Read seeker training dialogues, each tied to the card its seeker played (``esc-eval seeker train --dialogues``).

Accepted shapes (detected from the file):

* ESC-Eval result file (``.json`` object keyed by the card's index in ``--cards``; each value a list of
  ``"AI assistant：..."`` / ``"ESC-Role：..."`` lines, as ``esc-eval export --esc-eval`` writes);
* esc-eval JSONL export (``episodes.jsonl`` of ``esc-eval export --jsonl``: ``card_id``, ``persona``, ``turns``);
* ESConv-style dialogues: a ``.json`` list of ``{"id", "dialog": [{"speaker", "content"}]}`` (ESConv) or
  ``.jsonl`` lines ``{"id", "dialog": [{"role", "content"}]}``; speakers ``seeker``/``supporter``. The card
  is the record's ``card`` field, or the card ``cards build`` made from it: the ``build-report.json``
  beside ``--cards`` maps the item ``FILESTEM:ID`` to the card id.

Every dialogue must name a card of ``--cards`` and hold at least one seeker turn; anything else is a
``TrainingError`` naming the file, the record and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc_eval.agents.lora_training import TrainingError
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.esconv import ROLES, dialog_record
from esc_eval.roles.jsonl import json_error, read_jsonl
from esc_eval.runs.formats.archive import STORE_LINE
from esc_eval.runs.formats.exchange import parse_lines


@dataclass(frozen=True)
class Dialogue:
    """One training dialogue: where it came from, its card, the persona that played it, its turns."""

    key: str
    card: RoleCard
    persona: str
    transcript: tuple[tuple[str, str], ...]


def read_dialogues(path: Path, cards: Sequence[RoleCard], cards_path: Path | None = None) -> list[Dialogue]:
    """The dialogues of ``path`` with their cards; raises ``TrainingError`` naming file, record and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TrainingError(f"--dialogues: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"--dialogues: {path}: cannot read: {exc}") from None
    by_id = {card.id: card for card in cards}
    built = _built_from(cards_path)
    if path.suffix.lower() == ".jsonl":
        found = [_jsonl_record(path, number, record, by_id, built)
                 for number, record in read_jsonl(text, str(path), TrainingError) if STORE_LINE not in record]  # an export's store line
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}: {json_error(exc)}") from None
        if isinstance(data, dict):
            found = [_result_entry(path, key, lines, cards) for key, lines in data.items()]
        elif isinstance(data, list):
            found = [_dialog_record(path, "record", n, record, by_id, built) for n, record in enumerate(data, 1)]
        else:
            raise TrainingError(f"{path}: expected an ESC-Eval result object or a list of ESConv-style dialogues, "
                                f"got {type(data).__name__}")
    if not found:
        raise TrainingError(f"{path}: no dialogues")
    return found


def _checked(where: str, transcript: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if not any(role == "seeker" and text.strip() for role, text in transcript):
        raise TrainingError(f"{where}: no seeker turn to learn from")
    return tuple(transcript)


def _result_entry(path: Path, key: str, lines: Any, cards: Sequence[RoleCard]) -> Dialogue:
    where = f"{path}: dialogue {key!r}"
    if not key.isdigit() or int(key) >= len(cards):
        raise TrainingError(f"{where}: key must be the card's index in --cards (0..{len(cards) - 1})")
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise TrainingError(f"{where}: expected a list of 'AI assistant：'/'ESC-Role：' lines")
    try:
        transcript = parse_lines(lines)
    except ValueError as exc:
        raise TrainingError(f"{where}: {exc}") from None
    return Dialogue(f"{path.stem}:{key}", cards[int(key)], "default", _checked(where, transcript))


def _jsonl_record(path: Path, number: int, record: dict[str, Any], by_id: Mapping[str, RoleCard],
                  built: Mapping[str, str]) -> Dialogue:
    where = f"{path}: line {number}"
    if "turns" not in record:
        return _dialog_record(path, "line", number, record, by_id, built)
    turns = record["turns"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("text"), str)
                                              for t in turns):
        raise TrainingError(f"{where}: field 'turns' must be a list of {{role: seeker|supporter, text}} (esc-eval export --jsonl)")
    card_id = str(record.get("card_id", ""))
    card = by_id.get(card_id)
    if card is None:
        raise TrainingError(f"{where}: field 'card_id': unknown card {card_id!r} (not in --cards)")
    transcript = [(t["role"], t["text"]) for t in turns]
    return Dialogue(str(record.get("key") or f"{path.stem}:{number}"), card, str(record.get("persona") or "default"),
                    _checked(where, transcript))


def _dialog_record(path: Path, unit: str, number: int, record: Any, by_id: Mapping[str, RoleCard],
                   built: Mapping[str, str]) -> Dialogue:
    """An ESConv-shaped ``record`` (the ``number``-th ``unit``: record or line) with the card it names or was built into."""
    where = f"{path}: {unit} {number}"
    read = dialog_record(record, path.stem, number, where, TrainingError)
    card_id = record.get("card")
    if card_id is None:
        card_id = built.get(read.item)
        if card_id is None:
            raise TrainingError(f"{where}: field 'card' missing, and no build-report.json beside --cards maps item {read.item!r} to a card")
    card = by_id.get(str(card_id))
    if card is None:
        raise TrainingError(f"{where}: field 'card': unknown card {str(card_id)!r} (not in --cards)")
    return Dialogue(read.item, card, str(record.get("persona") or "default"), _checked(where, list(read.transcript)))


def _built_from(cards_path: Path | None) -> dict[str, str]:
    """Source item key -> card id, from the ``build-report.json`` that ``cards build`` wrote beside the cards."""
    if cards_path is None:
        return {}
    try:
        data = json.loads((Path(cards_path).parent / "build-report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("cards") if isinstance(data, dict) else None
    return {str(c["item"]): str(c["id"]) for c in entries or [] if isinstance(c, dict) and "item" in c and "id" in c}


__all__ = ["Dialogue", "read_dialogues"]
