"""Typed records of the store: what goes in (planned and imported episodes) and what reads return.

Reads return ``NamedTuple`` records (attribute access, cheap to build from a row, still
tuples); their fields are the store's columns, in table order, so importers and exporters
can map them to and from files. ``final_labels`` is the one place that turns whole-episode
scores into the judge label ESC-Eval compares (the first sample; ``None`` when it failed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from esc_eval.agents.messages import FINAL

FINAL_ROUND = FINAL
"""``scores.round`` of the score of a whole episode (``Score.round`` of ``esc_eval.agents.messages.FINAL``, the
one definition; the store's readers and writers name it for its column); per-round scores use the round number."""

UNKNOWN_USAGE = "unknown"
"""``turns.usage`` of a turn whose tokens its source did not record (an imported ESC-Eval transcript): its
``prompt_tokens``/``completion_tokens`` (NOT NULL) hold 0, which means nothing; the report counts it as a request with
unknown tokens (``esc_eval.runs.store.usage``), never as 0 tokens. Not a backend's ``USAGE``: a reply always has counts."""


def episode_key(supporter: str, persona: str, card: str, origin: str, repeat: int, seeker: str | None = None) -> str:
    """Every episode's key, in one shape: ``[seeker/]supporter/persona/card/origin/rREPEAT``.

    Deterministic and readable, so the same plan (``origin`` ``s<seed>``) or the same imported file
    (``origin`` ``imported``) finds its episodes again. ``seeker`` is given only when a run compares
    several seekers, so a one-seeker run keeps the keys of stores made before ``[[seekers]]`` existed.

    >>> episode_key("gpt", "default", "00003-work-7", "s42", 0)
    'gpt/default/00003-work-7/s42/r0'
    """
    key = f"{supporter}/{persona}/{card}/{origin}/r{repeat}"
    return f"{seeker}/{key}" if seeker else key


@dataclass(frozen=True, slots=True)
class PlannedEpisode:
    key: str
    ordinal: int
    card_index: int
    card_id: str
    language: str
    category: str
    source: str
    supporter: str
    persona: str
    repeat: int
    seed: int
    seeker: str = ""
    """The seeker's label (``SeekerSection.label``); runs comparing several seekers tell their episodes apart by it."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One invocation that ran the store: ``status`` is ``running`` until it ends as
    ``finished`` (its plan ran out), ``stopped`` (Ctrl-C: stopped admitting) or ``interrupted``
    (it raised or was cancelled). A ``running`` row whose heartbeat went stale is a crash."""

    id: int
    started_at: float
    heartbeat: float
    ended_at: float | None
    status: str
    pid: int | None
    host: str | None


@dataclass(frozen=True, slots=True)
class EpisodeRows:
    """One episode as rows of the store's tables (column -> value), for ``Store.import_episodes`` / ``import_rows``.

    ``episode`` holds the ``episodes`` columns; its ``ordinal`` is kept only by an import into
    a store without episodes (else the store numbers imports). ``turns``, ``scores`` and
    ``owned`` (any other table whose rows belong to an episode: ``annotations``, and tables
    added later) hold their tables' columns but ``episode_key``.
    """

    episode: dict[str, Any]
    turns: tuple[dict[str, Any], ...] = ()
    scores: tuple[dict[str, Any], ...] = ()
    owned: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    def tables(self) -> dict[str, tuple[dict[str, Any], ...]]:
        """Table name -> this episode's rows in it (``turns``, ``scores``, then ``owned``)."""
        return {"turns": self.turns, "scores": self.scores, **self.owned}


@dataclass(frozen=True)
class ImportedRows:
    """What ``Store.import_rows`` wrote."""

    new: list[str]
    """Keys of the episodes the store lacked, in the order given."""
    added: dict[str, int]
    """Table -> rows added to episodes the store had (human labels it lacked)."""
    store_rows: dict[str, int]
    """Table -> rows of store-level tables (``runs``, ``events``) written; rows the store had are not counted."""


@dataclass(frozen=True, slots=True)
class ImportedEpisode:
    """A finished episode read from a file: its plan row, ``(role, text)`` turns and final ``(dimension, label)`` scores."""

    episode: PlannedEpisode
    transcript: tuple[tuple[str, str], ...]
    scores: tuple[tuple[str, int], ...] = ()
    outcome: str = "truncated"
    reason: str = "imported"
    model: str = "imported"
    at: float = 0.0

    def rows(self) -> EpisodeRows:
        """As table rows: a ``done`` episode, turns of unknown usage, ``ok`` final scores without raw replies.

        The file has no token counts: every turn is ``UNKNOWN_USAGE`` but the supporter's lines before the first
        seeker line, the fixed opener (no request, 0 tokens, as a run stores it). Scores' tokens are ``NULL`` (unknown).
        """
        episode = {f.name: getattr(self.episode, f.name) for f in fields(PlannedEpisode) if f.name != "ordinal"}
        episode.update(status="done", outcome=self.outcome, reason=self.reason, attempts=1, started_at=self.at, ended_at=self.at)
        seeker = next((i for i, (role, _) in enumerate(self.transcript) if role == "seeker"), len(self.transcript))
        turns = tuple({"idx": index, "role": role, "text": text, "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "at": self.at,
                       "usage": "reported" if index < seeker and role == "supporter" else UNKNOWN_USAGE}
                      for index, (role, text) in enumerate(self.transcript))
        scores = tuple({"dimension": dim, "round": FINAL_ROUND, "label": label, "model": self.model, "status": "ok", "at": self.at}
                       for dim, label in self.scores)
        return EpisodeRows(episode, turns, scores)


class EpisodeRecord(NamedTuple):
    """One row of ``episodes``: the plan (card, supporter, persona, repeat, seed, seeker) and its state.

    ``seeker`` is ``""`` in episodes stored before schema 3 (the run's ``[seeker]`` played them all).
    """

    key: str
    ordinal: int
    card_index: int
    card_id: str
    language: str
    category: str
    source: str
    supporter: str
    persona: str
    repeat: int
    seed: int
    status: str
    outcome: str | None
    reason: str | None
    attempts: int
    started_at: float | None
    ended_at: float | None
    seeker: str = ""


class TurnRecord(NamedTuple):
    """One row of ``turns``: an utterance with its usage and, for the seeker, its hidden state (JSON text).

    ``TurnTaken`` as stored: a read's row (the column names, ``idx``; ``state`` ``None`` where none was kept).
    ``usage`` and ``cached`` (docs/cost.md) read as ``"reported"`` and 0 in a store older than schema 4.
    """

    episode_key: str
    idx: int
    role: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency: float
    at: float
    state: str | None
    usage: str = "reported"
    cached: int = 0


class Unscored(NamedTuple):
    """A finished episode with judge dimensions to score (again) (``Store.unscored``).

    ``dimensions`` names only those lacking a usable score, so labels given are never asked
    twice; empty means every dimension (a Ray worker's shard re-scores whole episodes).
    """

    key: str
    language: str
    supporter: str
    dimensions: tuple[str, ...] = ()


class ScoreRecord(NamedTuple):
    """One row of ``scores``: a judge label (``round == FINAL_ROUND`` for the whole episode), or its failure.

    Its request's tokens are ``None`` when unknown (the request failed, or a store older than schema 4).
    """

    episode_key: str
    dimension: str
    round: int
    label: int | None
    raw: str | None
    model: str | None
    latency: float | None
    status: str
    error: str | None
    at: float
    sample: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage: str = "reported"
    cached: int = 0


class Tokens(NamedTuple):
    """A judge request's usage as ``scores``/``safety`` keep it: counts ``None`` when unknown (docs/cost.md)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage: str = "reported"
    cached: int = 0

    @classmethod
    def of(cls, message: Any) -> Tokens:
        """The usage a ``Score`` or ``SafetyJudgement`` carries."""
        return cls(message.prompt_tokens, message.completion_tokens, message.usage, int(message.cached))


NO_TOKENS = Tokens()
"""A label that carries no usage (an import of a file without it, a test)."""


class FinalScore(NamedTuple):
    """A whole-episode judge label of a finished episode (``Store.final_scores``)."""

    episode_key: str
    dimension: str
    label: int | None
    status: str
    sample: int


class EventRecord(NamedTuple):
    """One row of ``events``: something that happened to the run (a retry, a 5xx, a config change)."""

    id: int
    at: float
    kind: str
    endpoint: str | None
    episode_key: str | None
    detail: str | None


class AnnotationRecord(NamedTuple):
    """One human label (``esc-eval annotate``): ``annotator`` gave ``label`` 0..4 on ``dimension`` of an episode."""

    episode_key: str
    annotator: str
    dimension: str
    label: int
    at: float


def final_labels(scores: Iterable[tuple[str, str, int | None, str, int]]) -> dict[str, dict[str, int | None]]:
    """Episode key -> {dimension: the judge's label of the first sample, ``None`` where the judge call failed}.

    With ``[judge] samples = k`` ESC-Eval's single label (its files, its Table 4 agreement)
    is the first sample's; the others feed only the report's judge-noise statistics.
    """
    out: dict[str, dict[str, int | None]] = {}
    for key, dimension, label, status, sample in scores:     # unpacked: ``Store.final_score_rows``' plain tuples too
        if sample == 0:
            out.setdefault(key, {})[dimension] = label if status == "ok" else None
    return out
