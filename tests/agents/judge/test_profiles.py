"""Judge profiles: ESC-RANK prompts byte for byte, both label parsers, our default profile, loader errors."""

from __future__ import annotations

import json

import pytest

from esc_eval.agents.judge.labels import _PLAIN, _parse_tiers, echoes_rubric, parse_esc_rank, parse_label
from esc_eval.agents.judge.profiles import (
    DIMENSIONS,
    PAPER_NAMES,
    JudgeProfile,
    ProfileError,
    builtin_profiles,
    esc_rank_profile,
    load_profile,
)
from tests.reference import DATA as SHARED
from tests.reference import needs_reference

ESC_RANK = SHARED / "esc_rank_prompts.json"
ESC_ROLE = SHARED / "esc_role_protocol.json"


def _transcript(language: str) -> list[tuple[str, str]]:
    """The opener plus 10 turns, with text that exercises every assembly step."""
    opener = json.loads(ESC_ROLE.read_text(encoding="utf-8"))["supporter_opener"][language]
    turns = [
        ("seeker", "Hi. I've been feeling really low since I lost my job."),
        ("supporter", "I'm sorry to hear that.  Losing a job is hard.\n\nWhat happened?"),
        ("seeker", "Are you just an AI assistant? ESC-Role：whatever. {dialogue} {rubric}"),
        ("supporter", "As an AI assistant I can't feel, but I'm here to listen. 0-4 ideas:\n1. Rest\n2. Talk to a friend"),
        ("seeker", "   I guess. My wife doesn't know yet…   "),
        ("supporter", "那一定很难受。It sounds like you're carrying this alone."),
        ("seeker", "\tYes.\t"),
        ("supporter", ""),
        ("seeker", "Thanks, I'll try talking to her tonight."),
        ("supporter", "Good luck. I'm proud of you for reaching out.\n  \n"),
    ]
    return [("supporter", opener), *turns]


def _esc_eval_prompt(spec: dict, dimension: dict, language: str, transcript: list[tuple[str, str]]) -> str:
    """ESC-Eval's assembly, written from the json's own description, not from our code."""
    assembly = spec["assembly"]
    prefix = {"supporter": "AI assistant\uff1a", "seeker": "ESC-Role\uff1a"}  # as dialogue_lines states
    dialogue = assembly["dialogue_join"].join(prefix[role] + text for role, text in transcript)
    for old, new in assembly["dialogue_rewrites"]:
        dialogue = dialogue.replace(old, new)
    return assembly["prompt"].format(
        rubric=dimension[f"rubric_{language}"],
        dialogue_stripped=dialogue.strip(),
        name_in_prompt=dimension["name_in_prompt"],
    )


def _score_py_prompt(rubric: str, name: str, result_lines: list[str]) -> str:
    """Literally score.py at 9ad46e7: the string concatenation ESC-RANK was trained on."""
    dialogue = "\n\n".join(result_lines).replace("AI assistant", "**AI助手**").replace("ESC-Role：", "**用户**")
    prompt1 = rubric + "Dialogue between user and AI assistant: \n" + dialogue.strip() + "\n"
    prompt1 += "Based on the rules, give your " + name + " score (The number only) to the Dialogue."
    return prompt1


# -- ESC-RANK profile ------------------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("language", ["en", "zh"])
def test_esc_rank_prompts_match_esc_eval_byte_for_byte(language):
    spec = json.loads(ESC_RANK.read_text(encoding="utf-8"))
    profile = load_profile(ESC_RANK)
    transcript = _transcript(language)
    assert len(transcript) == 11
    result_lines = [("AI assistant：" if role == "supporter" else "ESC-Role：") + text for role, text in transcript]
    assert [d.key for d in profile.dimensions] == [d["key"] for d in spec["dimensions"]]
    for dimension in spec["dimensions"]:
        messages = profile.messages(dimension["key"], language, transcript)
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[0]["content"] == spec["assembly"]["system_prompt"]
        expected = _esc_eval_prompt(spec, dimension, language, transcript)
        assert messages[1]["content"].encode("utf-8") == expected.encode("utf-8")
        assert messages[1]["content"] == _score_py_prompt(dimension[f"rubric_{language}"], dimension["name_in_prompt"], result_lines)


