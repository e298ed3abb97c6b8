"""The supporter: the emotional-support model under test."""

from __future__ import annotations

from esc_eval.agents.chat_agent import ChatAgent


class SupporterAgent(ChatAgent):
    """Answers the seeker. Its view never includes the opener under ESC-Eval's protocol."""
