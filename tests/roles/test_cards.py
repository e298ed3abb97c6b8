"""The card model, its error type, and the built-in cards shipped in roles/data/cards."""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

import pytest

from esc_eval import roles
from esc_eval.roles import CATEGORIES, LANGUAGES, CardError, RoleCard, builtin_cards
from tests.reference import DATA as SHARED
from tests.reference import needs_reference

EN_FIELDS = ("Age: ", "Gender: ", "Occupation: ", "Problem: ")
ZH_FIELDS = ("年龄：", "性别：", "职业：", "问题：")


# --- CardError ---------------------------------------------------------------


def test_card_error_names_file_index_and_field():
    err = CardError("cards.json", "missing", index=3, field="base")
    assert str(err) == "cards.json: card 4: field 'base': missing"  # index 3 is the fourth card
    assert (err.path, err.index, err.field) == ("cards.json", 3, "base")
    assert isinstance(err, ValueError)


def test_card_error_without_index_or_field_names_only_the_file():
    err = CardError("x.yaml", "the file is empty")
    assert str(err) == "x.yaml: the file is empty"
    assert err.index is None and err.field is None


def test_card_error_counts_cards_from_one_like_lines():
    assert str(CardError("f.json", "bad", index=0)) == "f.json: card 1: bad"


# --- RoleCard ----------------------------------------------------------------


def test_role_card_is_frozen_and_compares_without_annotations():
    a = RoleCard("1", "en", "Age: 3", "family_life", "src", {"note": 1})
    b = RoleCard("1", "en", "Age: 3", "family_life", "src", {"note": 2})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.profile = "other"  # type: ignore[misc]


def test_role_card_default_annotations_are_not_shared():
    a = RoleCard("1", "en", "p", "family_life", "s")
    b = RoleCard("2", "en", "p", "family_life", "s")
    a.annotations["x"] = 1
    assert b.annotations == {}


def test_public_api():
    for name in ("RoleCard", "CardError", "load_cards", "builtin_cards", "SeekerProtocol",
                 "load_protocol", "ProtocolError", "builtin_protocols", "CATEGORIES", "LANGUAGES"):
        assert name in roles.__all__ and hasattr(roles, name)
    assert LANGUAGES == ("en", "zh")
    assert CATEGORIES == ("family_life", "work_study", "society_other")


# --- built-in cards ----------------------------------------------------------


def test_builtin_card_files_are_package_data():
    folder = resources.files("esc_eval.roles") / "data" / "cards"
    assert (folder / "en.yaml").is_file() and (folder / "zh.yaml").is_file()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_builtin_cards_per_language(lang):
    cards = builtin_cards(lang)
    assert len(cards) >= 12
    assert all(c.language == lang for c in cards)
    assert all(c.source == "esc-eval-builtin" for c in cards)
    for category in CATEGORIES:
        assert sum(c.category == category for c in cards) >= 4, category
    ids = [c.id for c in cards]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"{lang}-\d{{3}}", i) for i in ids), ids


def test_builtin_cards_all_languages_is_the_union():
    both = builtin_cards()
    assert both == builtin_cards("en") + builtin_cards("zh")
    assert len({c.id for c in both}) == len(both)


def test_builtin_cards_unknown_language_is_a_card_error():
    with pytest.raises(CardError, match="unknown language 'fr'"):
        builtin_cards("fr")


@pytest.mark.parametrize("lang, labels", [("en", EN_FIELDS), ("zh", ZH_FIELDS)])
def test_builtin_profiles_have_the_esc_eval_shape(lang, labels):
    for card in builtin_cards(lang):
        lines = card.profile.split("\n")
        assert len(lines) == 4, card.id
        for line, label in zip(lines, labels):
            assert line.startswith(label) and line[len(label):].strip(), (card.id, line)
        problem = lines[3][len(labels[3]):]
        ends = re.findall(r"[.!?](?:\s|$)", problem) if lang == "en" else re.findall(r"[。！？]", problem)
        assert 2 <= len(ends) <= 4, (card.id, problem)
        assert problem.rstrip()[-1] in ".!?。！？"


def test_builtin_zh_cards_are_written_in_chinese():
    for card in builtin_cards("zh"):
        problem = card.profile.split("\n")[3]
        han = sum("\u4e00" <= ch <= "\u9fff" for ch in problem)
        assert han / len(problem) > 0.7, card.id


def _shingles(text: str, lang: str) -> set[str]:
    if lang == "en":
        words = re.findall(r"[a-z']+", text.lower())
        return {" ".join(words[i:i + 7]) for i in range(len(words) - 6)}
    chars = re.sub(r"\s", "", text)
    return {chars[i:i + 10] for i in range(len(chars) - 9)}


@pytest.mark.parametrize("lang, file", [("en", "card_high_en.json"), ("zh", "card_high_zh.json")])
@needs_reference
def test_builtin_cards_are_in_our_own_words(lang, file):
    theirs: set[str] = set()
    for record in json.loads((SHARED / file).read_text(encoding="utf-8")):
        problem = record["base"].split("\n")[-1]
        theirs |= _shingles(problem, lang)
    for card in builtin_cards(lang):
        problem = card.profile.split("\n")[-1]
        assert not (_shingles(problem, lang) & theirs), card.id
