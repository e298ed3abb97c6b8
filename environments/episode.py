"""Episode state: the one per-conversation object, small and explicit (as Gymnasium's env state).

An episode ends with an ``Outcome`` of one of three kinds:
  * ``terminated`` -- the conversation reached a natural end (goodbye, end token);
  * ``truncated``  -- a limit cut it off (rounds, tokens, time); ESC-Eval's 5 rounds end this way;
  * ``failed``     -- a backend gave up; the transcript is not a dialogue and is never scored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from esc_eval.agents.messages import TurnTaken
from esc_eval.roles.cards import RoleCard


class Role(StrEnum):
    SEEKER = "seeker"
    SUPPORTER = "supporter"


class OutcomeKind(StrEnum):
    TERMINATED = "terminated"
    TRUNCATED = "truncated"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    reason: str

    @classmethod
    def terminated(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.TERMINATED, reason)

    @classmethod
    def truncated(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.TRUNCATED, reason)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.FAILED, reason)


@dataclass(slots=True)
class Turn:
    """One line of the transcript, as the environment plays it. The opener is a turn with ``generated=False``.

    One turn has three shapes, one per layer, each with what only its layer needs: this one (a
    ``Role``, ``generated``, the state decoded on demand), the message it is published as
    (``esc_eval.agents.messages.TurnTaken``, made only by ``taken``: frozen, with its episode's
    key) and the store's row (``esc_eval.runs.store.TurnRecord``, read back: column names, no state = ``None``).
    """

    index: int
    role: Role
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    generated: bool = True
    at: float = 0.0
    state_json: str = ""
    """The seeker's hidden state after this turn, as JSON (seeker turns only; see ``esc_eval.environments.behaviours``).

    Kept as text, not a copied dict: it is what the store records, and a thousand live
    episodes hold five of these each."""
    usage: str = "reported"
    """Where the token counts come from (``esc_eval.agents.messages.USAGE``): ``estimated`` if any request behind the turn was."""
    cached: bool = False
    """Every request behind the turn (role-break retries too) was answered from the response cache."""

    def taken(self, episode_key: str) -> TurnTaken:
        """This turn as the message observers (the store, the judge, progress) receive."""
        return TurnTaken(episode_key, self.index, self.role.value, self.text, self.prompt_tokens, self.completion_tokens,
                         self.latency, self.at, self.state_json, self.usage, self.cached)

    @property
    def state(self) -> dict[str, Any] | None:
        """``state_json`` decoded: a snapshot that later changes to ``episode.state`` leave alone."""
        return json.loads(self.state_json) if self.state_json else None


@dataclass(slots=True)
class Episode:
    """One conversation between a seeker (playing ``card``) and one supporter.

    Attributes:
        key: deterministic identity (card, supporter, persona, seed, repeat); see ``esc_eval.runs.execution.plan``.
        seed: per-episode seed derived from the run seed and the key.
        turns: the transcript so far, opener included.
        outcome: ``None`` while running.
        state: the seeker's hidden state (emotion, disclosure, ...), owned by its ``SeekerBehaviour``;
            JSON-able, recorded as JSON on each seeker turn (``Turn.state_json``).
    """

    key: str
    card: RoleCard
    supporter: str
    persona: str = "default"
    seed: int = 0
    repeat: int = 0
    turns: list[Turn] = field(default_factory=list)
    outcome: Outcome | None = None
    started: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Completed rounds: generated supporter replies."""
        return sum(1 for t in self.turns if t.role is Role.SUPPORTER and t.generated)

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.turns)

    @property
    def last(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def add(self, role: Role, text: str, **usage: float | int | bool | str) -> Turn:
        turn = Turn(len(self.turns), role, text, at=time.time(), **usage)  # type: ignore[arg-type]
        self.turns.append(turn)
        return turn


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one ``Environment.step`` did, in Gymnasium's terms.

    Attributes:
        turn: the line the step added, or ``None`` when the episode ended without one (a
            backend gave up, the turn policy had no speaker, the persona failed).
        terminated: the episode ended naturally (goodbye, end token, persona satisfied).
        truncated: a limit cut it off (rounds, tokens, time).
        info: ``outcome`` (the ``Outcome``, ``None`` while running) and ``failed`` (a backend or
            agent gave up: the episode is over, neither terminated nor truncated).
    """

    turn: Turn | None
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    @property
    def done(self) -> bool:
        """The episode is over, however it ended: stop stepping."""
        return self.info["outcome"] is not None
