"""The JSONL archive's set-wise checks (``archive._episodes``) against its line-by-line ones (``archive._line_by_line``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from esc_eval.roles.jsonl import read_jsonl
from esc_eval.runs.formats import archive
from esc_eval.runs.formats.archive import ArchiveError, read_jsonl_export
from esc_eval.testing.designed import DesignedEpisode, write_design


def _lines(tmp_path: Path) -> list[dict[str, Any]]:
    """A designed export made varied: seeker state objects (one empty), labels -1 and null, failed judge calls, human labels."""
    episodes = [DesignedEpisode(s, card, {"empathic": [card % 5, (card + 1) % 5], "overall": [-1 if card == 2 else 3]},
                                language="zh" if card > 3 else "en") for s in ("a", "b") for card in range(6)]
    text = write_design(tmp_path / "design.jsonl", episodes).read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    for i, line in enumerate(lines[1:]):
        line["turns"].append({**line["turns"][0], "idx": 1, "role": "seeker", "text": "I feel low.",
                              "state": {"distress": i, "facts": [1, 2]} if i % 3 else {}})
        if i % 4 == 0:
            line["scores"][0] |= {"status": "failed", "label": None, "error": "HTTP 503"}
            line["annotations"] = [{"annotator": "ann", "dimension": "overall", "label": 2, "at": 3.0}]
    return lines


def _records(lines: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The episode lines as ``read_jsonl`` gives them (parsed afresh: the set-wise checks encode objects in place)."""
    text = "\n".join(json.dumps(line) for line in lines)
    return [(n, r) for n, r in read_jsonl(text, None, ValueError) if archive.STORE_LINE not in r]


def test_set_wise_checks_give_the_rows_of_the_line_by_line_checks(tmp_path: Path) -> None:
    lines = _lines(tmp_path)
    fast = archive._episodes(_records(lines), 3)
    slow = archive._line_by_line(tmp_path / "design.jsonl", _records(lines), 3)
    assert fast is not None and fast == slow
    assert [list(rows.episode) for rows in fast] == [list(rows.episode) for rows in slow]   # the schema's column order too
    states = [turn.get("state") for rows in fast for turn in rows.turns]
    assert '{"distress": 1, "facts": [1, 2]}' in states and None in states                 # objects as the store's writer encodes them
    assert any(rows.owned["annotations"] for rows in fast) and any(s["label"] is None for rows in fast for s in rows.scores)


@pytest.mark.parametrize(("change", "message"), [
    ({3: {"scores": "bad"}, 5: {"format_version": 9}}, "line 4: field 'scores': expected a list, got str"),
    ({3: {"key": "dup"}, 4: {"key": "dup"}, 6: {"scores__0__label": 7}}, "line 5: episode 'dup' is on line 4 already"),
    ({2: {"scores__1__label": 7}, 4: {"key": ""}}, r"line 3: field 'scores[1].label': expected a label 0..4, -1 or null, got 7"),
    ({5: {"turns__1__state": [1]}}, "line 6: field 'turns[1].state': expected an object, got list"),
    ({7: {"store": {}}}, "line 8: field 'store': a second store line"),
], ids=["row-before-version", "duplicate-before-row", "first-of-two-rows", "object-field", "second-store-line"])
def test_the_first_bad_line_is_named_whichever_check_finds_it(tmp_path: Path, change: dict[int, dict[str, Any]],
                                                              message: str) -> None:
    """An error on an earlier line wins over a later one, as when every line was checked in turn."""
    lines = _lines(tmp_path)
    for index, fields in change.items():
        for name, value in fields.items():
            table, _, rest = name.partition("__")
            if rest:
                row, _, column = rest.partition("__")
                lines[index][table][int(row)][column] = value
            else:
                lines[index][name] = value
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    with pytest.raises(ArchiveError) as caught:
        read_jsonl_export(path)
    assert str(caught.value) == f"{path}: {message}"
