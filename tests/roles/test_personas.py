"""Persona files: built-ins, extends/merge, errors that name the file and field, compiled directives."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.roles.cards import RoleCard
from esc_eval.roles.loaders import builtin_cards, load_cards
from esc_eval.roles.personas import (
    PHRASES,
    PersonaError,
    UnknownPersona,
    base_role_break,
    builtin_personas,
    card_facts,
    load_persona,
    persona_files,
    persona_from_file,
)

CARD_EN = builtin_cards("en")[0]
CARD_ZH = builtin_cards("zh")[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_at_least_six_builtins_each_in_both_languages() -> None:
    names = builtin_personas()
    assert "default" in names and "_base" not in names
    assert len(names) >= 7  # default + at least six behaviours
    for name in names:
        persona = load_persona(name)
        assert persona.name == name and persona.languages == ("en", "zh")
        assert persona.description and "\n" not in persona.description
        assert persona.source == f"builtin:personas/{name}.yaml"


def test_default_adds_nothing_so_esc_eval_requests_stay_unchanged() -> None:
    default = load_persona("default")
    for round_ in range(1, 8):
        assert default.render(CARD_EN, round=round_, distress=5) == ""
        assert default.render(CARD_ZH, round=round_, distress=5) == ""
    assert not default.ending.active


@pytest.mark.parametrize("name", [n for n in builtin_personas() if n != "default"])
def test_every_other_builtin_adds_directives_in_the_cards_language(name: str) -> None:
    persona = load_persona(name)
    en = persona.render(CARD_EN, round=1, distress=persona.emotion.start)
    zh = persona.render(CARD_ZH, round=1, distress=persona.emotion.start)
    assert en.startswith("\n\nHow you behave in this reply (round 1):\n- ")
    assert zh.startswith("\n\n这一轮的表现方式（第1轮）：\n- ")
    assert en != zh


def test_extends_merges_mappings_and_replaces_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path / "skeptic.yaml", """
description: Doubts that talking helps.
extends: guarded
resistance: high
emotion: {start: 8}
ending: {after_unhelpful: 2}
directives: {en: "Say once that you doubt talking helps.", zh: "说一次你不觉得聊天有用。"}
""")
    persona = persona_from_file(path)
    guarded = load_persona("guarded")
    assert persona.name == "skeptic" and persona.source == str(path)
    assert persona.resistance == "high" and persona.openness == guarded.openness == "low"
    assert persona.emotion.start == 8 and persona.emotion.on_empathy == guarded.emotion.on_empathy == -1
    assert persona.reveal == guarded.reveal
    assert persona.ending.after_unhelpful == 2 and persona.ending.marker == "[END]"
    assert persona.directives == {"en": "Say once that you doubt talking helps.", "zh": "说一次你不觉得聊天有用。"}
    text = persona.render(CARD_EN, round=1, distress=8)
    assert "doubt talking helps" in text and "resist advice" in text and "slow to trust" in text


def test_extends_a_sibling_file_first_then_a_builtin(tmp_path: Path) -> None:
    write(tmp_path / "terse.yaml", "description: my own terse\nstyle: {length: medium}\n")
    write(tmp_path / "child.yaml", "extends: terse\nopenness: high\n")
    child = load_persona("child", dirs=[tmp_path])
    assert child.style.length == "medium" and child.openness == "high"
    assert child.description == "extends terse"
    write(tmp_path / "path.yaml", "extends: ./terse.yaml\n")
    assert persona_from_file(tmp_path / "path.yaml").style.length == "medium"


def test_a_null_turns_an_inherited_setting_off(tmp_path: Path) -> None:
    path = write(tmp_path / "open.yaml", "extends: guarded\ndisclosure: null\nopenness: null\n")
    persona = persona_from_file(path)
    assert persona.reveal is None and persona.openness is None
    assert "Do not share" not in persona.render(CARD_EN, round=1, distress=6)


@pytest.mark.parametrize(("text", "field", "words"), [
    ("openness: very\n", "openness", "low, medium, high"),
    ("emotion: {start: 11}\n", "emotion.start", "between 0 and 10"),
    ("emotion: {warmth: 1}\n", "emotion.warmth", "unknown field"),
    ("ending: {after_unhelpful: 0}\n", "ending.after_unhelpful", "between 1"),
    ("ending: {when_satisfied: two}\n", "ending.when_satisfied", "whole number"),
    ("disclosure: {reveal: [2, 1]}\n", "disclosure.reveal[1]", "must not decrease"),
    ("disclosure: {reveal: []}\n", "disclosure.reveal", "non-empty list"),
    ("style: {length: huge}\n", "style.length", "short, medium, long"),
    ("directives: {fr: bonjour}\n", "directives.fr", "unknown field"),
    ("cues: {empathy: {en: sounds}}\n", "cues.empathy.en", "list of text"),
    ("mood: sad\n", "mood", "unknown field"),
    ("extends: no-such-persona\n", "extends", "unknown persona"),
    ("role_break: {retries: -1}\n", "role_break.retries", "between 0"),
    ("phrases: {en: {hello: hi}}\n", "phrases.en.hello", "unknown field"),
])
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(PersonaError) as caught:
        persona_from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: field '{field}': "), message
    assert words in message
    assert isinstance(caught.value, ValueError) and caught.value.field == field


def test_an_error_in_a_parent_names_the_parent_file(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", "resistance: stubborn\n")
    write(tmp_path / "child.yaml", "extends: parent\n")
    with pytest.raises(PersonaError, match=f"^{parent}: field 'resistance'"):
        persona_from_file(tmp_path / "child.yaml")


def test_extends_cycle_and_bad_yaml(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b\n")
    write(tmp_path / "b.yaml", "extends: a\n")
    with pytest.raises(PersonaError, match="field 'extends': extends itself"):
        persona_from_file(tmp_path / "a.yaml")
    write(tmp_path / "broken.yaml", "emotion: {start: 3\n")
    with pytest.raises(PersonaError, match="broken.yaml: not valid YAML"):
        persona_from_file(tmp_path / "broken.yaml")
    write(tmp_path / "list.yaml", "- 1\n")
    with pytest.raises(PersonaError, match="must be a mapping of fields"):
        persona_from_file(tmp_path / "list.yaml")


def test_unknown_names_and_missing_files() -> None:
    with pytest.raises(UnknownPersona, match="'nobody'.*built-ins: .*guarded"):
        load_persona("nobody")
    with pytest.raises(UnknownPersona, match="no such persona file"):
        load_persona("missing/persona.yaml")
    with pytest.raises(UnknownPersona):
        load_persona("_base")


def test_missing_language_is_reported_for_the_field(tmp_path: Path) -> None:
    persona = persona_from_file(write(tmp_path / "en_only.yaml", "directives: {en: Speak softly.}\n"))
    assert persona.languages == ("en",)
    persona.require(["en"])
    with pytest.raises(PersonaError, match="field 'directives.zh': no text for language 'zh'"):
        persona.require(["en", "zh"])


def test_a_file_name_that_cannot_name_episodes_needs_a_name_field(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="field 'name'"):
        persona_from_file(write(tmp_path / "my persona.yaml", "openness: low\n"))
    assert persona_from_file(write(tmp_path / "other file.yaml", "name: fine\n")).name == "fine"


def test_persona_files_skips_bases(tmp_path: Path) -> None:
    write(tmp_path / "_shared.yaml", "openness: low\n")
    write(tmp_path / "one.yaml", "extends: _shared.yaml\n")
    write(tmp_path / "notes.txt", "")
    assert [p.name for p in persona_files(tmp_path)] == ["one.yaml"]
    assert persona_from_file(tmp_path / "one.yaml").openness == "low"


def test_disclosure_pace_releases_facts_by_round() -> None:
    guarded = load_persona("guarded")  # reveal: [0, 0, 1, 2, all]
    facts = card_facts(CARD_EN)
    assert [guarded.allowed_facts(r, len(facts)) for r in range(1, 7)] == [0, 0, 1, 2, 3, 3]
    round3 = guarded.render(CARD_EN, round=3, distress=6)
    assert f'"{facts[0]}"' in round3.split("Keep the rest")[0] and f'"{facts[2]}"' in round3.split("Keep the rest")[1]
    assert "every part of your situation" in guarded.render(CARD_EN, round=5, distress=6)


def test_card_facts_of_our_cards_and_esc_eval_cards(shared: Path) -> None:
    assert len(card_facts(CARD_EN)) == 3 and card_facts(CARD_EN)[0].startswith("Her mother")
    assert len(card_facts(CARD_ZH)) == 3 and card_facts(CARD_ZH)[1] == "丈夫总是两头劝和，不愿表态"
    for card in load_cards(shared / "card_high_en.json")[:20] + load_cards(shared / "card_high_zh.json")[:20]:
        facts = card_facts(card)
        assert facts and all(f.strip() for f in facts)
        assert not any(f.startswith(("Age", "年龄")) for f in facts)
    plain = RoleCard("x", "en", "I lost my job. My rent is due. I feel ashamed.", "work_study", "t")
    assert card_facts(plain) == ("I lost my job", "My rent is due", "I feel ashamed")


def test_emotion_labels_and_leaving_text() -> None:
    persona = load_persona("leaves-when-unheard")
    assert persona.feeling(0, "en") == "calm and relieved" and persona.feeling(10, "en") == "overwhelmed"
    assert persona.feeling(6, "zh") == "难过"
    text = persona.render(CARD_EN, round=3, distress=8, leaving="unheard")
    assert "end your message with [END]" in text and "You need to feel heard" not in text
    assert "[END]" in persona.render(CARD_ZH, round=3, distress=8, leaving="advice_repeated")


def test_role_break_cues() -> None:
    rule = base_role_break(retries=3)
    assert rule.retries == 3
    assert rule.find("Honestly? As an AI language model, I can't feel that.") == "as an ai"
    assert rule.find("I'm an AI language model") is not None
    assert rule.find("作为一个AI，我没有感情") is not None
    assert rule.find("我是人工智能助手") == "我是人工智能"
    assert rule.find("I said it plainly: my aim is to get some sleep.") is None
    assert rule.find("I started as an aide at the clinic, as an airline clerk before that.") is None
    assert rule.find("I'm an AI.") == "i'm an ai"
    assert "Stay in character" in rule.reminder_for("en") and "保持角色" in rule.reminder_for("zh")


def test_every_phrase_exists_in_the_base() -> None:
    persona = load_persona("default")
    for lang in ("en", "zh"):
        assert set(persona.phrases[lang]) == set(PHRASES)
