"""A turn policy plugin: the seeker says several lines in a row before the supporter answers."""

from __future__ import annotations

from dataclasses import dataclass

from esc_eval.environments.episode import Episode, Role


@dataclass(frozen=True)
class SeekerBursts:
    """The seeker speaks ``burst`` times in a row, then the supporter once (after the fixed opener if ``opener``)."""

    burst: int = 2
    opener: bool = True

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")

    def next_speaker(self, episode: Episode) -> Role | None:
        in_a_row = 0
        for turn in reversed(episode.turns):
            if turn.role is not Role.SEEKER:
                break
            in_a_row += 1
        return Role.SUPPORTER if in_a_row >= self.burst else Role.SEEKER
