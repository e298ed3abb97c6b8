"""Token counts for a reply whose server did not report them, and the usage of a turn made of several requests.

A missing ``usage`` must never be stored as 0 tokens (it would make a paid call free), so the
counts are made here: with the model's own tokenizer when the request's model names a local
folder (or GGUF file) that ``transformers`` loads without the network, else estimated at about
4 characters a token (``CHARS_PER_TOKEN``) per message and marked ``estimated`` (``USAGE``).
Tokenizers are loaded once per model name and never downloaded; ``counts`` is thread-safe (the HTTP
backend calls it off the event loop).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from esc_eval.agents.messages import USAGE, ChatMessage, Completion

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""The estimate's rate: about 4 characters a token (English text with BPE tokenizers; more tokens for CJK)."""

_LOCK = threading.Lock()
"""One tokenizer use at a time: a fast tokenizer used from two threads at once can fail ("Already borrowed")."""


def estimate(text: str) -> int:
    """``ceil(len(text) / CHARS_PER_TOKEN)``: the token estimate of one message's text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def counts(model: str, messages: Sequence[ChatMessage], reply: str) -> tuple[int, int, str]:
    """``(prompt_tokens, completion_tokens, usage)`` of a request whose server reported none.

    Counted (``"counted"``) with ``model``'s tokenizer when ``model`` is a local folder or GGUF
    file; otherwise estimated per message (``"estimated"``).
    """
    with _LOCK:
        tokenizer = local_tokenizer(model)
        try:
            if tokenizer is not None:
                return _prompt_tokens(tokenizer, messages), len(tokenizer.encode(reply, add_special_tokens=False)), "counted"
        except Exception as exc:  # a tokenizer that cannot encode these messages: estimate rather than fail the request
            log.warning("counting tokens with %s failed (%s: %s); estimating", model, type(exc).__name__, exc)
    return sum(estimate(m["content"]) for m in messages), estimate(reply), "estimated"


def _prompt_tokens(tokenizer: Any, messages: Sequence[ChatMessage]) -> int:
    """The prompt as the model sees it: through its chat template when it has one, else the messages' texts."""
    if getattr(tokenizer, "chat_template", None):  # as ``transformers_local`` builds its prompts
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sum(len(tokenizer.encode(m["content"], add_special_tokens=False)) for m in messages)


@functools.cache
def local_tokenizer(model: str) -> Any | None:
    """The tokenizer of ``model`` when it names a local folder with tokenizer files or a ``.gguf`` file; ``None`` otherwise.

    Cached per name (a failure too, so it is tried once); ``local_files_only``: nothing is downloaded.
    """
    path = Path(model).expanduser() if model else None
    if path is None or not path.exists():
        return None
    try:
        from transformers import AutoTokenizer
        if path.is_file() and path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # no tokenizer there (or transformers missing): estimate instead
        log.warning("no tokenizer loads from %s (%s: %s); token counts of its replies without usage are estimated",
                    path, type(exc).__name__, exc)
        return None


def combined(replies: Sequence[Completion]) -> Completion:
    """The last reply, carrying the tokens and time of all (a role-break retry's discarded attempts are paid for too).

    Its ``usage`` is the least certain of theirs (estimated over counted over reported); it is
    ``cached`` only if every reply was.
    """
    last = replies[-1]
    if len(replies) == 1:
        return last
    return replace(last, prompt_tokens=sum(r.prompt_tokens for r in replies),
                   completion_tokens=sum(r.completion_tokens for r in replies),
                   latency=sum(r.latency for r in replies), retries=sum(r.retries for r in replies),
                   usage=max((r.usage for r in replies), key=USAGE.index), cached=all(r.cached for r in replies))
