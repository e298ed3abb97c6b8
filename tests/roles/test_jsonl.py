"""roles.jsonl.read_jsonl: the one JSONL reader behind card, transcript and label files."""

from __future__ import annotations

import pytest

from esc_eval.roles import load_cards
from esc_eval.roles.cards import CardError
from esc_eval.roles.jsonl import read_jsonl


class LineError(ValueError):
    pass


def test_values_with_their_line_numbers_skipping_blank_lines():
    text = '{"a": 1}\n\n   \n{"b": 2}\r\n[3]\n'
    assert list(read_jsonl(text, "x.jsonl", LineError, objects=False)) == [(1, {"a": 1}), (4, {"b": 2}), (5, [3])]


def test_a_string_may_hold_unicode_line_separators():
    text = '{"t": "one\u2028two\u0085three"}\n{"t": "four"}'
    assert [n for n, _ in read_jsonl(text, "x.jsonl", LineError)] == [1, 2]


def test_bad_json_names_file_line_and_column_in_the_callers_error():
    with pytest.raises(LineError) as info:
        list(read_jsonl('{"a": 1}\n\n{oops\n', "labels.jsonl", LineError))
    assert str(info.value) == "labels.jsonl: line 3: not valid JSON: Expecting property name enclosed in double quotes (column 2)"


def test_lines_before_the_bad_one_are_yielded_first():
    records = read_jsonl('{"a": 1}\nnope\n', "x.jsonl", LineError)
    assert next(records) == (1, {"a": 1})
    with pytest.raises(LineError, match="line 2"):
        next(records)


@pytest.mark.parametrize("line, kind", [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")])
def test_a_line_must_hold_an_object_by_default(line, kind):
    with pytest.raises(LineError) as info:
        list(read_jsonl('{"a": 1}\n' + line, "x.jsonl", LineError))
    assert str(info.value) == f"x.jsonl: line 2: expected a JSON object, got {kind}"
    assert list(read_jsonl(line, "x.jsonl", LineError, objects=False))[0][0] == 1


def test_an_error_that_names_the_file_itself():
    with pytest.raises(CardError) as info:
        list(read_jsonl("{}\n{", None, lambda message: CardError("cards.jsonl", message)))
    assert str(info.value).startswith("cards.jsonl: line 2: not valid JSON: ") and info.value.path == "cards.jsonl"


def test_json_errors_read_as_one_sentence_with_one_based_positions(tmp_path):
    """json's "Unterminated string starting at" once printed as "... starting at at line 1 column 2"."""
    path = tmp_path / "cards.json"
    path.write_text('[{"base": "never closed', encoding="utf-8")
    with pytest.raises(CardError) as info:
        load_cards(path)
    assert str(info.value) == f"{path}: not valid JSON: Unterminated string starting at (line 1, column 11)"
    assert "at at" not in str(info.value)
