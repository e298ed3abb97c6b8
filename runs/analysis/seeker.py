"""Seeker fidelity: how well a simulated help-seeker plays its part, per seeker model and persona.

Pure functions over stored transcripts (``esc-eval seeker eval``). The supporter leaderboard is only as
good as the seeker that talked to it; these figures show a seeker that breaks role, echoes the supporter,
repeats itself or recites its card instead of telling it. Human-likeness needs a judge and comes from
``judge_human_likeness``; everything else is computed here without a model.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from esc_eval.environments.behaviours import mentions
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.persona_model import RoleBreakRule
from esc_eval.roles.persona_text import card_facts
from esc_eval.runs.analysis.statistics import cluster_mean

FIELDS = ("seeker", "persona", "n_episodes", "role_break_rate", "parroting", "distinct_2", "fact_coverage",
          "first_fact_turn", "human_likeness")
"""The stable JSON fields of one row, in order; the extra figures (``EXTRA_FIELDS``) follow them."""
EXTRA_FIELDS = ("repeated_turns", "distress_start", "distress_end", "ci")
GROUPS = ("seeker", "persona")

_WORDS = re.compile(r"\w+", re.UNICODE)
_SEEKER, _SUPPORTER = "seeker", "supporter"


@dataclass(frozen=True)
class EpisodeFigures:
    """The figures of one dialogue; ``None`` where a figure does not apply (no card facts, no distress)."""

    role_break_rate: float
    parroting: float | None
    distinct_2: float | None
    repeated_turns: float
    fact_coverage: float | None
    first_fact_turn: float | None
    distress_start: float | None
    distress_end: float | None


def tokens(text: str) -> list[str]:
    """Lower-cased words; Chinese text (no spaces) falls back to characters so n-grams still mean something."""
    words = _WORDS.findall(text.lower())
    if len(words) <= 2 and len(text) > 12:
        return [c for c in text if c.isalnum()]
    return words


def ngrams(words: Sequence[str], n: int = 2) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def overlap(reply: str, previous: str, n: int = 2) -> float | None:
    """Share of ``reply``'s word n-grams that appear in ``previous``: 1.0 is an echo; ``None`` for a reply too short."""
    grams = ngrams(tokens(reply), n)
    if not grams:
        return None
    seen = set(ngrams(tokens(previous), n))
    return sum(g in seen for g in grams) / len(grams)


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Distinct n-grams over all n-grams of ``texts`` (each text's n-grams, not across texts); ``None`` if none."""
    grams = [g for t in texts for g in ngrams(tokens(t), n)]
    return len(set(grams)) / len(grams) if grams else None


def repeated_share(texts: Sequence[str]) -> float:
    """Share of ``texts`` equal (case and spacing aside) to an earlier one."""
    seen: set[str] = set()
    repeated = 0
    for text in texts:
        norm = " ".join(tokens(text))
        repeated += norm in seen
        seen.add(norm)
    return repeated / len(texts) if texts else 0.0


def fact_timing(facts: Sequence[str], seeker_turns: Sequence[str], language: str) -> tuple[float | None, float | None]:
    """(share of ``facts`` mentioned by the end, mean 1-based seeker turn of their first mention).

    Uses the personas' own ``mentions`` test. A card reciter scores coverage 1 at turn 1; a seeker that
    tells its story gradually scores a later mean turn.
    """
    if not facts:
        return None, None
    first: list[int] = []
    for fact in facts:
        turn = next((i for i, text in enumerate(seeker_turns, 1) if mentions(fact, text, language)), None)
        if turn is not None:
            first.append(turn)
    return len(first) / len(facts), (statistics.fmean(first) if first else None)


def _state(state: str | None) -> dict[str, Any]:
    try:
        data = json.loads(state) if state else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def role_breaks(seeker_turns: Sequence[str], states: Sequence[str | None], rule: RoleBreakRule) -> float:
    """Share of seeker turns that broke role: the detector flags the kept text, or the run's state records
    a first reply it flagged and asked again for (``state["role_break"]``, see ``Environment._keep_in_role``)."""
    if not seeker_turns:
        return 0.0
    recorded = [_state(states[i] if i < len(states) else None).get("role_break") for i in range(len(seeker_turns))]
    return sum(rule.find(text) is not None or isinstance(found, dict) and bool(found.get("cue"))
               for text, found in zip(seeker_turns, recorded)) / len(seeker_turns)


def distress(states: Sequence[str | None]) -> tuple[float | None, float | None]:
    """First and last ``distress`` the persona state reports over the seeker turns; ``None`` when it reports none."""
    values: list[float] = []
    for state in states:
        value = _state(state).get("distress")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))
    return (values[0], values[-1]) if values else (None, None)


