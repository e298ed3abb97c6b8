"""Live counters of a run, updated per event in O(1) so any display refresh is cheap."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from agents.messages import EpisodeEnded, TurnTaken


@dataclass
class RunProgress:
    planned: int = 0
    skipped: int = 0
    active: int = 0
    done: int = 0
    failed: int = 0
    turns: int = 0
    tokens_out: dict[str, int] = field(default_factory=lambda: {"seeker": 0, "supporter": 0, "judge": 0})
    outcomes: dict[str, int] = field(default_factory=dict)
    recent: deque[TurnTaken] = field(default_factory=lambda: deque(maxlen=8))
    started: float = field(default_factory=time.monotonic)

    @property
    def to_run(self) -> int:
        return self.planned - self.skipped

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def turn(self, message: TurnTaken) -> None:
        self.turns += 1
        self.tokens_out[message.role] = self.tokens_out.get(message.role, 0) + message.completion_tokens
        self.recent.append(message)

    def ended(self, message: EpisodeEnded) -> None:
        self.outcomes[message.outcome] = self.outcomes.get(message.outcome, 0) + 1
        if message.outcome == "failed":
            self.failed += 1
        else:
            self.done += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started
