"""How a seeker speaks, as numbers: the per-dialogue features of seeker realism (``seeker eval --reference``).

A dialogue is read as *turns*: consecutive utterances of one speaker are one turn (ESConv often splits a
turn in two), and the supporter's opener is a supporter turn, never a seeker turn. Only the first ``rounds``
seeker turns count, so a simulated dialogue of R rounds meets the first R seeker turns of a person's.

The features describe the seeker's manner, not what its card is about: each is a number per dialogue (or
``None`` where it does not apply: no supporter advice to agree with, a single turn to repeat). The word
lists behind them are data (``runs/data/realism/{en,zh}.yaml``, our own words); English lists match whole
words and phrases, Chinese ones substrings, and Chinese text counts characters as words.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from esc_eval.roles.persona_model import RoleBreakRule
from esc_eval.runs.analysis.seeker import ngrams, overlap, tokens

SEEKER, SUPPORTER = "seeker", "supporter"
LANGUAGES = ("en", "zh")
LISTS = ("first_person", "emotion", "hedges", "thanks", "relief", "agreement", "pushback", "advice", "problem", "stopwords")

FEATURES: dict[str, str] = {
    "words_per_turn": "mean words per seeker turn (characters for Chinese)",
    "length_spread": "coefficient of variation of the seeker turns' lengths (0: every turn equally long)",
    "questions": "share of seeker turns asking a question",
    "first_person": "share of the seeker's words that are first-person (I, my, 我 ...)",
    "emotion_words": "share of the seeker's words naming a feeling",
    "hedges": "share of seeker turns with a hedge (maybe, I guess, 可能 ...)",
    "new_words": "share of a turn's content words not said before by either side, averaged over turns (new facts told)",
    "parroting": "share of a turn's word bigrams found in the supporter turn before it, averaged over turns",
    "self_repetition": "share of a turn's word bigrams found in the seeker's earlier turns, averaged over turns 2..",
    "role_slips": "share of seeker turns the built-in role-break rule flags (speaking as an AI or as the listener)",
    "unpunctuated": "share of seeker turns ending without sentence-final punctuation (chat-style typing)",
    "thanks": "share of seeker turns thanking the supporter",
    "relief_turn": "first seeker turn saying it feels better (turns + 1 if never): how fast distress resolves",
    "agreement": "share of seeker turns after supporter advice that go along with it (none without advice)",
    "pushback": "share of seeker turns resisting (but, I can't, already tried ...)",
    "disclosure_turn": "first seeker turn naming a problem (work, family, money ...; turns + 1 if never): how soon it is told",
}
"""Feature name -> what it measures, in the order of the feature vector (documented in docs/seeker.md)."""

OVER_COOPERATION = ("relief_turn", "agreement", "pushback", "disclosure_turn")
"""The signals the literature names for over-cooperative simulated users."""

_FINAL = re.compile(r"[.!?。！？…~)\]]\s*$")


@dataclass(frozen=True)
class Lexicon:
    """The compiled word lists of one language."""

    language: str
    patterns: dict[str, re.Pattern[str]]
    stopwords: frozenset[str]

    def count(self, name: str, text: str) -> int:
        return len(self.patterns[name].findall(_normal(text)))

    def has(self, name: str, text: str) -> bool:
        return self.patterns[name].search(_normal(text)) is not None


def _normal(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


@cache
def lexicon(language: str) -> Lexicon:
    """The word lists of ``language`` (``en`` or ``zh``) from ``runs/data/realism/``."""
    text = (resources.files("esc_eval.runs") / "data" / "realism" / f"{language}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    patterns = {}
    for name in LISTS[:-1]:
        phrases = sorted((re.escape(_normal(str(p))) for p in data[name]), key=len, reverse=True)
        body = "|".join(phrases)
        patterns[name] = re.compile(f"(?<!\\w)(?:{body})(?!\\w)" if language == "en" else f"(?:{body})")
    return Lexicon(language, patterns, frozenset(_normal(str(w)) for w in data["stopwords"]))


def merge_turns(transcript: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(role, text) with consecutive utterances of one speaker joined into one turn and empty ones dropped."""
    merged: list[tuple[str, str]] = []
    for role, text in transcript:
        text = text.strip()
        if not text:
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]} {text}")
        else:
            merged.append((role, text))
    return merged


