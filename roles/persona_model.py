"""What a persona is: its validated dataclasses, the names its files may use, and its errors.

``esc_eval.roles.personas`` reads persona files into these; ``Persona.render`` compiles one, with the
seeker's current state, into the text appended to the protocol's seeker system prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from esc_eval.roles.cards import LANGUAGES, RoleCard
from esc_eval.roles.persona_text import card_facts, cue_pattern, fill

SUFFIXES = (".yaml", ".yml")
LEVELS = ("low", "medium", "high")
LENGTHS = ("short", "medium", "long")
REGISTERS = ("casual", "formal")
CUE_KINDS = ("empathy", "advice")
LEAVING = ("satisfied", "unheard", "advice_repeated")
RISK_KINDS = ("passive_ideation", "active_ideation", "self_harm", "harmed_by_other", "medical_emergency")
"""What a risk persona's hidden risk is about (``risk.kind``); docs/safety.md."""
RISK_LEVELS = ("moderate", "high", "imminent")
DISCLOSURE_STYLES = ("direct", "indirect")
RISK_TEXTS = ("disclose", "on_asked", "on_ignored", "on_resources")
"""A risk persona's sentences per language: the disclosure, and its reactions afterwards."""
"""Why a seeker leaves; ``phrases`` holds a ``leave_<why>`` sentence for each."""
DISTRESS_MAX = 10
DEFAULT_ROLE_BREAK_RETRIES = 2
"""Retries of a role-breaking seeker reply when neither the persona nor the run sets them."""
BASE = "_base"
ALL = "all"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

PHRASES = (
    "header", "emotion", "disclosure_none", "disclosure_some", "disclosure_all",
    *(f"openness_{level}" for level in LEVELS), *(f"resistance_{level}" for level in LEVELS),
    *(f"length_{length}" for length in LENGTHS), *(f"register_{register}" for register in REGISTERS),
    *(f"language_{lang}" for lang in LANGUAGES), *(f"leave_{why}" for why in LEAVING),
)
"""Every sentence template a persona compiles into; ``_base.yaml`` gives each in each language."""



class PersonaError(ValueError):
    """A persona file or name is invalid; the message names the file (or name) and the field."""

    def __init__(self, source: str, message: str, *, field: str | None = None):
        where = source if field is None else f"{source}: field '{field}'"
        super().__init__(f"{where}: {message}")
        self.source, self.field = source, field


class UnknownPersona(PersonaError):
    """No built-in, file, directory entry or plugin has this name; the message says what is known."""

    def __init__(self, name: str, message: str):
        ValueError.__init__(self, message)
        self.source, self.field, self.name = name, None, name


@dataclass(frozen=True, slots=True)
class Emotion:
    start: int = 5
    on_empathy: int = 0
    on_advice: int = 0
    on_neither: int = 0
    drift: int = 0
    show: bool = True


@dataclass(frozen=True, slots=True)
class Style:
    length: str | None = None
    register: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    marker: str = "[END]"
    when_satisfied: int | None = None
    when_advice_repeated: int | None = None
    after_unhelpful: int | None = None

    @property
    def active(self) -> bool:
        """Some rule can make the seeker leave."""
        return any(v is not None for v in (self.when_satisfied, self.when_advice_repeated, self.after_unhelpful))


@dataclass(frozen=True, slots=True)
class RoleBreakRule:
    """Seeker replies that drop the role: ``find`` names the cue; ``reminder`` is added to a retried request.

    ``retries``: how often such a reply is asked for again; ``None`` defers to the run's setting.
    """

    cues: Mapping[str, tuple[str, ...]]
    reminder: Mapping[str, str]
    retries: int | None = None
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        cues = [c for lang in self.cues.values() for c in lang]
        object.__setattr__(self, "_pattern", cue_pattern(cues, whole_words=True) if cues else None)

    def find(self, text: str) -> str | None:
        """The first cue ``text`` holds (any language, case-insensitive), or ``None``."""
        if self._pattern is None:
            return None
        found = self._pattern.search(text.lower())
        return found.group(0) if found else None

    def reminder_for(self, language: str) -> str:
        return self.reminder.get(language) or next(iter(self.reminder.values()), "")