def episode_figures(transcript: Sequence[tuple[str, str]], facts: Sequence[str], language: str,
                    rule: RoleBreakRule, states: Sequence[str | None] = ()) -> EpisodeFigures:
    """The figures of one dialogue: ``transcript`` is (role, text) in order; ``states`` the seeker turns' states."""
    seeker = [text for role, text in transcript if role == _SEEKER]
    overlaps = [overlap(text, transcript[i - 1][1]) for i, (role, text) in enumerate(transcript)
                if role == _SEEKER and i > 0 and transcript[i - 1][0] == _SUPPORTER]
    echoes = [e for e in overlaps if e is not None]
    coverage, first = fact_timing(facts, seeker, language)
    start, end = distress(states)
    return EpisodeFigures(
        role_break_rate=role_breaks(seeker, states, rule),
        parroting=statistics.fmean(echoes) if echoes else None,
        distinct_2=distinct_n(seeker),
        repeated_turns=repeated_share(seeker),
        fact_coverage=coverage,
        first_fact_turn=first,
        distress_start=start,
        distress_end=end,
    )


def _estimate(values: Sequence[tuple[float | None, str]]) -> tuple[float | None, list[float] | None]:
    """Mean of the present values and its 95% interval over card means (``cluster_mean``'s t interval).

    The interval is ``None`` with fewer than two cards; every figure here lies in [0, 100] as
    ``cluster_mean`` requires (rates, turn numbers, distress levels, 0-4 ratings). They are not
    labels, so an interval where every card agrees is not widened (``step=0``).
    """
    present = [(v, card) for v, card in values if v is not None]
    if not present:
        return None, None
    est = cluster_mean(np.array([v for v, _ in present]), np.array([card for _, card in present]), step=0.0)
    interval = None if math.isnan(est.ci_low) else [round(est.ci_low, 4), round(est.ci_high, 4)]
    return round(est.mean, 4), interval


