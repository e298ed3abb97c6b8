"""Personal identifier and near-duplicate filters on texts of known answer."""

from __future__ import annotations

import pytest

from esc_eval.roles.filters import NearDuplicates, personal_identifiers, scrub, shingles


@pytest.mark.parametrize("text, kinds", [
    ("Write to her at ann.lee@example.org please", ["email"]),
    ("call him on (555) 123-4567 tonight", ["phone"]),
    ("电话13812345678，随时联系", ["phone"]),
    ("+44 20 7946 0958", ["phone"]),
    ("She lives at 221 Baker Street with her aunt", ["address"]),
    ("住在长安路12号", ["address"]),
    ("My name is Sarah and I am 30", ["name"]),
    ("我叫李小明，今年二十岁", ["name"]),
    ("see https://example.org/me", ["url"]),
])
def test_identifiers_are_found(text: str, kinds: list[str]) -> None:
    assert personal_identifiers(text) == kinds


@pytest.mark.parametrize("text", [
    "Age: 22\nGender: Female\nOccupation: Student\nProblem: She worked from 2019-2020 and owes 3,000 dollars.",
    "年龄：三十岁\n性别：男\n职业：司机\n问题：他每天工作12小时，觉得很累。",
    "He reads the name of every street on his 5 km walk.",
])
def test_ordinary_cards_are_clean(text: str) -> None:
    assert personal_identifiers(text) == []


def test_scrub_removes_each_identifier() -> None:
    text = scrub("Mail a@b.co or call 555 867 5309; my name is John.")
    assert personal_identifiers(text) == [] and text.count("[removed]") == 3


def test_near_duplicates_keep_the_first_and_let_different_texts_through() -> None:
    base = "Problem: She failed two exams this term and is afraid to tell her parents, who pay for her studies."
    other = "Problem: He lost his job at the factory and has not told his wife; the savings run out next month."
    seen = NearDuplicates(threshold=0.7)
    assert seen.seen("a", "Age: 22\n" + base) is None
    assert seen.seen("b", "Age: 23\n" + base) == "a"
    assert seen.seen("c", "Age: 22\n" + other) is None
    assert seen.seen("d", "age: 22\n" + other.upper()) == "c"  # case and spacing do not make a card new
    strict = NearDuplicates(threshold=1.0)
    assert strict.seen("a", base) is None and strict.seen("b", base + " Also she is tired.") is None
    assert len(shingles("年龄三十")) == 2
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicates(threshold=0)
