"""Termination detectors: ``check(episode) -> Outcome | None``, composable with ``|`` and ``&``.

``a | b`` ends the episode when either fires (the first to fire, in order, gives the outcome);
``a & b`` ends it only when both fire, with ``terminated`` winning over ``truncated``.
Detectors are checked after every turn. ``TERMINATION`` names them for configs
(``[run] termination = [{name = "max_rounds", rounds = 5}, {name = "end_token"}]``); a
plugin registers a factory returning any object with ``check`` in ``esc_eval.termination``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role
from esc_eval.roles.registry import Registry


class Detector(Protocol):
    """Anything with ``check``; subclassing it (the built-ins do) adds ``|`` and ``&``."""

    def check(self, episode: Episode) -> Outcome | None:
        """Return an outcome if the episode should end now."""
        ...

    def __or__(self, other: Detector) -> Detector:
        return AnyOf((self, other))

    def __and__(self, other: Detector) -> Detector:
        return AllOf((self, other))


@dataclass(frozen=True)
class AnyOf(Detector):
    parts: tuple[Detector, ...]

    def check(self, episode: Episode) -> Outcome | None:
        for part in self.parts:
            outcome = part.check(episode)
            if outcome is not None:
                return outcome
        return None


@dataclass(frozen=True)
class AllOf(Detector):
    parts: tuple[Detector, ...]

    def check(self, episode: Episode) -> Outcome | None:
        outcomes = []
        for part in self.parts:
            outcome = part.check(episode)
            if outcome is None:
                return None
            outcomes.append(outcome)
        kinds = {o.kind for o in outcomes}
        kind = OutcomeKind.TERMINATED if OutcomeKind.TERMINATED in kinds else OutcomeKind.TRUNCATED
        return Outcome(kind, " & ".join(o.reason for o in outcomes))


@dataclass(frozen=True)
class MaxRounds(Detector):
    """Truncate after ``rounds`` supporter replies (ESC-Eval: 5)."""

    rounds: int

    def check(self, episode: Episode) -> Outcome | None:
        if episode.rounds >= self.rounds:
            return Outcome.truncated(f"max_rounds={self.rounds}")
        return None


@dataclass(frozen=True)
class MaxTokens(Detector):
    """Truncate once generated tokens (both sides) reach ``tokens``."""

    tokens: int

    def check(self, episode: Episode) -> Outcome | None:
        if episode.completion_tokens >= self.tokens:
            return Outcome.truncated(f"max_tokens={self.tokens}")
        return None


@dataclass(frozen=True)
class EndToken(Detector):
    """Terminate when a line by ``role`` (any role if ``None``) contains ``token``."""

    token: str
    role: Role | None = Role.SEEKER

    def check(self, episode: Episode) -> Outcome | None:
        last = episode.last
        if last is not None and last.generated and (self.role is None or last.role is self.role) and self.token in last.text:
            return Outcome.terminated(f"end_token={self.token!r} by {last.role}")
        return None


@dataclass(frozen=True)
class Timeout(Detector):
    """Truncate once the episode has run for ``seconds`` (checked between turns)."""

    seconds: float

    def check(self, episode: Episode) -> Outcome | None:
        if episode.elapsed() >= self.seconds:
            return Outcome.truncated(f"timeout={self.seconds}s")
        return None


TERMINATION: Registry[Callable[..., Detector]] = Registry("termination", "esc_eval.termination")
"""Detectors by config name; several named in ``[run] termination`` end an episode when any fires, in order."""
TERMINATION.register("max_rounds")(MaxRounds)
TERMINATION.register("max_tokens")(MaxTokens)
TERMINATION.register("timeout")(Timeout)


@TERMINATION.register("end_token")
def end_token(token: str = "[END]", role: str | None = "seeker") -> Detector:
    """Terminate when a line by ``role`` (``seeker``, ``supporter``, or any if empty) contains ``token``."""
    return EndToken(token, Role(role) if role else None)
