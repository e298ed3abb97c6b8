"""Who sees what: each side's chat history built from the transcript and the protocol.

The seeker model sees the supporter as ``user`` and itself as ``assistant``; the
supporter under test sees the reverse, and (in ESC-Eval) never sees the opener.
"""

from __future__ import annotations

from esc_eval.agents.messages import ChatMessage
from esc_eval.environments.episode import Episode, Role
from esc_eval.roles.templates import SeekerProtocol


def seeker_view(protocol: SeekerProtocol, episode: Episode, directives: str = "") -> list[ChatMessage]:
    system = protocol.seeker_prompt(episode.card) + directives
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    for turn in episode.turns:
        messages.append({"role": "assistant" if turn.role is Role.SEEKER else "user", "content": turn.text})
    return messages


def supporter_view(protocol: SeekerProtocol, episode: Episode, system_prompt: str | None = None) -> list[ChatMessage]:
    system = system_prompt if system_prompt is not None else protocol.supporter_prompt(episode.card.language)
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    for turn in episode.turns:
        if not turn.generated and not protocol.supporter_sees_opener:
            continue
        messages.append({"role": "user" if turn.role is Role.SEEKER else "assistant", "content": turn.text})
    return messages