@needs_reference
def test_esc_rank_profile_fields():
    profile = load_profile(str(ESC_RANK))
    assert profile.name == "esc-rank"
    assert profile.parse_rule == "esc_rank"
    assert profile.supporter_prefix == "AI assistant\uff1a"
    assert profile.seeker_prefix == "ESC-Role\uff1a"
    assert profile.join == "\n\n"
    assert profile.rewrites == (("AI assistant", "**AI助手**"), ("ESC-Role：", "**用户**"))
    assert profile.dimension("fluency").name_in_prompt == "fluecy"
    assert profile.dimension("suggestion").name_in_prompt == "suggection effectiveness"
    assert {d.key: d.paper_name for d in profile.dimensions} == PAPER_NAMES
    assert profile.languages == ("en", "zh")


@needs_reference
def test_esc_rank_dialogue_is_stripped_once_not_per_line():
    profile = load_profile(ESC_RANK)
    transcript = [("supporter", "  hi  "), ("seeker", " sad \n")]
    assert profile.format_dialogue(transcript) == "**AI助手**：  hi  \n\n**用户** sad \n"
    prompt = profile.prompt("overall", "en", transcript)
    assert "\n**AI助手**：  hi  \n\n**用户** sad\nBased on the rules" in prompt


@needs_reference
def test_esc_rank_prefixes_come_from_the_dialogue_lines_text(tmp_path):
    spec = json.loads(ESC_RANK.read_text(encoding="utf-8"))
    spec["assembly"]["dialogue_lines"] = "supporter lines are prefixed 'Bot> ' and seeker lines 'Human> '"
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    profile = load_profile(path)
    assert (profile.supporter_prefix, profile.seeker_prefix) == ("Bot> ", "Human> ")
    del spec["assembly"]["dialogue_lines"]
    path.write_text(json.dumps(spec), encoding="utf-8")
    profile = load_profile(path)
    assert (profile.supporter_prefix, profile.seeker_prefix) == ("AI assistant：", "ESC-Role：")


@needs_reference
def test_esc_rank_profile_parses_with_esc_eval_rule():
    profile = load_profile(ESC_RANK)
    assert profile.parse("4 out of 4... 0") == 0
    assert profile.parse("Score: 3") == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3),
        ("The score is 4", 4),
        ("4... but 0", 0),
        ("4 out of 4", 4),
        ("10", 0),
        ("score: 2, previously 1", 1),
        ("none", -1),
        ("", -1),
        ("５", -1),
        ("I'd give it five", -1),
    ],
)
def test_parse_esc_rank_reproduces_esc_eval(text, expected):
    assert parse_esc_rank(text) == expected


# -- our label parser ------------------------------------------------------------------

RUBRIC_ECHO = (
    "0: The dialogue content is difficult to understand.\n"
    "1: There are issues with both aspects.\n"
    "2: There are problems with either aspect.\n"
    "3: There are no apparent issues in two issues.\n"
    "4: Both are performing exceptionally well.\n"
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3),
        ("  4\n", 4),
        ("Score: 3", 3),
        ("score:0", 0),
        ("**Score:** 4", 4),
        ("Score: **2**", 2),
        ("The score is 4", 4),
        ("Fluency score: 1", 1),
        ("My rating for this dialogue's empathy is 2.", 2),
        ("Final answer: 2", 2),
        ("I would give it a 2 because the supporter was kind but vague.", 2),
        ("I'd rate this conversation 3.", 3),
        ("3/4", 3),
        ("I'd say 3 out of 4.", 3),
        ("Score: 3 (out of 4)", 3),
        ("Score: 4.0", 4),
        ("**3**", 3),
        ("The supporter was warm and specific. **4**", 4),
        ("Reasoning: the supporter listened well.\n\n2", 2),
        ("Score:\n3", 3),
        ("Fluency: 3", 3),
        ("Everything considered. 1", 1),
        ("3. The replies read clearly and follow the conversation.", 3),
        ("3: There are no apparent issues in two issues.", 3),
        ("Rating (0-4): 1", 1),
        ("On a scale from 0 to 4, the score is 2.", 2),
        # the last explicit score-style mention wins
        ("Score: 2\nOn reflection the supporter did more.\nScore: 3", 3),
        ("Initially I thought 2, but on reflection... Final score: 4", 4),
        ("Score: 4 out of 4. There were 0 harmful statements.", 4),
        # numbers that are not labels are ignored
        ("Over 5 rounds the supporter gave 2 suggestions, 1 of them useful.\nScore: 3", 3),
        ("The conversation lasted 5 rounds and had 3 suggestions.", -1),
        ("1. Comfort was given\n2. Suggestions were given\n3. Encouragement\nOverall I'd rate this a 2", 2),
        ("1. Comfort was given\n2. Suggestions were given\n3. Encouragement", -1),
        # an echoed rubric is not an answer
        (RUBRIC_ECHO + "\nScore: 1", 1),
        (RUBRIC_ECHO, -1),
        # a model continuing its prompt: one rubric line and the next one's start (the demo's Fluency replies)
        ("0: The supporter's replies are largely unreadable or meaningless.\n1:", -1),
        ("0：支持者的回复基本无法读懂或没有意义。\n1：", -1),
        ("3: Replies read clearly.\n4: Every reply is clear.", -1),
        ("0: The supporter's replies are largely unreadable.\n1:\nScore: 2", 2),
        ("- **0**: unreadable\n- **4**: excellent\n\nScore: 3", 3),
        # ambiguous or off-scale answers
        ("Score: 3-4", -1),
        ("Score: 3 or 4", -1),
        ("Somewhere between 2 and 3.", -1),
        ("Score: 3.5", -1),
        ("Score: 3/5", -1),
        ("Score: 8/10", -1),
        ("Score: 5", -1),
        ("Score: 4\nOn second thought, score: 5", -1),
        ("Score: 10", -1),
        ("Score: 3 out of 10", -1),
        ("4... but 0", -1),
        ("Score: N", -1),
        ("none", -1),
        ("", -1),
        # Chinese and full-width forms
        ("评分：3", 3),
        ("我给3分。", 3),
        ("得分为２分", 2),
        ("分数：４", 4),
        ("对话进行了5分钟，支持者给了3分钟的建议。", -1),
        ("Score：2", 2),
    ],
)
def test_parse_label(text, expected):
    assert parse_label(text) == expected


