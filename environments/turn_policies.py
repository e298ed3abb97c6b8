"""Turn policies decide who speaks next: ``next_speaker(episode) -> Role | None``.

``None`` means the policy has nothing more to ask; termination detectors normally end
an episode first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from esc_eval.environments.episode import Episode, Role
from esc_eval.roles.registry import Registry


class TurnPolicy(Protocol):
    """``opener``: the supporter's fixed greeting is the first line (ESC-Eval's setup)."""

    @property
    def opener(self) -> bool: ...  # read-only, so a frozen dataclass's field satisfies it

    def next_speaker(self, episode: Episode) -> Role | None: ...


@dataclass(frozen=True, slots=True)
class Alternating:
    """Seeker and supporter take turns; the seeker speaks first after the optional opener.

    ``Alternating(opener=True)`` with ``MaxRounds(5)`` is ESC-Eval's protocol.
    """

    opener: bool = True

    def next_speaker(self, episode: Episode) -> Role | None:
        last = episode.last
        if last is None or last.role is Role.SUPPORTER:
            return Role.SEEKER
        return Role.SUPPORTER


TURN_POLICIES: Registry[Callable[..., TurnPolicy]] = Registry("turn policy", "esc_eval.turn_policies")
"""Turn policies by config name (``[run] turn_policy = {name = "alternating", opener = true}``)."""
TURN_POLICIES.register("alternating")(Alternating)