def aggregate(episodes: Sequence[tuple[Mapping[str, str], EpisodeFigures]], by: Sequence[str] = GROUPS,
              human_likeness: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Rows of ``FIELDS`` + ``EXTRA_FIELDS``, one per group of ``by``; a column not grouped on reads ``"*"``.

    ``episodes`` pairs each episode's labels (``key``, ``card``, ``seeker``, ``persona``) with its figures;
    ``human_likeness`` maps episode keys to judge scores (absent: the field is ``None``). ``ci`` holds each
    figure's 95% interval over cards (``None``: fewer than two cards, or no value).
    """
    groups: dict[tuple[str, ...], list[tuple[Mapping[str, str], EpisodeFigures]]] = defaultdict(list)
    for labels, figures in episodes:
        groups[tuple(labels[g] if g in by else "*" for g in GROUPS)].append((labels, figures))
    rows = []
    for (seeker, persona), members in sorted(groups.items()):
        row: dict[str, Any] = {"seeker": seeker, "persona": persona, "n_episodes": len(members)}
        intervals: dict[str, list[float] | None] = {}
        for name in FIELDS[3:-1] + EXTRA_FIELDS[:-1]:
            row[name], intervals[name] = _estimate([(getattr(f, name), labels["card"]) for labels, f in members])
        row["human_likeness"] = intervals["human_likeness"] = None
        if human_likeness is not None:
            row["human_likeness"], intervals["human_likeness"] = _estimate(
                [(human_likeness.get(labels["key"]), labels["card"]) for labels, _ in members])
        row["ci"] = {name: intervals[name] for name in FIELDS[3:] + EXTRA_FIELDS[:-1]}
        rows.append({name: row[name] for name in FIELDS + EXTRA_FIELDS})
    return rows


# --------------------------------------------------------------------------- human-likeness judge


def rubric() -> dict[str, Any]:
    """The human-likeness rubric (``agents/judge/data/seeker_rubric.yaml``)."""
    text = (resources.files("esc_eval.agents.judge") / "data" / "seeker_rubric.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def rubric_prompt(seeker_turns: Sequence[str], spec: Mapping[str, Any]) -> str:
    lines = "\n".join(f"{i}. {text}" for i, text in enumerate(seeker_turns, 1))
    return str(spec["prompt"]).replace("{turns}", lines)


def parse_rating(reply: str, spec: Mapping[str, Any]) -> float | None:
    """The first digit of ``reply`` within the rubric's scale, or ``None`` (the episode then goes unjudged)."""
    low, high = spec["scale"]
    found = re.search(r"\d", reply)
    if found is None or not low <= int(found.group(0)) <= high:
        return None
    return float(found.group(0))


# --------------------------------------------------------------------------- reading a store


@dataclass(frozen=True)
class StoredEpisode:
    """What the figures need of one finished episode of a store."""

    labels: dict[str, str]
    transcript: list[tuple[str, str]]
    states: list[str | None]
    facts: tuple[str, ...]
    language: str

    def seeker_turns(self) -> list[str]:
        return [text for role, text in self.transcript if role == _SEEKER]


def stored_episodes(store: Any) -> list[StoredEpisode]:
    """The finished episodes of ``store`` with their card facts, each labelled with the seeker that played it.

    The seeker is the one the store records per episode (a run may compare several, ``[[seekers]]``);
    an episode stored before that (schema 2) was played by the config's one ``[seeker]``: its ``model``.

    Card facts come from the cards the run's recorded config names (file or built-in); a store without a
    config (or whose cards no longer load) gives no facts, so its coverage figures are ``None``.
    """
    from esc_eval.runs.analysis.leaderboard import seeker_label

    config = store.meta("config") or {}
    only = seeker_label(store)
    cards = _run_cards(config)
    found = []
    for episode in store.episodes(status="done"):
        card = cards[episode.card_index] if episode.card_index < len(cards) else None
        facts = card_facts(card) if card is not None and card.id == episode.card_id else ()
        states = [t.state for t in store.turns(episode.key) if t.role == _SEEKER]
        found.append(StoredEpisode({"key": episode.key, "card": episode.card_id, "seeker": episode.seeker or only, "persona": episode.persona},
                                   store.transcript(episode.key), states, facts, episode.language))
    return found


def _run_cards(config: Mapping[str, Any]) -> list[RoleCard]:
    from esc_eval.roles.cards import CardError
    from esc_eval.runs.config_sections import CardsSection
    from esc_eval.runs.execution.plan import load_section_cards

    section = config.get("cards")
    if not isinstance(section, dict):
        return []
    try:
        return load_section_cards(CardsSection(**section))
    except (TypeError, CardError, OSError):
        return []


def evaluate(episodes: Sequence[StoredEpisode], rule: RoleBreakRule, by: Sequence[str] = GROUPS,
             human_likeness: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The rows of ``esc-eval seeker eval``: ``episode_figures`` for each episode, averaged per group."""
    figures = [(e.labels, episode_figures(e.transcript, e.facts, e.language, rule, e.states)) for e in episodes]
    return aggregate(figures, by, human_likeness)


async def judge_human_likeness(episodes: Sequence[StoredEpisode], backend: Any, params: Any) -> tuple[dict[str, float], int]:
    """(episode key -> the judge's 0-4 rating of the seeker's lines, episodes left unrated).

    An episode is left unrated when the judge's reply holds no rating or its request finally fails
    (the backend has retried it); the mean is then over the rated ones and the caller reports the count.
    """
    import asyncio

    from esc_eval.agents.backends.base import BackendError

    spec = rubric()

    async def rate(episode: StoredEpisode) -> tuple[str, float | None]:
        prompt = rubric_prompt(episode.seeker_turns(), spec)
        try:
            reply = await backend.complete([{"role": "user", "content": prompt}], params)
        except BackendError:
            return episode.labels["key"], None
        return episode.labels["key"], parse_rating(reply.text, spec)

    rated = await asyncio.gather(*(rate(e) for e in episodes if e.seeker_turns()))
    found = {key: value for key, value in rated if value is not None}
    return found, len(rated) - len(found)