@dataclass(frozen=True, slots=True)
class Risk:
    """A risk persona's hidden ground truth: what the risk is, how and when the seeker discloses it.

    ``round`` is the seeker reply (1-based) that discloses it; ``texts`` holds, per language,
    the disclosure instruction and how the seeker reacts afterwards when the supporter asks
    directly, ignores it, or offers resources (``RISK_TEXTS``).
    """

    kind: str
    level: str
    style: str
    round: int
    texts: Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Persona:
    """A validated persona (``load_persona``); ``spec`` is the merged file content, for the record."""

    name: str
    description: str
    source: str
    emotion: Emotion
    reveal: tuple[int | None, ...] | None
    openness: str | None
    resistance: str | None
    style: Style
    ending: Ending
    directives: Mapping[str, str]
    round_directives: tuple[tuple[int, Mapping[str, str]], ...]
    cues: Mapping[str, Mapping[str, tuple[str, ...]]]
    role_break: RoleBreakRule
    emotion_labels: Mapping[str, tuple[tuple[int, str], ...]]
    phrases: Mapping[str, Mapping[str, str]]
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    risk: Risk | None = None
    """Set for a risk persona (``risk-…``); ``None`` for the controls."""

    @property
    def languages(self) -> tuple[str, ...]:
        """The card languages this persona has text for."""
        return tuple(lang for lang in LANGUAGES if self._missing(lang) is None)

    def require(self, languages: Iterable[str]) -> None:
        """Raise ``PersonaError`` naming the field that lacks text for one of ``languages``."""
        for lang in sorted(set(languages)):
            missing = self._missing(lang)
            if missing is not None:
                raise PersonaError(self.source, f"no text for language '{lang}' (the cards need it)", field=missing)

    def _missing(self, lang: str) -> str | None:
        if set(PHRASES) - set(self.phrases.get(lang, {})):
            return f"phrases.{lang}"
        if not self.emotion_labels.get(lang):
            return f"emotion_labels.{lang}"
        if self.directives and lang not in self.directives:
            return f"directives.{lang}"
        for round_, texts in self.round_directives:
            if lang not in texts:
                return f"round_directives.{round_}.{lang}"
        if self.risk is not None and set(RISK_TEXTS) - set(self.risk.texts.get(lang, {})):
            return f"risk.texts.{lang}"
        return None

    def allowed_facts(self, round_: int, facts: int) -> int | None:
        """Facts the seeker may have shared by reply ``round_`` (1-based); ``None`` if disclosure is free."""
        if self.reveal is None:
            return None
        value = self.reveal[min(round_, len(self.reveal)) - 1]
        return facts if value is None else min(value, facts)

    def feeling(self, distress: int, language: str) -> str:
        """The name of ``distress`` in ``language``: the label of the highest band at or below it."""
        bands = self.emotion_labels.get(language) or next(iter(self.emotion_labels.values()))
        label = bands[0][1]
        for floor, name in bands:
            if distress >= floor:
                label = name
        return label

    def risk_lines(self, round_: int, language: str) -> list[str]:
        """A risk persona's instruction for reply ``round_``: the disclosure at its round, the reactions after it."""
        if self.risk is None or round_ < self.risk.round:
            return []
        texts = self.risk.texts[language]
        if round_ == self.risk.round:
            return [texts["disclose"]]
        return [texts["on_asked"], texts["on_ignored"], texts["on_resources"]]

    def render(self, card: RoleCard, *, round: int, distress: int, leaving: str | None = None) -> str:
        """The directives for the seeker's reply number ``round``, in the card's language.

        Returns ``""`` when the persona asks nothing (the ``default`` persona), else a block
        starting with a blank line, to append to the protocol's seeker system prompt. Once
        ``leaving`` is set (satisfied, unheard, advice_repeated), only the goodbye, the
        feeling and the talk style are asked for.
        """
        lang = card.language
        self.require([lang])
        phrases = self.phrases[lang]
        lines: list[str] = []
        if leaving is not None:
            lines.append(fill(phrases[f"leave_{leaving}"], marker=self.ending.marker))
        if self.emotion.show:
            lines.append(fill(phrases["emotion"], emotion=self.feeling(distress, lang), distress=str(distress)))
        if self.reveal is not None and leaving is None:
            facts = card_facts(card)
            allowed = self.allowed_facts(round, len(facts))
            if allowed == 0:
                lines.append(phrases["disclosure_none"])
            elif allowed is not None and allowed < len(facts):
                quote = "“{}”" if lang == "zh" else '"{}"'
                sep = "；" if lang == "zh" else "; "
                lines.append(fill(
                    phrases["disclosure_some"],
                    allowed=sep.join(quote.format(f) for f in facts[:allowed]),
                    held=sep.join(quote.format(f) for f in facts[allowed:]),
                ))
            else:
                lines.append(phrases["disclosure_all"])
        attitude = () if leaving is not None else (("openness", self.openness), ("resistance", self.resistance))
        for key, value in (*attitude, ("length", self.style.length), ("register", self.style.register), ("language", self.style.language)):
            if value is not None:
                lines.append(phrases[f"{key}_{value}"])
        if leaving is None:  # a goodbye needs no more story
            if self.directives:
                lines.append(self.directives[lang])
            current = [texts for since, texts in self.round_directives if since <= round]
            if current:
                lines.append(current[-1][lang])
            lines.extend(self.risk_lines(round, lang))
        if not lines:
            return ""
        return "\n\n" + fill(phrases["header"], round=str(round)) + "\n" + "\n".join(f"- {line}" for line in lines)

