"""A deterministic in-process backend for tests and dry runs: replies come from a function."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from esc_eval.agents.backends.base import BackendError, BackendStats
from esc_eval.agents.messages import ChatMessage, Completion, SamplingParams

Script = Callable[[Sequence[ChatMessage], SamplingParams, str], str]
"""``script(messages, params, model) -> reply``; raise ``BackendError`` to inject a fault."""


def echo_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    """Reply with a line that names the model and how many messages it saw."""
    return f"[{model}] reply to {len(messages)} messages"


class ScriptedBackend:
    """Calls ``script`` for each request, optionally after ``delay`` seconds; records every request.

    Its "model" tokenizes by whitespace: a request's tokens are its words, ``counted``.
    """

    def __init__(self, script: Script = echo_script, *, model: str = "scripted", delay: float = 0.0, name: str = "scripted"):
        self.script, self.model, self.delay = script, model, delay
        self.stats = BackendStats(name)
        self.requests: list[tuple[list[ChatMessage], SamplingParams, str]] = []

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams, *, model: str | None = None) -> Completion:
        model = model or self.model
        self.requests.append((list(messages), params, model))
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            text = self.script(messages, params, model)
        except BackendError as exc:
            self.stats.fault(exc.kind, str(exc), retried=False)
            raise
        completion = Completion(text, sum(len(m["content"].split()) for m in messages), len(text.split()), self.delay, model,
                                usage="counted")
        self.stats.done(completion)
        return completion

    async def aclose(self) -> None:
        return None