def seeker_turns(transcript: Sequence[tuple[str, str]], rounds: int | None = None) -> list[tuple[str, str, str]]:
    """The first ``rounds`` seeker turns as (text, the supporter turn just before it or "", everything said before it)."""
    merged = merge_turns(transcript)
    found: list[tuple[str, str, str]] = []
    for i, (role, text) in enumerate(merged):
        if role != SEEKER:
            continue
        if rounds is not None and len(found) >= rounds:
            break
        before = merged[i - 1][1] if i > 0 and merged[i - 1][0] == SUPPORTER else ""
        found.append((text, before, " ".join(t for _, t in merged[:i])))
    return found


def _content(text: str, lex: Lexicon) -> list[str]:
    return [w for w in tokens(text) if w not in lex.stopwords and (lex.language == "zh" or len(w) >= 3)]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _first(flags: Sequence[bool]) -> float:
    return float(next((i for i, flag in enumerate(flags, 1) if flag), len(flags) + 1))


def dialogue_features(transcript: Sequence[tuple[str, str]], language: str, rounds: int | None,
                      rule: RoleBreakRule) -> dict[str, float | None] | None:
    """``FEATURES`` of one dialogue over its first ``rounds`` seeker turns; ``None`` when it has no seeker turn."""
    turns = seeker_turns(transcript, rounds)
    if not turns:
        return None
    lex = lexicon(language)
    texts = [text for text, _, _ in turns]
    lengths = [len(tokens(t)) for t in texts]
    words = max(sum(lengths), 1)
    mean_length = statistics.fmean(lengths)
    earlier: set[tuple[str, ...]] = set()
    repeats: list[float | None] = []
    for i, text in enumerate(texts):
        grams = ngrams(tokens(text), 2)
        if i:
            repeats.append(sum(g in earlier for g in grams) / len(grams) if grams else None)
        earlier.update(grams)
    novelty: list[float | None] = []
    for text, _, said in turns:
        content, seen = _content(text, lex), set(_content(said, lex))
        novelty.append(sum(w not in seen for w in content) / len(content) if content else None)
    advised = [lex.has("agreement", text) for text, before, _ in turns if before and lex.has("advice", before)]
    return {
        "words_per_turn": mean_length,
        "length_spread": statistics.pstdev(lengths) / mean_length if mean_length else 0.0,
        "questions": _share(["?" in t or "？" in t for t in texts]),
        "first_person": sum(lex.count("first_person", t) for t in texts) / words,
        "emotion_words": sum(lex.count("emotion", t) for t in texts) / words,
        "hedges": _share([lex.has("hedges", t) for t in texts]),
        "new_words": _mean(novelty),
        "parroting": _mean([overlap(text, before) if before else None for text, before, _ in turns]),
        "self_repetition": _mean(repeats),
        "role_slips": _share([rule.find(t) is not None for t in texts]),
        "unpunctuated": _share([_FINAL.search(t) is None for t in texts]),
        "thanks": _share([lex.has("thanks", t) for t in texts]),
        "relief_turn": _first([lex.has("relief", t) for t in texts]),
        "agreement": _share(advised) if advised else None,
        "pushback": _share([lex.has("pushback", t) for t in texts]),
        "disclosure_turn": _first([lex.has("problem", t) for t in texts]),
    }


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags)


def seeker_turn_count(transcript: Sequence[tuple[str, str]]) -> int:
    """How many seeker turns ``transcript`` has once consecutive utterances are merged."""
    return sum(role == SEEKER for role, _ in merge_turns(transcript))


def detect_language(texts: Sequence[str]) -> str:
    """``zh`` when CJK characters make up at least a third of the letters of ``texts``, else ``en``."""
    letters = [c for text in texts for c in text if c.isalpha()]
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in letters)
    return "zh" if letters and cjk * 3 >= len(letters) else "en"
