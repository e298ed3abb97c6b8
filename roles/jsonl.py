"""Read JSONL text one record at a time, with errors that name the file and the line.

Card files, transcript exports and label files are all JSONL; this is their one reader,
so a broken line is reported the same way whichever command reads it. It sits in
``roles`` (the bottom layer) so that every package may use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any


def read_jsonl(text: str, source: str | None, error: Callable[[str], Exception], *,
               objects: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of ``text``, numbered from 1.

    Args:
        text: the file's contents.
        source: the file's name, which starts every message (``"labels.jsonl: line 3: ..."``);
            ``None`` when ``error`` adds it itself (as ``CardError`` does).
        error: called with the message to make the exception raised, e.g. ``TrainingError``.
        objects: when true, a line must hold a JSON object, not a list, string or number.

    Raises:
        Whatever ``error`` returns, at the first line that is not valid JSON (or not an object).
    """
    prefix = "" if source is None else f"{source}: "
    # "\n" only: str.splitlines() also splits at U+2028, U+0085, ..., which JSON strings may hold raw
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{prefix}line {number}: {json_error(exc, with_line=False)}") from None
        if objects and not isinstance(value, dict):
            raise error(f"{prefix}line {number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def json_error(exc: json.JSONDecodeError, *, with_line: bool = True) -> str:
    """``exc`` in words, with 1-based positions: ``not valid JSON: Expecting value (line 2, column 5)``.

    The position goes in parentheses because some of json's messages already end in
    a preposition ("Unterminated string starting at").
    """
    where = f"line {exc.lineno}, column {exc.colno}" if with_line else f"column {exc.colno}"
    return f"not valid JSON: {exc.msg} ({where})"
