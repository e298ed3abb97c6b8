"""The seeker: a model playing the person on a role card (ESC-Role or any chat model)."""

from __future__ import annotations

from esc_eval.agents.chat_agent import ChatAgent


class SeekerAgent(ChatAgent):
    """Plays the card. The environment builds its view: protocol system prompt, then the
    supporter's lines as ``user`` and its own as ``assistant``."""
