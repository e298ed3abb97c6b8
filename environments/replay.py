"""Replay a finished dialogue through a persona: the exact request the seeker got before each of its turns.

Seeker training (``esc-eval seeker train``) must train on the prompt a run sends, so it
replays a transcript the way ``Environment`` plays one: before each seeker turn the
persona's ``directives`` for the episode so far, then ``seeker_view``; after every turn the
persona's ``on_turn``. A supporter line before the first seeker line is the run's opener
(not generated, so a persona does not react to it as it never does to an opener).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from esc_eval.agents.messages import ChatMessage
from esc_eval.environments.behaviours import SeekerBehaviour
from esc_eval.environments.episode import Episode, Role
from esc_eval.environments.views import seeker_view
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.templates import SeekerProtocol


@dataclass(frozen=True)
class SeekerExample:
    """One seeker turn of a dialogue: the messages the run would send, and the line the seeker said."""

    messages: list[ChatMessage]
    reply: str
    turn: int
    """Index of the turn in the transcript."""


def seeker_examples(protocol: SeekerProtocol, behaviour: SeekerBehaviour, card: RoleCard,
                    transcript: Sequence[tuple[str, str]], persona: str = "default") -> list[SeekerExample]:
    """One ``SeekerExample`` per seeker turn of ``transcript`` ((role, text) pairs, roles ``seeker``/``supporter``)."""
    episode = Episode("replay", card, "replay", persona)
    examples = []
    for index, (role, text) in enumerate(transcript):
        if role == Role.SEEKER:
            directives = behaviour.directives(episode)
            examples.append(SeekerExample(seeker_view(protocol, episode, directives), text, index))
            turn = episode.add(Role.SEEKER, text)
        else:
            turn = episode.add(Role.SUPPORTER, text, generated=bool(examples))
        behaviour.on_turn(episode, turn)
    return examples


__all__ = ["SeekerExample", "seeker_examples"]
