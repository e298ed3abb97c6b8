"""The text side of personas: a card's facts, cue patterns and sentence templates.

``card_facts`` cuts a card's problem into the facts disclosure pace counts; ``cue_pattern``
finds empathy/advice cues in a supporter reply and role-break cues in a seeker reply;
``fill`` puts values into a persona's sentence templates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from esc_eval.roles.cards import RoleCard

_PROBLEM = re.compile(r"^\s*(problem|问题)\s*[:：]\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*")
_CLAUSE_END = re.compile(r"(?<=[,，;；])\s*")
_TRAILING = " ,，;；.。、"


@functools.lru_cache(maxsize=4096)
def card_facts(card: RoleCard) -> tuple[str, ...]:
    """The facts of a card's problem, in order: the sentences of its ``Problem:``/``问题：`` part.

    Cards in ESC-Eval's shape (``Age: ...\\nProblem: ...``) give the problem's sentences;
    other profiles give all their sentences. A problem of one long sentence is cut at
    commas into clauses of a useful length. Disclosure pace counts these facts. Cached:
    personas ask on every seeker turn.
    """
    lines = card.profile.splitlines()
    text = card.profile
    for i, line in enumerate(lines):
        if _PROBLEM.match(line):
            text = " ".join([_PROBLEM.sub("", line), *lines[i + 1:]])
            break
    text = " ".join(text.split()) if card.language != "zh" else "".join(text.split())
    facts = _pieces(_SENTENCE_END, text)
    if len(facts) < 2:
        facts = _merge_short(_pieces(_CLAUSE_END, text), 8 if card.language == "zh" else 30)
    return tuple(f.rstrip(_TRAILING) for f in facts) or (text,)


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p.strip(_TRAILING)]


def _merge_short(pieces: list[str], minimum: int) -> list[str]:
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) < minimum:
            merged[-1] = merged[-1] + ("" if merged[-1][-1:] in "，；、" else " ") + piece
        else:
            merged.append(piece)
    if len(merged) > 1 and len(merged[-1]) < minimum:
        last = merged.pop()
        merged[-1] = merged[-1] + ("" if merged[-1][-1:] in "，；" else " ") + last
    return merged


def cue_pattern(cues: Iterable[str], *, whole_words: bool = False) -> re.Pattern[str]:
    """One pattern for ``cues`` (match it against lowercased text): an ASCII cue must start at a
    word boundary ("try" matches "trying", not "country"); with ``whole_words`` it must end at one
    too ("as an ai" does not match "as an aide")."""
    parts = []
    for cue in sorted({c.lower() for c in cues}, key=len, reverse=True):
        part = re.escape(cue)
        if cue.isascii() and cue[:1].isalnum():
            part = rf"(?<![a-z0-9]){part}"
        if whole_words and cue[-1:].isascii() and cue[-1:].isalnum():
            part = rf"{part}(?![a-z0-9])"
        parts.append(part)
    return re.compile("|".join(parts))


def fill(template: str, **values: str) -> str:
    """``{key}`` slots filled by plain replacement: persona text may hold other braces."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template

