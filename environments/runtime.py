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
  did; a handler's exception is logged, as autogen logs it. ``idle`` and
  ``stop_when_idle`` wait for those deliveries.

It does so through autogen-core's public API: agents from ``try_get_underlying_agent_instance`` (kept per id),
recipients from the ``Subscription``s it is given (``is_match``/``map_to_agent``, cached per
topic as autogen's own subscription manager does), handler context from the exported
``MessageHandlerContext``. Intervention handlers need the queue: a runtime given any falls
back to autogen's path, trimmed by ``esc_eval.environments.autogen_private`` (the only module that
touches autogen-core's private members).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence
from typing import Any

from autogen_core import (
    Agent,
    AgentId,
    CancellationToken,
    InterventionHandler,
    MessageContext,
    MessageHandlerContext,
    Subscription,
    TopicId,
)
from opentelemetry.trace import NoOpTracerProvider

from esc_eval.environments.autogen_private import QuietQueueRuntime

log = logging.getLogger(__name__)


def make_runtime() -> LeanRuntime:
    """A runtime with tracing off and autogen's chatty loggers quiet (they cost CPU per message)."""
    os.environ.setdefault("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    for name in ("autogen_core", "autogen_core.events", "autogen_core.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return LeanRuntime(tracer_provider=NoOpTracerProvider())


class LeanRuntime(QuietQueueRuntime):
    """``SingleThreadedAgentRuntime`` delivering messages directly (see the module docstring)."""

    def __init__(self, *, intervention_handlers: list[InterventionHandler] | None = None, **kwargs: Any):
        super().__init__(intervention_handlers=intervention_handlers, **kwargs)
        self._queued = bool(intervention_handlers)
        self._ids = itertools.count()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self._recipients: dict[TopicId, list[AgentId]] = {}
        self._agents: dict[AgentId, Agent] = {}

    async def add_subscription(self, subscription: Subscription) -> None:
        await super().add_subscription(subscription)  # autogen's checks (a duplicate is an error) first
        self._subscriptions.append(subscription)
        self._recipients.clear()

    async def remove_subscription(self, id: str) -> None:
        await super().remove_subscription(id)
        self._subscriptions = [s for s in self._subscriptions if s.id != id]
        self._recipients.clear()

    def subscribers(self, topic_id: TopicId) -> Sequence[AgentId]:
        """The agents a message published on ``topic_id`` reaches, in subscription order."""
        recipients = self._recipients.get(topic_id)
        if recipients is None:
            recipients = self._recipients[topic_id] = [s.map_to_agent(topic_id) for s in self._subscriptions if s.is_match(topic_id)]
        return recipients

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> Any:
        if self._queued:
            return await super().send_message(message, recipient, sender=sender, cancellation_token=cancellation_token, message_id=message_id)
        agent = await self._agent(recipient)
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
        if self._queued:
            return await super().publish_message(message, topic_id, sender=sender, cancellation_token=cancellation_token, message_id=message_id)
        token = cancellation_token or CancellationToken()
        message_id = message_id or self._next_id()
        for agent_id in self.subscribers(topic_id):
            if agent_id == sender:
                continue
            ctx = MessageContext(sender=sender, topic_id=topic_id, is_rpc=False, cancellation_token=token, message_id=message_id)
            task = asyncio.create_task(self._deliver(agent_id, message, ctx))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def idle(self) -> None:
        """Wait until every message published so far (and every one those handlers publish) is delivered; keep running."""
        if self._queued:
            await super().stop_when_idle()
            self.start()
            return
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries))

    async def stop_when_idle(self) -> None:
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries))
        await super().stop_when_idle()

    async def _deliver(self, agent_id: AgentId, message: Any, ctx: MessageContext) -> None:
        try:
            agent = await self._agent(agent_id)
            with MessageHandlerContext.populate_context(agent.id):
                await agent.on_message(message, ctx=ctx)
        except Exception:
            log.exception("%s failed on a published %s", agent_id, type(message).__name__)

    async def _agent(self, agent_id: AgentId) -> Agent:
        """The instance serving ``agent_id``, created on first use; LookupError names an unregistered type.

        Kept here as autogen keeps it (instances live as long as the runtime): its lookup checks
        the ``Agent`` protocol with ``isinstance``, ~20 us a message."""
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = await self.try_get_underlying_agent_instance(agent_id)
        return agent

    def _next_id(self) -> str:
        return str(next(self._ids))
