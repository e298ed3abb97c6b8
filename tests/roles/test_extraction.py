"""The extraction reply contract and the builder's prompt file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.roles.extraction import (
    REPLY_KEYS,
    PromptError,
    card_text,
    load_prompts,
    parse_reply,
)

GOOD = {"age": "22", "gender": "Female", "occupation": "Student", "problem": "Failed  her\nexams.",
        "category": "work_study", "quality": "high"}


def test_a_good_reply_plain_or_fenced_becomes_a_card_in_each_language() -> None:
    card = parse_reply(json.dumps(GOOD))
    assert parse_reply("```json\n" + json.dumps(GOOD) + "\n```") == card
    prompts = load_prompts()
    assert card_text(card, prompts.languages["en"]) == "Age: 22\nGender: Female\nOccupation: Student\nProblem: Failed her exams."
    assert card_text(card, prompts.languages["zh"]).split("\n")[0] == "年龄：22"
    assert "{language_name}" in prompts.system and "{text}" in prompts.user and "{error}" in prompts.retry


@pytest.mark.parametrize("reply, reason", [
    ("Sure! The seeker is sad.", "not JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "quality"} | {"name": "Ann"}), "keys differ: missing quality; unexpected name"),
    (json.dumps(GOOD | {"category": "health"}), "'category' must be one of family_life"),
    (json.dumps(GOOD | {"quality": "great"}), "'quality' must be one of low, middle, high"),
    (json.dumps(GOOD | {"age": ""}), "'age' must be non-empty text"),
])
def test_a_bad_reply_says_why(reply: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
        parse_reply(reply)


def test_a_replacement_prompt_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text("system: hi\nuser: '{text}'\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"prompts\.yaml: missing key 'retry'"):
        load_prompts(path)
    good = load_prompts().text
    path.write_text(good.replace("Answer with the JSON object only.", 'Answer like {"age": "30"}.'), encoding="utf-8")
    with pytest.raises(PromptError, match=r"key 'user': unknown or malformed placeholder .*literal braces doubled"):
        load_prompts(path)
    path.write_text(good.replace("Answer with the JSON object only.", 'Answer like {{"age": "30"}}.'), encoding="utf-8")
    assert 'like {"age": "30"}' in load_prompts(path).user.format(text="t")
    assert len(REPLY_KEYS) == 6
