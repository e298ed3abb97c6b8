"""Live counters of a run, updated per event in O(1) so any display refresh is cheap.

``RunProgress`` holds no per-episode collection: whatever the number of episodes in
flight, its size is bounded by the number of supporters, dimensions and roles. The
monitor (``esc_eval.runs.monitor``) renders from these counters only.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from esc_eval.agents.judge.profiles import LABELS, to_points
from esc_eval.agents.messages import EpisodeEnded, TurnTaken

if TYPE_CHECKING:
    from esc_eval.runs.execution.spend import Spend

SPOTLIGHT_LINES = 12
"""Lines of the spotlighted episode kept: a whole ESC-Eval episode (opener + 5 rounds) fits."""


@dataclass
class WorkerProgress:
    """One Ray worker of a distributed run (``esc_eval.runs.distributed``), as its driver last heard.

    ``state``: ``starting``, ``running``, ``finished``, ``lost`` (died; its unfinished episodes went
    to a replacement) or ``stopped``. ``assigned`` counts the episodes (and re-judgings) of its shard;
    ``finished`` those it reported complete (ended and, when judged, every score in).
    """

    name: str
    state: str = "starting"
    node: str = ""
    pid: int = 0
    assigned: int = 0
    finished: int = 0
    active: int = 0
    turns: int = 0
    requests: int = 0
    lost: int = 0
    """Workers of this slot that died; each time a replacement took over the unfinished episodes."""
    last_seen: float = field(default_factory=time.monotonic)


@dataclass
class RunProgress:
    """Counters of one process's run.

    Attributes:
        planned, skipped: episodes the plan holds, and those a previous attempt already finished.
        active, done, failed: episodes running now, and those this process finished or gave up on.
        turns, tokens_out: turns taken and completion tokens by role (``seeker``, ``supporter``, ``judge``).
        outcomes: episodes by outcome kind (``terminated``, ``truncated``, ``failed``).
        recent: the last turns of any episode.
        judge_dimensions: final scores the judge gives each ended, non-failed episode (0: no judge);
            ``ended`` queues that many on ``judge_pending``.
        judge_pending, judge_done, judge_failed: final (episode x dimension) scores waiting or
            in flight, answered (failed ones included), and failed.
        score_counts: supporter -> dimension -> number of valid labels (0..4).
        cards: episode key -> its card, so that running means weigh each card once, as the report does
            (the mean over cards of the card's mean over episodes of the episode's mean label).
        spotlight_key, spotlight, spotlight_outcome: one episode whose last lines the monitor shows;
            it moves to the next episode that starts once the current one has ended and been shown
            for ``spotlight_dwell`` seconds, unless ``follow`` fixed it.
    """

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
    judge_dimensions: int = 0
    judge_pending: int = 0
    judge_done: int = 0
    judge_failed: int = 0
    score_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    cards: dict[str, str] = field(default_factory=dict)
    spotlight_key: str | None = None
    spotlight: deque[TurnTaken] = field(default_factory=lambda: deque(maxlen=SPOTLIGHT_LINES))
    spotlight_outcome: str | None = None
    spotlight_followed: bool = False
    spotlight_dwell: float = 4.0
    workers: dict[str, WorkerProgress] = field(default_factory=dict)
    """Worker name -> its progress; empty unless the run is distributed."""
    spend: Spend | None = None
    """What the run spent and expects to spend (``esc_eval.runs.execution.spend``); set when the run starts."""
    _spotlight_ended_at: float = field(default=0.0, repr=False)
    _episode_labels: dict[tuple[str, str, str], dict[str, list[int]]] = field(default_factory=dict, repr=False)
    """(supporter, dimension, card) -> episode -> [sum, count] of its valid labels."""
    _card_means: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict, repr=False)
    _card_totals: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    @property
    def to_run(self) -> int:
        return self.planned - self.skipped

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def queued(self) -> int:
        """Episodes of this process's plan not yet admitted."""
        return max(0, self.to_run - self.finished - self.active)

    def turn(self, message: TurnTaken) -> None:
        self.turns += 1
        if self.spend is not None:
            self.spend.turn(message)
        self.tokens_out[message.role] = self.tokens_out.get(message.role, 0) + message.completion_tokens
        self.recent.append(message)
        key = message.episode_key
        if key == self.spotlight_key:
            if message.index == 0:  # the followed episode restarted
                self.spotlight.clear()
                self.spotlight_outcome = None
            self.spotlight.append(message)
        elif self._spotlight_free(message):
            self.spotlight_key, self.spotlight_outcome = key, None
            self.spotlight.clear()
            self.spotlight.append(message)

    def _spotlight_free(self, message: TurnTaken) -> bool:
        if self.spotlight_followed:
            return False
        if self.spotlight_key is None:
            return True
        return (message.index == 0 and self.spotlight_outcome is not None
                and time.monotonic() - self._spotlight_ended_at >= self.spotlight_dwell)

    def follow(self, key: str | None) -> None:
        """Spotlight episode ``key`` from its next turn on, and never move; ``None`` cycles again."""
        self.spotlight_followed = key is not None
        if key != self.spotlight_key:
            self.spotlight_key, self.spotlight_outcome = key, None
            self.spotlight.clear()

    def ended(self, message: EpisodeEnded) -> None:
        self.outcomes[message.outcome] = self.outcomes.get(message.outcome, 0) + 1
        if self.spend is not None:
            self.spend.ended(message)
        if message.outcome == "failed":
            self.failed += 1
        else:
            self.done += 1
            self.judge_pending += self.judge_dimensions
        if message.episode_key == self.spotlight_key:
            self.spotlight_outcome = message.outcome
            self._spotlight_ended_at = time.monotonic()

    def judge_queued(self, scores: int) -> None:
        """``scores`` final scores were scheduled outside ``ended`` (a resumed run re-judging)."""
        self.judge_pending += scores

    def score(self, supporter: str, dimension: str, label: int | None, episode: str = "") -> None:
        """One final score arrived: ``label`` 0..4, -1 (no label in the answer) or ``None`` (request failed).

        Only labels 0..4 count towards the leaderboard. ``episode`` (its key) places the label
        on its card (``cards``); the card's mean is updated in O(episodes on the card), and
        the sum of card means with it. Without ``episode`` every label pools into one card.
        """
        self.judge_pending = max(0, self.judge_pending - 1)
        self.judge_done += 1
        if label is None:
            self.judge_failed += 1
            return
        if isinstance(label, bool) or label not in LABELS:
            return
        counts = self.score_counts.setdefault(supporter, {})
        counts[dimension] = counts.get(dimension, 0) + 1
        card = self.cards.get(episode, episode)
        episodes = self._episode_labels.setdefault((supporter, dimension, card), {})
        tally = episodes.setdefault(episode, [0, 0])
        tally[0] += label
        tally[1] += 1
        means = self._card_means.setdefault((supporter, dimension), {})
        new = sum(total / n for total, n in episodes.values()) / len(episodes)
        self._card_totals[(supporter, dimension)] = self._card_totals.get((supporter, dimension), 0.0) + new - means.get(card, 0.0)
        means[card] = new

    def leaderboard(self) -> dict[str, dict[str, float]]:
        """supporter -> dimension -> the report's score: mean over cards of the card's mean label × 25."""
        found: dict[str, dict[str, float]] = {}
        for (supporter, dimension), means in self._card_means.items():
            found.setdefault(supporter, {})[dimension] = to_points(self._card_totals[(supporter, dimension)] / len(means))
        return found

    def elapsed(self) -> float:
        return time.monotonic() - self.started
