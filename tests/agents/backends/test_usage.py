"""Token counts of replies without ``usage``: a local tokenizer when the model names one, else ~4 characters a token;
and the usage of a turn made of several requests (role-break retries)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from esc_eval.agents.backends.usage import combined, counts, estimate, local_tokenizer
from esc_eval.agents.messages import ChatMessage, Completion

MESSAGES: list[ChatMessage] = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there friend"}]
TEMPLATE = "{% for m in messages %}<{{ m.role }}> {{ m.content }} {% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


def word_tokenizer(folder: Path, *, chat_template: str | None = None) -> Path:
    """A tokenizer folder whose tokens are whitespace-separated words (any word: one token), as ``save_pretrained`` writes it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return folder


def test_the_estimate_is_a_quarter_of_the_characters_rounded_up() -> None:
    assert [estimate(text) for text in ("", "a", "abcd", "abcde", "x" * 400)] == [0, 1, 1, 2, 100]


def test_a_remote_model_name_is_estimated_per_message() -> None:
    # "be kind" 7 chars -> 2, "hello there friend" 18 -> 5; the reply "fine thanks" 11 -> 3
    assert counts("gpt-4o-mini", MESSAGES, "fine thanks") == (7, 3, "estimated")
    assert local_tokenizer("gpt-4o-mini") is None and local_tokenizer("") is None


def test_a_local_tokenizer_folder_counts_the_tokens(tmp_path: Path) -> None:
    folder = word_tokenizer(tmp_path / "words")
    # no chat template: the messages' texts, 2 + 3 words; the reply 4 words
    assert counts(str(folder), MESSAGES, "fine thanks, and you?") == (5, 4, "counted")


def test_a_chat_template_is_counted_as_the_model_sees_the_prompt(tmp_path: Path) -> None:
    folder = word_tokenizer(tmp_path / "templated", chat_template=TEMPLATE)
    # "<system> be kind <user> hello there friend <assistant>": 8 words
    assert counts(str(folder), MESSAGES, "fine") == (8, 1, "counted")


def test_a_folder_without_a_tokenizer_is_estimated_and_tried_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "no-tokenizer"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, "esc_eval.agents.backends.usage"):
        assert counts(str(empty), MESSAGES, "fine thanks") == (7, 3, "estimated")
        assert counts(str(empty), MESSAGES, "ok") == (7, 1, "estimated")
    assert len([r for r in caplog.records if "no tokenizer loads" in r.getMessage()]) == 1


def reply(text: str, prompt: int, completion: int, usage: str = "reported", *, cached: bool = False) -> Completion:
    return Completion(text, prompt, completion, 0.5, "m", usage=usage, cached=cached)


def test_a_turn_of_several_requests_carries_all_their_tokens() -> None:
    one = reply("kept", 10, 2)
    assert combined([one]) is one
    turn = combined([reply("As an AI...", 10, 4), reply("kept", 12, 2)])
    assert (turn.text, turn.prompt_tokens, turn.completion_tokens, turn.latency, turn.usage) == ("kept", 22, 6, 1.0, "reported")
    assert combined([reply("a", 1, 1, "counted"), reply("b", 1, 1)]).usage == "counted"
    assert combined([reply("a", 1, 1, "estimated"), reply("b", 1, 1, "counted")]).usage == "estimated"


def test_a_turn_is_cached_only_if_every_request_was() -> None:
    assert combined([reply("a", 1, 1, cached=True), reply("b", 1, 1, cached=True)]).cached
    assert not combined([reply("a", 1, 1, cached=True), reply("b", 1, 1)]).cached


@pytest.mark.model
@pytest.mark.slow
def test_the_embedded_gguf_counts_as_its_converted_folder_does() -> None:
    """A GGUF file's own tokenizer (read from the file, nothing downloaded) and its chat template."""
    from esc_eval.agents.backends.embedded import embedded_gguf, embedded_model_dir

    gguf, folder = counts(str(embedded_gguf()), MESSAGES, "fine thanks"), counts(str(embedded_model_dir()), MESSAGES, "fine thanks")
    assert gguf == folder and gguf[2] == "counted"
    assert gguf[0] > 7  # the template's role markers on top of the texts' words
