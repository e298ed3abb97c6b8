"""One ESConv-shaped dialogue record: both speaker spellings, the item key cards build uses, one-line refusals."""

from __future__ import annotations

from typing import Any

import pytest

from esc_eval.roles.esconv import DialogRecord, dialog_record


class Refused(ValueError):
    pass


def read(record: Any, number: int = 4) -> DialogRecord:
    return dialog_record(record, "ESConv", number, "people.json: record 4", Refused)


def test_a_record_keeps_its_utterances_and_is_named_like_cards_build_names_items() -> None:
    found = read({"id": 17, "dialog": [{"speaker": "supporter", "content": " Hello. "}, {"speaker": "seeker", "content": "hi"},
                                        {"speaker": "seeker", "content": "   "}, {"speaker": "seeker", "content": "it's work"}]})
    assert found == DialogRecord("ESConv:17", (("supporter", "Hello."), ("seeker", "hi"), ("seeker", "it's work")))
    assert read({"dialog": [{"role": "seeker", "content": "hi"}]}, number=9) == DialogRecord("ESConv:9", (("seeker", "hi"),))


@pytest.mark.parametrize(("record", "message"), [
    (["not", "an", "object"], "record 4: expected an object {\"dialog\": [...]}, got list"),
    ({"id": 1}, "record 4: field 'dialog' must be a non-empty list"),
    ({"dialog": []}, "record 4: field 'dialog' must be a non-empty list"),
    ({"dialog": [{"speaker": "seeker", "content": "a"}, {"speaker": "bot", "content": "b"}]}, "dialog turn 2: field 'speaker' must be"),
    ({"dialog": [{"role": "user", "content": "hi"}]}, "dialog turn 1: field 'role' must be seeker or supporter"),
    ({"dialog": [{"role": "seeker", "content": 3}]}, "dialog turn 1: field 'role' must be seeker or supporter and 'content' text"),
    ({"dialog": ["hi"]}, "dialog turn 1: field 'speaker'"),
])
def test_a_bad_record_is_refused_in_one_line_naming_record_and_field(record: Any, message: str) -> None:
    with pytest.raises(Refused) as caught:
        read(record)
    assert str(caught.value).startswith("people.json: record 4: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)
