"""Seeker protocols: ESC-Eval's file reproduced exactly, our built-in default, and every error path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from esc_eval.roles import ProtocolError, RoleCard, SeekerProtocol, builtin_protocols, load_cards, load_protocol
from esc_eval.roles.templates import CARD_SLOT
from tests.reference import DATA as SHARED
from tests.reference import needs_reference

ESC_PROTOCOL = SHARED / "esc_role_protocol.json"


@pytest.fixture(scope="module")
def esc_json() -> dict:
    return json.loads(ESC_PROTOCOL.read_text(encoding="utf-8"))


def card(profile: str = "Age: 30\nProblem: Sad.", language: str = "en") -> RoleCard:
    return RoleCard("c1", language, profile, "family_life", "test")


def write_protocol(tmp_path: Path, data, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    text = json.dumps(data, ensure_ascii=False) if name.endswith(".json") else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def valid(**overrides) -> dict:
    data = {
        "seeker_system_prompt": {"en": "Play: {card}", "zh": "扮演：{card}"},
        "supporter_opener": {"en": "Hi", "zh": "你好"},
        "supporter_system_prompt": {"en": "Be kind.", "zh": "请友善。"},
        "supporter_sees_opener": False,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- ESC-Eval's protocol file ------------------------------------------------


@pytest.mark.parametrize("lang, cards_file", [("en", "card_high_en.json"), ("zh", "card_high_zh.json")])
@needs_reference
def test_esc_eval_protocol_reproduces_the_seeker_prompt_exactly(esc_json, lang, cards_file):
    protocol = load_protocol(ESC_PROTOCOL)
    template = esc_json["seeker_system_prompt"][lang]
    for c in load_cards(SHARED / cards_file, language=lang):
        assert protocol.seeker_prompt(c) == template.replace("{card}", c.profile)


@pytest.mark.parametrize("lang", ["en", "zh"])
@needs_reference
def test_esc_eval_protocol_opener_and_supporter_prompt(esc_json, lang):
    protocol = load_protocol(ESC_PROTOCOL)
    assert protocol.opener(lang) == esc_json["supporter_opener"][lang]
    assert protocol.supporter_prompt(lang) == "You are a helpful assistant!"
    assert protocol.supporter_sees_opener is False
    assert protocol.name == str(ESC_PROTOCOL)


@needs_reference
def test_esc_eval_protocol_loads_from_a_string_path():
    assert load_protocol(str(ESC_PROTOCOL)).opener("en").startswith("Hello, I'm your personal assistant.")


@needs_reference
def test_esc_eval_first_english_prompt_literally():
    c = load_cards(SHARED / "test_en.json")[0]
    prompt = load_protocol(ESC_PROTOCOL).seeker_prompt(c)
    assert prompt.startswith("I hope you can role-play as a person with worries and communicate with an AI assistant. "
                             "Here is your character card:'Age: Not mentioned\nGender: Female\n")
    assert f"{c.profile}\n' Please simulate" in prompt


# --- the built-in default ----------------------------------------------------


def test_builtin_protocols_lists_default():
    assert "default" in builtin_protocols()


def test_default_protocol_loads():
    protocol = load_protocol("default")
    assert isinstance(protocol, SeekerProtocol)
    assert protocol.name == "default"
    assert protocol.supporter_sees_opener is False
    for lang in ("en", "zh"):
        assert protocol.seeker_system_prompt[lang].count(CARD_SLOT) == 1
        assert protocol.opener(lang).strip()
        assert protocol.supporter_prompt(lang).strip()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_default_protocol_embeds_the_card_verbatim(lang):
    c = card("年龄：20\n问题：{0} {card}" if lang == "zh" else "Age: 20\nProblem: {0} {card}", lang)
    prompt = load_protocol("default").seeker_prompt(c)
    assert c.profile in prompt
    assert CARD_SLOT not in prompt.replace(c.profile, "")


def test_default_protocol_says_what_the_brief_requires():
    protocol = load_protocol("default")
    en = protocol.seeker_system_prompt["en"].lower()
    for phrase in ("listener", "never mention being an ai", "a little at a time", "short"):
        assert phrase in en, phrase
    zh = protocol.seeker_system_prompt["zh"]
    for phrase in ("扮演", "不要提到自己是AI", "一点一点", "简短"):
        assert phrase in zh, phrase
    assert "caring" in protocol.supporter_prompt("en") and "倾听" in protocol.supporter_prompt("zh")


@needs_reference
def test_default_protocol_is_in_our_own_words(esc_json):
    protocol = load_protocol("default")

    def pieces(text: str, lang: str) -> set[str]:
        if lang == "en":
            words = re.findall(r"[a-z']+", text.lower())
            return {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}
        chars = re.sub(r"\W", "", text)
        return {chars[i:i + 6] for i in range(len(chars) - 5)}

    for lang in ("en", "zh"):
        for ours, theirs in ((protocol.seeker_system_prompt, esc_json["seeker_system_prompt"]),
                             (protocol.supporter_opener, esc_json["supporter_opener"])):
            assert not pieces(ours[lang], lang) & pieces(theirs[lang], lang), lang
        assert protocol.supporter_prompt(lang) != "You are a helpful assistant!"


# --- rendering ---------------------------------------------------------------


@pytest.mark.parametrize("profile", ["{card}", "{0}", "{}", "{{card}}", "{profile}", "%s", "\\1 \\g<0>", "}{"])
@needs_reference
def test_braces_and_specials_in_card_are_inserted_verbatim(profile):
    protocol = load_protocol(ESC_PROTOCOL)
    template = protocol.seeker_system_prompt["en"]
    prompt = protocol.seeker_prompt(card(profile))
    assert prompt == template.replace("{card}", profile)
    assert prompt.count(profile) >= 1


def test_every_slot_is_filled(tmp_path):
    protocol = load_protocol(write_protocol(tmp_path, valid(seeker_system_prompt={"en": "{card} / {card}"})))
    assert protocol.seeker_prompt(card("P")) == "P / P"


def test_other_braces_in_template_are_left_alone(tmp_path):
    protocol = load_protocol(write_protocol(tmp_path, valid(seeker_system_prompt={"en": "{name} {0} {card} {{x}}"})))
    assert protocol.seeker_prompt(card("P")) == "{name} {0} P {{x}}"


def test_single_string_applies_to_every_language(tmp_path):
    protocol = load_protocol(write_protocol(tmp_path, valid(seeker_system_prompt="S {card}", supporter_opener="O",
                                                            supporter_system_prompt="P")))
    assert protocol.seeker_prompt(card("x", "zh")) == "S x"
    assert protocol.opener("en") == protocol.opener("zh") == "O"


def test_language_missing_from_protocol_is_a_protocol_error(tmp_path):
    data = valid(seeker_system_prompt={"en": "{card}"}, supporter_opener={"en": "Hi"},
                 supporter_system_prompt={"en": "Be kind."})
    protocol = load_protocol(write_protocol(tmp_path, data))
    with pytest.raises(ProtocolError, match="no text for language 'zh'"):
        protocol.seeker_prompt(card("x", "zh"))
    with pytest.raises(ProtocolError, match="'zh'"):
        protocol.opener("zh")


def test_sees_opener_true_is_kept(tmp_path):
    assert load_protocol(write_protocol(tmp_path, valid(supporter_sees_opener=True))).supporter_sees_opener is True


def test_json_protocol_file(tmp_path):
    protocol = load_protocol(write_protocol(tmp_path, valid(), "p.json"))
    assert protocol.seeker_prompt(card("Z", "zh")) == "扮演：Z"


def test_supporter_prompt_from_notes_when_field_absent(tmp_path):
    data = valid(supporter_system_prompt=None, protocol="wrappers insert a default system message 'Be nice.' here")
    assert load_protocol(write_protocol(tmp_path, data)).supporter_prompt("zh") == "Be nice."


# --- errors ------------------------------------------------------------------


def test_unknown_name_lists_builtins():
    with pytest.raises(ProtocolError) as info:
        load_protocol("no-such-protocol")
    message = str(info.value)
    assert "no-such-protocol" in message
    for name in builtin_protocols():
        assert name in message


def test_missing_path_is_a_protocol_error(tmp_path):
    with pytest.raises(ProtocolError, match="unknown protocol"):
        load_protocol(tmp_path / "missing.yaml")


@pytest.mark.parametrize("template", [{"en": "no slot here", "zh": "扮演：{card}"}, {"en": "{Card}"}, "{ card }"])
def test_template_without_card_slot_is_rejected(tmp_path, template):
    path = write_protocol(tmp_path, valid(seeker_system_prompt=template))
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert str(path) in str(info.value) and "seeker_system_prompt" in str(info.value) and "{card}" in str(info.value)


@pytest.mark.parametrize("field", ["seeker_system_prompt", "supporter_opener"])
@pytest.mark.parametrize("value", [None, {}, 3, ["x"], {"en": ""}, {"en": 5}, {"fr": "{card}"}])
def test_bad_per_language_field(tmp_path, field, value):
    path = write_protocol(tmp_path, valid(**{field: value}) if value is not None else {
        k: v for k, v in valid().items() if k != field})
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_missing_supporter_prompt_without_notes(tmp_path):
    path = write_protocol(tmp_path, valid(supporter_system_prompt=None))
    with pytest.raises(ProtocolError, match="missing field 'supporter_system_prompt'"):
        load_protocol(path)


def test_opener_must_cover_every_seeker_language(tmp_path):
    path = write_protocol(tmp_path, valid(supporter_opener={"en": "Hi"}))
    with pytest.raises(ProtocolError, match="supporter_opener.*zh"):
        load_protocol(path)


@pytest.mark.parametrize("value", ["no", 0, "false", None])
def test_sees_opener_must_be_boolean(tmp_path, value):
    data = valid()
    data["supporter_sees_opener"] = value
    with pytest.raises(ProtocolError, match="supporter_sees_opener"):
        load_protocol(write_protocol(tmp_path, data))


@pytest.mark.parametrize("name, text", [("p.json", "{not json"), ("p.yaml", "a: [unclosed\n"),
                                        ("p.yaml", "- a list\n"), ("p.yaml", ""), ("p.json", "[]")])
def test_unparsable_or_non_mapping(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert str(path) in str(info.value)


def test_non_utf8_protocol(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"seeker_system_prompt: caf\xe9 {card}\n")
    with pytest.raises(ProtocolError, match="cannot read"):
        load_protocol(path)


def test_directory_named_like_a_builtin_does_not_shadow_it(tmp_path, monkeypatch):
    (tmp_path / "default").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_protocol("default").name == "default"