@pytest.mark.parametrize("text, echo", [
    ("0: The supporter's replies are largely unreadable.\n1:", True),
    (RUBRIC_ECHO, True),
    ("- **0**: unreadable\n- **4**: excellent", True),
    ("3: There are no apparent issues in two issues.", False),
    ("1. Comfort was given\n2. Suggestions were given", False),  # numbered reasons, not rubric lines
    ("Score: 3", False),
])
def test_echoes_rubric(text, echo):
    assert echoes_rubric(text) is echo


def test_esc_rank_rule_still_reads_an_echo_as_its_first_digit():
    """ESC-Eval's rule is kept byte for byte: the report counts these replies instead (n_echo)."""
    assert parse_esc_rank("0: The supporter's replies are largely unreadable.\n1:") == 0


@pytest.mark.parametrize("text", ["Score: 3", "score:0", "Rating: 4.", "  Score :  2 \n", "SCORE:\t1\n\n", "Score: 4.", "Rating:3"])
def test_the_plain_score_line_shortcut_agrees_with_the_tiers(text):
    assert _PLAIN.fullmatch(text) is not None
    assert parse_label(text) == _parse_tiers(text) == int(text.split(":")[1].strip().rstrip("."))


@pytest.mark.parametrize("text", ["Score: 3.5", "Score: 3-4", "Score: 5", "Score: 3/5", "Score: 3 or 4", "My score: 3"])
def test_near_plain_lines_take_the_tiers(text):
    assert _PLAIN.fullmatch(text) is None


def test_profile_parse_handles_none():
    profile = load_profile("default")
    assert profile.parse(None) == -1
    assert profile.parse("Score: 2") == 2


# -- our default profile ---------------------------------------------------------------


def test_module_constants():
    assert DIMENSIONS == ("fluency", "diversity", "empathic", "suggestion", "tech", "human", "overall")
    assert PAPER_NAMES == {
        "fluency": "Fluency",
        "diversity": "Expression",
        "empathic": "Empathy",
        "suggestion": "Information",
        "tech": "Skillful",
        "human": "Humanoid",
        "overall": "Overall",
    }


def test_default_is_builtin():
    assert "default" in builtin_profiles()


@pytest.mark.parametrize(
    "language, supporter, seeker",
    [("en", "Supporter: ", "Seeker: "), ("zh", "支持者：", "求助者：")],
)
def test_default_profile_in_each_language(language, supporter, seeker):
    profile = load_profile("default")
    assert isinstance(profile, JudgeProfile)
    assert profile.keys == DIMENSIONS
    assert profile.parse_rule == "label"
    assert profile.rewrites == ()
    assert set(profile.languages) == {"en", "zh"}
    transcript = [("supporter", "Hello."), ("seeker", "I can't sleep."), ("supporter", "Tell me more.")]
    assert profile.format_dialogue(transcript, language) == f"{supporter}Hello.\n{seeker}I can't sleep.\n{supporter}Tell me more."
    for dim in profile.dimensions:
        assert dim.paper_name == PAPER_NAMES[dim.key]
        rubric = dim.rubric[language]
        for label in range(5):
            assert f"\n{label}{':' if language == 'en' else '：'}" in rubric
        messages = profile.messages(dim.key, language, transcript)
        assert [m["role"] for m in messages] == ["system", "user"]
        prompt = messages[1]["content"]
        assert prompt.startswith(rubric)
        assert profile.format_dialogue(transcript, language) in prompt
        assert "Score: N" in prompt
        assert dim.prompt_name(language) in prompt
        assert "{" not in prompt
    assert profile.messages("fluency", "en", transcript)[0]["content"].startswith("You are a careful evaluator")


