"""``esc-eval seeker train``: examples are the run's seeker prompts with a loss on the seeker's line only; held-out
cards are never trained on; bad input exits 2 naming the file and field; on the embedded model, a tiny training
run writes an adapter that a ``[seeker]`` section serves."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.lora_training import encode_chat
from esc_eval.environments.behaviours import load_behaviour
from esc_eval.roles.loaders import builtin_cards
from esc_eval.roles.templates import load_protocol
from esc_eval.runs.training.dialogues import Dialogue
from esc_eval.runs.training.seeker import examples, split_by_card
from esc_eval.testing.cli import esc_eval

CARDS = builtin_cards("en")
OPENER = load_protocol("default").opener("en")
TRANSCRIPT = (("supporter", OPENER), ("seeker", "Hi. It's about my dad."), ("supporter", "What happened?"),
              ("seeker", "He stopped talking to me after I came out."), ("supporter", "That sounds painful."),
              ("seeker", "Yeah. I dread going home."))


class CharTokenizer:
    """A ChatML template over single characters: enough to check which tokens carry a loss."""

    def apply_chat_template(self, chat: list[dict[str, str]], add_generation_prompt: bool = False, tokenize: bool = False) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def decode(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids)


def test_each_seeker_turn_is_one_example_with_a_loss_on_that_turn_only() -> None:
    dialogue = Dialogue("d", CARDS[2], "escalating", TRANSCRIPT)
    [(_, found)] = examples([dialogue], load_protocol("default"), {"escalating": load_behaviour("escalating")[1]})
    assert [e.reply for e in found] == [text for role, text in TRANSCRIPT if role == "seeker"]
    for example in found:
        ids, labels = encode_chat(CharTokenizer(), example.messages, example.reply, 10_000)
        target = decode([i for i, label in zip(ids, labels) if label != -100])
        assert target == example.reply + "<|im_end|>", "only the seeker's own line (and its end token) is learned"
        assert decode(ids[:len(ids) - len(target)]) == CharTokenizer().apply_chat_template(example.messages, add_generation_prompt=True)
    last = found[-1].messages
    assert last[0]["role"] == "system" and CARDS[2].profile in last[0]["content"] and "distress" in last[0]["content"].lower()
    assert [m["role"] for m in last[1:]] == ["user", "assistant", "user", "assistant", "user"], "the seeker is the assistant"


def test_a_long_prompt_loses_its_beginning_not_the_target() -> None:
    ids, labels = encode_chat(CharTokenizer(), [{"role": "user", "content": "x" * 500}], "short reply", 40)
    assert len(ids) == 40 and decode([i for i, label in zip(ids, labels) if label != -100]) == "short reply<|im_end|>"


def test_held_out_cards_are_never_trained_on() -> None:
    dialogues = [Dialogue(f"{card.id}-{n}", card, "default", TRANSCRIPT) for card in CARDS for n in range(3)]
    train, held = split_by_card(dialogues, 0.34, 0)
    assert len({d.card.id for d in held}) == 5 and not {d.card.id for d in train} & {d.card.id for d in held}
    assert split_by_card(dialogues, 0.34, 0) == (train, held) and split_by_card(dialogues, 0.34, 1) != (train, held)


def dialogues_file(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": text} for role, text in pairs]


@pytest.mark.parametrize(("records", "cards", "expected"), [
    (None, None, "--dialogues: {dir}/d.jsonl: no such file"),
    ([{"id": 1, "card": "en-001", "dialog": turns(("supporter", "hi"), ("supporter", "hello?"))}], None,
     "{dir}/d.jsonl: line 1: no seeker turn to learn from"),
    ([{"id": 1, "card": "en-999", "dialog": turns(("seeker", "hi"))}], None, "{dir}/d.jsonl: line 1: field 'card': unknown card 'en-999'"),
    ([{"id": 1, "card": "en-001", "dialog": turns(("seeker", "hi"))}], "missing.yaml", "--cards: {dir}/missing.yaml: no such file"),
    ([{"id": 1, "card": "en-001", "persona": "nobody", "dialog": turns(("seeker", "hi"))}], None, "unknown persona 'nobody'"),
])
async def test_bad_input_exits_2_with_one_line_naming_it(tmp_path: Path, records: list[dict[str, Any]] | None, cards: str | None,
                                                       expected: str) -> None:
    path = dialogues_file(tmp_path / "d.jsonl", records) if records is not None else tmp_path / "d.jsonl"
    args = ["seeker", "train", "--dialogues", str(path), "--base", "embedded", "--out", str(tmp_path / "out")]
    result = await esc_eval(*args, *(["--cards", str(tmp_path / cards)] if cards else []))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and expected.format(dir=tmp_path) in result.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for bad input"


@pytest.mark.model
@pytest.mark.timeout(600)
async def test_tiny_training_on_the_embedded_model_gives_an_adapter_a_seeker_section_serves(tmp_path: Path) -> None:
    from esc_eval.agents.backends import BACKENDS, Shared
    from esc_eval.agents.backends.transformers_local import TransformersRole
    from esc_eval.agents.messages import SamplingParams
    from esc_eval.runs.config import parse_config

    records = [{"id": f"{card.id}", "card": card.id, "dialog": turns(*TRANSCRIPT[:4])} for card in CARDS[:3]]
    out = tmp_path / "out"
    result = await esc_eval("seeker", "train", "--dialogues", str(dialogues_file(tmp_path / "d.jsonl", records)), "--base", "embedded",
                            "--out", str(out), "--steps", "2", "--layers", "29", "--max-length", "256", "--holdout", "0.34",
                            "--eval-max-tokens", "4", "--eval-per-card", "1", env={"OMP_NUM_THREADS": "2"}, timeout=540)
    assert result.returncode == 0, result.stderr
    assert (out / "seeker" / "adapter_config.json").is_file() and (out / "seeker" / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "training.json").read_text())
    assert len(summary["losses"]) == 2 and summary["train_turns"] == 4 and summary["holdout_cards"]
    assert [row["seeker"] for row in summary["figures"]] == ["adapter", "base"]
    assert "held out: 2 seeker turns" in result.stdout

    section = tomllib.loads((out / "seeker.toml").read_text())["seeker"]
    config = parse_config({"seeker": section, "supporters": [{"name": "s", "backend": "transformers"}]}, "seeker.toml")
    backend = BACKENDS.get("transformers")(config.seeker, name="seeker", shared=(shared := Shared()))
    assert isinstance(backend, TransformersRole) and backend.default_model == "seeker"
    try:
        reply = await backend.complete([{"role": "system", "content": "You are a tired student."}, {"role": "user", "content": "Hi."}],
                                       SamplingParams(max_tokens=4, temperature=0.0))
    finally:
        await shared.aclose()  # closes the model every role of it shares
    assert reply.model == "seeker" and reply.text, "the seeker's requests name no model and get its adapter"
