"""Seeker training dialogues in each accepted shape, tied to their cards; bad input names the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.lora_training import TrainingError
from esc_eval.roles.loaders import builtin_cards
from esc_eval.runs.formats.exchange import transcript_lines
from esc_eval.runs.training.dialogues import read_dialogues

CARDS = builtin_cards("en")[:3]
TRANSCRIPT = [("supporter", "Hi, what brings you here?"), ("seeker", "My mom is sick."), ("supporter", "I'm sorry."),
              ("seeker", "I'm so tired.")]


def write(path: Path, data: dict[str, Any] | list[Any]) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else "".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def test_esc_eval_result_file_keys_are_card_indexes(tmp_path: Path) -> None:
    found = read_dialogues(write(tmp_path / "result_x_en.json", {"1": transcript_lines(TRANSCRIPT)}), CARDS)
    assert [(d.card.id, d.persona, d.transcript) for d in found] == [(CARDS[1].id, "default", tuple(TRANSCRIPT))]


def test_jsonl_export_records_name_card_and_persona(tmp_path: Path) -> None:
    record = {"format_version": 2, "key": "a/guarded/en-003/s0/r0", "card_id": CARDS[2].id, "persona": "guarded",
              "turns": [{"role": r, "text": t, "ordinal": i} for i, (r, t) in enumerate(TRANSCRIPT)]}
    [found] = read_dialogues(write(tmp_path / "episodes.jsonl", [record]), CARDS)
    assert (found.key, found.card, found.persona, found.transcript) == (record["key"], CARDS[2], "guarded", tuple(TRANSCRIPT))


def test_esconv_dialogues_find_their_card_in_the_build_report(tmp_path: Path) -> None:
    cards = tmp_path / "cards.jsonl"
    cards.write_text("".join(json.dumps({"id": str(i), "language": "en", "category": "work_study", "source": "ESConv",
                                         "profile": c.profile}) + "\n" for i, c in enumerate(CARDS)), encoding="utf-8")
    (tmp_path / "build-report.json").write_text(json.dumps({"cards": [{"id": 0, "item": "esconv:17"}, {"id": 1, "item": "esconv:3"}]}))
    from esc_eval.roles.loaders import load_cards

    dialog = [{"speaker": r, "content": t} for r, t in TRANSCRIPT]
    found = read_dialogues(write(tmp_path / "esconv.json", [{"id": 3, "dialog": dialog}, {"id": 17, "dialog": dialog}]),
                           load_cards(cards), cards)
    assert [d.card.id for d in found] == ["1", "0"]
    lines = write(tmp_path / "mine.jsonl", [{"id": "x", "card": CARDS[0].id, "dialog": [{"role": r, "content": t} for r, t in TRANSCRIPT]}])
    assert read_dialogues(lines, CARDS)[0].card == CARDS[0]


@pytest.mark.parametrize(("name", "data", "message"), [
    ("r.json", {"0": ["AI assistant：hello", "AI assistant：still me"]}, "r.json: dialogue '0': no seeker turn"),
    ("r.json", {"7": transcript_lines(TRANSCRIPT)}, "dialogue '7': key must be the card's index"),
    ("d.jsonl", [{"id": 1, "card": "nope", "dialog": [{"role": "seeker", "content": "hi"}]}], "d.jsonl: line 1: field 'card': unknown card 'nope'"),
    ("d.jsonl", [{"id": 1, "dialog": [{"role": "seeker", "content": "hi"}]}], "field 'card' missing"),
    ("d.jsonl", [{"id": 1, "card": "en-001", "dialog": [{"role": "user", "content": "hi"}]}], "dialog turn 1: field 'role'"),
    ("e.jsonl", [{"turns": [{"role": "seeker", "text": "hi"}], "card_id": "zz"}], "e.jsonl: line 1: field 'card_id': unknown card 'zz'"),
    ("e.json", [{"id": 1, "card": "en-001", "dialog": [{"speaker": "supporter", "content": "hi"}]}], "e.json: record 1: no seeker turn"),
])
def test_bad_dialogues_name_file_record_and_field(tmp_path: Path, name: str, data: dict[str, Any] | list[Any], message: str) -> None:
    with pytest.raises(TrainingError, match=message.replace("(", r"\(")) as caught:
        read_dialogues(write(tmp_path / name, data), CARDS)
    assert str(tmp_path / name) in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"--dialogues: .*nothere.jsonl: no such file"):
        read_dialogues(tmp_path / "nothere.jsonl", CARDS)


def test_an_esc_eval_result_file_on_esc_eval_cards_trains_on_esc_roles_prompt(tmp_path: Path, shared: Path) -> None:
    from esc_eval.environments.behaviours import load_behaviour
    from esc_eval.roles.loaders import load_cards
    from esc_eval.roles.templates import load_protocol
    from esc_eval.runs.training.seeker import examples

    cards = load_cards(shared / "card_high_en.json")
    found = read_dialogues(write(tmp_path / "result_x_en.json", {"2": transcript_lines(TRANSCRIPT)}), cards, shared / "card_high_en.json")
    assert found[0].card == cards[2]
    protocol = load_protocol(shared / "esc_role_protocol.json")
    [(_, replayed)] = examples(found, protocol, {"default": load_behaviour("default")[1]})
    assert [e.messages[0]["content"] for e in replayed] == [protocol.seeker_prompt(cards[2])] * 2, "ESC-Role's own prompt"
    assert [e.reply for e in replayed] == ["My mom is sick.", "I'm so tired."]