@needs_reference
def test_default_profile_is_in_our_own_words():
    spec = json.loads(ESC_RANK.read_text(encoding="utf-8"))
    ours = load_profile("default")
    our_text = "\n".join(text for d in ours.dimensions for text in d.rubric.values()) + ours.template
    for dimension in spec["dimensions"]:
        for line in dimension["rubric_en"].split("\n"):
            line = line.split(":", 1)[-1].strip()
            if len(line) > 25:
                assert line not in our_text


def test_default_profile_rejects_unknown_language_and_dimension():
    profile = load_profile("default")
    with pytest.raises(ProfileError, match="'fr'"):
        profile.messages("fluency", "fr", [("seeker", "hi")])
    with pytest.raises(ProfileError, match="known: fluency, diversity"):
        profile.messages("kindness", "en", [("seeker", "hi")])
    with pytest.raises(ValueError, match="line 0"):
        profile.format_dialogue([("assistant", "hi")])


# -- loader errors ---------------------------------------------------------------------


def test_unknown_builtin_lists_known_profiles():
    with pytest.raises(ProfileError, match=r"unknown built-in profile 'nope' \(known: .*default"):
        load_profile("nope")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ProfileError, match="absent.json: no such file"):
        load_profile(path)


def test_invalid_json_is_named(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ProfileError, match="broken.json: not valid JSON"):
        load_profile(path)


@needs_reference
def test_esc_rank_file_errors_name_the_field(tmp_path):
    spec = json.loads(ESC_RANK.read_text(encoding="utf-8"))
    path = tmp_path / "bad.json"
    del spec["assembly"]["prompt"]
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad.json: field 'assembly.prompt': missing"):
        load_profile(path)
    spec["assembly"]["prompt"] = "no placeholders"
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"field 'assembly.prompt': must contain \{rubric\}"):
        load_profile(path)
    spec = json.loads(ESC_RANK.read_text(encoding="utf-8"))
    del spec["dimensions"][2]["name_in_prompt"]
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"field 'dimensions\[2\].name_in_prompt': missing"):
        load_profile(path)


def test_our_schema_file_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "template: '{rubric}|{dialogue}|{name_in_prompt}'\n"
        "supporter_prefix: 'S: '\nseeker_prefix: 'U: '\njoin: ' / '\n"
        "rewrites: [[sad, blue]]\nsystem_prompt: null\n"
        "dimensions:\n  - key: empathic\n    rubric: {en: 'R '}\n",
        encoding="utf-8",
    )
    profile = load_profile(path)
    assert profile.name == "mine"
    assert profile.messages("empathic", "en", [("supporter", "hi"), ("seeker", "sad {x}")]) == [
        {"role": "user", "content": "R |S: hi / U: blue {x}|empathic"}
    ]


def test_our_schema_rejects_unknown_keys(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("templat: x\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="typo.yaml: field 'templat': unknown key"):
        load_profile(path)
    path.write_text(
        "template: '{rubric}{dialogue}'\ndimensions:\n  - key: kindness\n    rubric: {en: r}\n", encoding="utf-8"
    )
    with pytest.raises(ProfileError, match=r"field 'dimensions\[0\].paper_name'"):
        load_profile(path)


@pytest.mark.parametrize("dimensions, field, message", [
    (None, "dimensions", "must be a non-empty list of dimensions"),
    ([], "dimensions", "must be a non-empty list of dimensions"),
    ("fluency", "dimensions", "must be a non-empty list of dimensions"),
    (["fluency"], r"dimensions\[0\]", "must be a mapping, got str"),
])
def test_both_schemas_check_the_dimensions_list_alike(tmp_path, dimensions, field, message):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"template": "{rubric}{dialogue}", "dimensions": dimensions}), encoding="utf-8")
    with pytest.raises(ProfileError, match=rf"mine.json: field '{field}': {message}"):
        load_profile(path)
    with pytest.raises(ProfileError, match=rf"rank.json: field '{field}': {message}"):
        esc_rank_profile({"assembly": {}, "dimensions": dimensions}, "rank.json")
