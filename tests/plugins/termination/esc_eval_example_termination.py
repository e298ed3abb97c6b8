"""A termination detector plugin: end the conversation once the seeker has gone quiet."""

from __future__ import annotations

from dataclasses import dataclass

from esc_eval.environments.episode import Episode, Outcome, Role


@dataclass(frozen=True)
class QuietSeeker:
    """Terminate once the seeker's last ``lines`` replies each have fewer than ``words`` words."""

    words: int = 3
    lines: int = 2

    def __post_init__(self) -> None:
        if self.words < 1 or self.lines < 1:  # a ValueError here is a config error naming the field
            raise ValueError(f"words and lines must be at least 1, got words={self.words}, lines={self.lines}")

    def check(self, episode: Episode) -> Outcome | None:
        said = [t.text for t in episode.turns if t.role is Role.SEEKER and t.generated][-self.lines:]
        if len(said) == self.lines and all(len(text.split()) < self.words for text in said):
            return Outcome.terminated(f"quiet_seeker: {self.lines} replies under {self.words} words")
        return None
