"""The stateless autogen-core agent behind every speaker: one instance per (role, model key).

A ``TurnRequest`` carries the history, so one instance serves every episode that uses
its model; autogen-core caches agents for the runtime's life, and with this design
their number grows with models, never with episodes.
"""

from __future__ import annotations

from collections.abc import Mapping

from autogen_core import AgentInstantiationContext, AgentRuntime, MessageContext, RoutedAgent, message_handler

from esc_eval.agents.backends.base import ChatBackend
from esc_eval.agents.messages import Completion, TurnRequest


class ChatAgent(RoutedAgent):
    """Answers a ``TurnRequest`` with its backend's ``Completion``; errors propagate to the sender."""

    def __init__(self, backend: ChatBackend, description: str):
        super().__init__(description)
        self.backend = backend

    @message_handler
    async def on_turn(self, message: TurnRequest, ctx: MessageContext) -> Completion:
        return await self.backend.complete(message.messages, message.params)

    @classmethod
    async def register_for(cls, runtime: AgentRuntime, role: str, backends: Mapping[str, ChatBackend]) -> None:
        """Register agent type ``role``; ``AgentId(role, key)`` is served by ``backends[key]``."""

        def factory() -> ChatAgent:
            key = AgentInstantiationContext.current_agent_id().key
            return cls(backends[key], f"{role} backed by {key}")

        await cls.register(runtime, role, factory)
