"""Messages that travel on the runtime, and the chat request/reply types backends speak.

Agents are stateless per episode: a ``TurnRequest`` carries the whole history the
agent needs. Observers see ``TurnTaken`` on the ``turns`` topic, ``EpisodeEnded``
on the ``episodes`` topic and the judge's ``Score``s on the ``scores`` topic: one topic
per kind, so an observer that wants only ends (the judge) is not called on every turn.
All carry plain data only, so no observer depends on the environment's or the judge's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

TURNS_TOPIC = "turns"
"""Topic type of ``TurnTaken``."""
EPISODES_TOPIC = "episodes"
"""Topic type of ``EpisodeEnded``."""
SCORES_TOPIC = "scores"
"""Topic type of ``Score``: the judge publishes each label as it arrives; the store records it."""
SAFETY_TOPIC = "safety"
"""Topic type of ``SafetyJudgement``: the safety judge publishes each judgement; the store records it."""
USAGE = ("reported", "counted", "estimated")
"""Where a request's token counts come from: the server's ``usage`` object; counted with the model's own
tokenizer (a local model, or a reply without ``usage``); estimated at ~4 characters a token (no tokenizer)."""
EPISODES_SOURCE = "run"
"""One constant topic source: ``TypeSubscription`` maps the source to the observer's agent key,
so a per-episode source would create an observer instance per episode."""


class ChatMessage(TypedDict):
    """One OpenAI-style chat message: role is system, user or assistant."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding settings for one request; ``None`` leaves the server's default."""

    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

    @property
    def reproducible(self) -> bool:
        """Whether the request determines its reply: greedy (``temperature`` 0) or seeded sampling.

        Only these are answered from the response cache; a run seeds every other request it sends.
        """
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True, slots=True)
class Completion:
    """A backend's answer: the text, token usage and how long it took."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency: float
    model: str = ""
    retries: int = 0
    usage: str = "reported"
    """Where the token counts come from (``USAGE``): the server's ``usage``, counted locally, or estimated."""
    cached: bool = False
    """Answered from the response cache: no request was sent, nothing was paid."""


@dataclass(frozen=True, slots=True, repr=False)
class TurnRequest:
    """Ask an agent for its next line, given the history as that agent sees it."""

    episode_key: str
    messages: list[ChatMessage]
    params: SamplingParams

    def __repr__(self) -> str:  # short: autogen-core formats it into a log line per message, logged or not
        return f"TurnRequest(episode_key={self.episode_key!r}, messages=<{len(self.messages)}>, params={self.params!r})"


@dataclass(frozen=True, slots=True)
class TurnTaken:
    """A line was added to an episode's transcript: the one shape a turn travels in (``Turn.taken`` makes it).

    The store writes it as is (``Store.add_turn``) and a Ray worker's sink forwards it; the
    environment's ``Turn`` and the store's ``TurnRecord`` differ only where their layer needs it.
    """

    episode_key: str
    index: int
    role: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    at: float = 0.0
    state: str = ""
    """The seeker's hidden state after this turn as JSON text ("" when none), e.g. emotion and disclosure."""
    usage: str = "reported"
    """Where the token counts come from (``USAGE``); role-break retries are included in the counts."""
    cached: bool = False
    """Every request behind this turn was answered from the response cache."""


@dataclass(frozen=True, slots=True, repr=False)
class EpisodeEnded:
    """An episode reached its outcome; ``transcript`` is ``(role, text)`` per line."""

    episode_key: str
    language: str
    outcome: str
    reason: str
    transcript: tuple[tuple[str, str], ...] = field(default=())
    at: float = 0.0
    supporter: str = ""
    state: str = ""
    """The seeker's hidden state at the end as JSON text ("" when none): a risk persona's ground truth for the safety judge."""

    def __repr__(self) -> str:  # short, as TurnRequest's
        return (f"EpisodeEnded(episode_key={self.episode_key!r}, outcome={self.outcome!r}, reason={self.reason!r},"
                f" transcript=<{len(self.transcript)} lines>, supporter={self.supporter!r})")


FINAL = -1
"""``Score.round`` of a whole-episode score."""


@dataclass(frozen=True, slots=True)
class Score:
    """One judgement. ``label`` is 0..4, -1 when the answer held no label, ``None`` when the request failed."""

    episode_key: str
    dimension: str
    round: int
    label: int | None
    raw: str | None
    model: str
    latency: float
    error: str | None = None
    supporter: str = ""
    sample: int = 0
    """Which of the ``samples`` labels of this (episode, dimension, round) this is."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """The request's tokens; ``None`` when unknown (no request, or a store made before they were kept)."""
    usage: str = "reported"
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.label is None


@dataclass(frozen=True, slots=True)
class SafetyJudgement:
    """One safety judge reply on one episode (``esc_eval.agents.judge.safety``).

    ``kind`` is ``risk`` (a risk persona's episode), ``control`` or ``excluded`` (a risk episode that
    ended before its disclosure was answered: nothing to judge, no request). ``items`` is the parsed
    JSON object as text ("" when unparsed or failed); ``status``: ok, unparsed, failed, excluded.
    """

    episode_key: str
    sample: int
    kind: str
    status: str
    items: str = ""
    raw: str | None = None
    model: str = ""
    latency: float = 0.0
    error: str | None = None
    risk: str | None = None
    disclosure_round: int | None = None
    disclosure_turn: int | None = None
    supporter: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """Tokens of the judgement's request; ``None`` when none was sent (``excluded``) or unknown."""
    usage: str = "reported"
    cached: bool = False
