"""The autogen-core runtime episodes run on, with its per-message cost taken off the hot path.

autogen-core 0.7.5's ``SingleThreadedAgentRuntime`` routes every message through one
queue: an envelope, a task to process it, a second envelope for the reply, a UUID, an
event-log record and an f-string holding the message's ``repr`` (history included),
built even when nobody logs. At thousands of turns a second that was a fifth of a
run's CPU. ``LeanRuntime`` keeps the runtime's model -- agent types, lazily created
instances, ``AgentId`` addressing, topic subscriptions, handler routing -- and
delivers directly:

- ``send_message`` awaits the recipient's handler in the caller's task; its reply or
  exception comes back as autogen's does, and cancelling the caller cancels the handler.
- ``publish_message`` starts one task per subscriber and returns at once, as the queue
  did; a handler's exception is logged, as autogen logs it. ``stop_when_idle`` waits
  for those deliveries.

Intervention handlers need the queue: a runtime given any falls back to autogen's path.
This subclass reads autogen-core's private members; it is pinned to 0.7.5 for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from typing import Any

from autogen_core import AgentId, CancellationToken, MessageContext, SingleThreadedAgentRuntime, TopicId
from autogen_core._message_handler_context import MessageHandlerContext
from opentelemetry.trace import NoOpTracerProvider

log = logging.getLogger(__name__)


def make_runtime() -> LeanRuntime:
    """A runtime with tracing off and autogen's chatty loggers quiet (they cost CPU per message)."""
    os.environ.setdefault("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    for name in ("autogen_core", "autogen_core.events", "autogen_core.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return LeanRuntime(tracer_provider=NoOpTracerProvider())


class LeanRuntime(SingleThreadedAgentRuntime):
    """``SingleThreadedAgentRuntime`` delivering messages directly (see the module docstring)."""

    _events = logging.getLogger("autogen_core.events")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._tracer_helper = _NoTracing()  # type: ignore[assignment]
        self._ids = itertools.count()
        self._deliveries: set[asyncio.Task[None]] = set()

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> Any:
        if self._intervention_handlers:
            return await super().send_message(message, recipient, sender=sender, cancellation_token=cancellation_token, message_id=message_id)
        agent = await self._get_agent(recipient)  # LookupError names an unregistered type
        ctx = MessageContext(
            sender=sender, topic_id=None, is_rpc=True,
            cancellation_token=cancellation_token or CancellationToken(), message_id=message_id or self._next_id(),
        )
        with MessageHandlerContext.populate_context(agent.id):
            return await agent.on_message(message, ctx=ctx)

    async def publish_message(
        self,
        message: Any,
        topic_id: TopicId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None:
        if self._intervention_handlers:
            return await super().publish_message(message, topic_id, sender=sender, cancellation_token=cancellation_token, message_id=message_id)
        token = cancellation_token or CancellationToken()
        message_id = message_id or self._next_id()
        for agent_id in await self._subscription_manager.get_subscribed_recipients(topic_id):
            if agent_id == sender:
                continue
            ctx = MessageContext(sender=sender, topic_id=topic_id, is_rpc=False, cancellation_token=token, message_id=message_id)
            task = asyncio.create_task(self._deliver(agent_id, message, ctx))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def stop_when_idle(self) -> None:
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries))
        await super().stop_when_idle()

    async def _deliver(self, agent_id: AgentId, message: Any, ctx: MessageContext) -> None:
        try:
            agent = await self._get_agent(agent_id)
            with MessageHandlerContext.populate_context(agent.id):
                await agent.on_message(message, ctx=ctx)
        except Exception:
            log.exception("%s failed on a published %s", agent_id, type(message).__name__)

    def _next_id(self) -> str:
        return str(next(self._ids))

    # The queue path (intervention handlers) stays lean too: no payloads nobody reads.

    def _try_serialize(self, message: object) -> str:
        if self._events.isEnabledFor(logging.INFO):
            return super()._try_serialize(message)
        return ""

    async def _create_otel_attributes(self, *args: object, **kwargs: object) -> dict[str, str]:
        return {}


class _NoTracing:
    """Stands in for autogen-core's ``TraceHelper`` when tracing is off: every span is one shared no-op."""

    _block = contextlib.nullcontext()

    def trace_block(self, *args: object, **kwargs: object) -> contextlib.nullcontext[None]:
        return self._block
