"""Small source datasets in the three shapes, and a fake extractor that answers them (tests of ``esc-eval cards build``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from esc_eval.testing.fake_server import default_responder

CARDS = {
    "MARK-exam": {"age": "22", "gender": "Female", "occupation": "Student",
                  "problem": "She failed two exams this term and is afraid to tell her parents, who pay for her studies.",
                  "category": "work_study", "quality": "high"},
    "MARK-exam-again": {"age": "23", "gender": "Female", "occupation": "Student",
                        "problem": "She failed two exams this term and is afraid to tell her parents, who pay for her studies.",
                        "category": "work_study", "quality": "high"},
    "MARK-phone": {"age": "35", "gender": "Male", "occupation": "Chef",
                   "problem": "His landlord keeps calling him at 555-867-5309 about late rent and he cannot sleep.",
                   "category": "society_other", "quality": "high"},
    "MARK-family": {"age": "41", "gender": "Male", "occupation": "Bus driver",
                    "problem": "He separated from his wife and misses his sons on the weekdays he does not see them.",
                    "category": "family_life", "quality": "high"},
    "MARK-retry": {"age": "Not mentioned", "gender": "Female", "occupation": "Nurse",
                   "problem": "Night shifts leave her exhausted and she snaps at colleagues, then feels ashamed.",
                   "category": "work_study", "quality": "high"},
    "MARK-thin": {"age": "Not mentioned", "gender": "Not mentioned", "occupation": "Not mentioned",
                  "problem": "Feels bad.", "category": "society_other", "quality": "low"},
    "MARK-lonely": {"age": "28", "gender": "Female", "occupation": "Designer",
                    "problem": "She moved to a new city for work and has not made a single friend in a year.",
                    "category": "society_other", "quality": "high"},
}


def responder(body: dict[str, Any]) -> str:
    """Cards by marker; ``MARK-babble`` never answers JSON, ``MARK-retry`` only once told why."""
    if body["model"] not in ("extractor", "translator"):  # the run over the built cards
        return default_responder(body)
    if body["model"] == "translator":
        return "年龄：二十多岁\n性别：女\n职业：学生\n问题：翻译的问题。"
    text = body["messages"][1]["content"]
    if "MARK-babble" in text:
        return "Sure, I can help with that person's story!"
    if "MARK-retry" in text and len(body["messages"]) == 2:
        return "Here is the card: {age: unknown}"
    marker = max((m for m in CARDS if m in text), key=len)
    return "```json\n" + json.dumps(CARDS[marker]) + "\n```"


def write_sources(folder: Path) -> list[Path]:
    """One file per shape, holding an empty dialogue, a broken line, an empty post, a duplicate and a phone number."""
    esconv = folder / "ESConv.json"

    def turns(marker: str) -> list[dict[str, str]]:
        return [{"speaker": "seeker", "content": f"I feel awful ({marker})."}, {"speaker": "supporter", "content": "I am here for you."}]

    esconv.write_text(json.dumps([
        {"situation": "failed exams", "emotion_type": "anxiety", "problem_type": "academic pressure", "dialog": turns("MARK-exam")},
        {"situation": "failed exams again", "emotion_type": "anxiety", "problem_type": "academic pressure", "dialog": turns("MARK-exam-again")},
        {"situation": "nothing", "emotion_type": "sadness", "problem_type": "none", "dialog": []},
        {"situation": "rent", "emotion_type": "anger", "problem_type": "housing", "dialog": turns("MARK-phone")},
    ]), encoding="utf-8")
    dialogues = folder / "ExTES.jsonl"

    def line(i: int, marker: str) -> str:
        return json.dumps({"id": i, "dialog": [{"role": "user", "content": f"Help ({marker})"}, {"role": "assistant", "content": "Tell me more."}]})

    dialogues.write_text("\n".join([line(1, "MARK-family"), '{"id": 2, "dialog": [', line(3, "MARK-babble"),
                                    line(4, "MARK-retry"), line(5, "MARK-thin")]) + "\n", encoding="utf-8")
    posts = folder / "PsyQA.jsonl"
    posts.write_text(json.dumps({"id": "p1", "title": "So alone", "text": "New city, no friends (MARK-lonely)."}) + "\n"
                     + json.dumps({"id": "p2", "title": "", "text": " "}) + "\n", encoding="utf-8")
    return [esconv, dialogues, posts]


def write_build_config(path: Path, url: str, *, translator: bool = True) -> Path:
    text = f'[build]\nlanguage = "en"\nconcurrency = 4\n\n[extractor]\nbase_url = "{url}"\nmodel = "extractor"\n'
    if translator:
        text += f'\n[translator]\nbase_url = "{url}"\nmodel = "translator"\n'
    path.write_text(text, encoding="utf-8")
    return path
