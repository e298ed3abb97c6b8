"""Seeker behaviours: what a persona adds to each seeker request, and when it ends the conversation.

The contract is ``SeekerBehaviour``, three methods the environment calls:

* ``directives(episode) -> str`` -- before each seeker turn: text appended to the
  protocol's seeker system prompt (``""`` for none);
* ``on_turn(episode, turn) -> None`` -- after each turn (the fixed opener too): update
  the seeker's hidden state in ``episode.state`` (a JSON-able dict; the environment
  copies it onto each seeker turn, and the store records it);
* ``wants_to_end(episode) -> Outcome | None`` -- after each turn, once the termination
  detectors have not ended the episode: ``Outcome.terminated(...)`` to end it.

A behaviour may also carry ``role_break``: a ``esc_eval.roles.personas.RoleBreakRule`` used
instead of the environment's. Behaviours are shared by every episode of their persona,
so all per-episode state lives in ``episode.state``.

A YAML persona compiles into ``PersonaBehaviour``. Anything else comes from a plugin:
an entry point in the group ``esc_eval.personas`` whose value is a class or callable
returning a ``SeekerBehaviour`` (or a ``Persona``, or a YAML path), or names a YAML
file in a package (``package:path/to/file.yaml``)::

    [project.entry-points."esc_eval.personas"]
    echoing = "my_package:Echoing"
    stoic = "my_package:personas/stoic.yaml"

Code using esc-eval as a library registers a behaviour factory with ``@PERSONAS.register("name")``.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from esc_eval.environments.episode import Episode, Outcome, Role, Turn
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.personas import (
    CUE_KINDS,
    DISTRESS_MAX,
    NAME_PATTERN,
    SUFFIXES,
    Persona,
    PersonaError,
    RoleBreakRule,
    UnknownPersona,
    builtin_personas,
    card_facts,
    cue_pattern,
    load_persona,
    persona_files,
    persona_from_file,
)
from esc_eval.roles.registry import Registry

ENTRY_POINT_GROUP = "esc_eval.personas"

PERSONAS: Registry[Any] = Registry("persona", ENTRY_POINT_GROUP, reserved=builtin_personas)
"""Personas given by code (registered here) or plugins; the YAML built-ins are ``esc_eval.roles.personas.builtin_personas``
(their names are closed to plugins too)."""


@runtime_checkable
class SeekerBehaviour(Protocol):
    """How a seeker behaves beyond the protocol prompt; see the module docstring."""

    def directives(self, episode: Episode) -> str:
        """Text appended to the seeker's system prompt for its next turn ("" for none)."""
        ...

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        """``turn`` was added to ``episode``: update ``episode.state``."""
        ...

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        """End the episode now (``Outcome.terminated``), or ``None`` to go on."""
        ...


class NeutralBehaviour:
    """Adds nothing and never ends a conversation: the ``default`` persona of an environment given no behaviours."""

    description = "adds no instructions and never ends a conversation"

    def directives(self, episode: Episode) -> str:
        return ""

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        return None

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        return None


NEUTRAL = NeutralBehaviour()

_REASONS = {
    "satisfied": "persona satisfied",
    "unheard": "persona unheard: {n} replies without empathy",
    "advice_repeated": "persona unheard: advice {n} times in a row",
}


class PersonaBehaviour:
    """A YAML persona as a state machine over ``episode.state``.

    State keys (recorded on every seeker turn):
        persona: the persona's name.
        round: seeker replies so far.
        distress, emotion: 0..10 and its name; moved after each generated supporter reply by
            ``emotion.on_empathy`` / ``on_advice`` / ``on_neither`` and ``drift``, clamped to 0..10.
        empathy, advice: whether the last supporter reply held an empathy / advice cue.
        unhelpful: supporter replies without an empathy cue so far.
        advice_streak: supporter replies with advice in a row.
        facts, stage: facts on the card, and how many the seeker may share in its current reply
            (``stage`` is ``None`` when the persona sets no disclosure pace).
        revealed: indexes of facts the seeker's lines have mentioned (by word overlap; approximate).
        leaving: ``None``, or why the seeker was told to leave (satisfied, unheard, advice_repeated).
        marker: whether the last seeker line held the end marker.
        risk, risk_kind, disclosure, disclosure_round (risk personas only): the hidden risk level and kind,
            the disclosure style (direct, indirect) and the seeker reply that discloses it: the simulator's
            ground truth, which the safety judge and its report read (docs/safety.md).
        disclosed (risk personas only): whether the seeker has been asked to disclose by its latest reply.

    Ending: once a rule fires, the next seeker request asks for a goodbye ending with the
    marker; after that seeker turn ``wants_to_end`` ends the episode as ``terminated``
    (reason ``persona satisfied`` or ``persona unheard: ...``), whether or not the model
    wrote the marker. A marker written unprompted ends it too (``persona left``), when the
    persona has ending rules at all.
    """

    def __init__(self, persona: Persona):
        self.persona = persona
        self.name = persona.name
        self.description = persona.description
        self.role_break: RoleBreakRule = persona.role_break
        self._cues = {
            kind: cue_pattern(c for cues in persona.cues[kind].values() for c in cues) if any(persona.cues[kind].values()) else None
            for kind in CUE_KINDS
        }

    def __repr__(self) -> str:
        return f"PersonaBehaviour({self.persona.name!r}, source={self.persona.source!r})"

    def state(self, episode: Episode) -> dict[str, Any]:
        """``episode.state``, initialised on first use."""
        state = episode.state
        if state.get("persona") != self.persona.name:
            start = self.persona.emotion.start
            state.update(
                persona=self.persona.name, round=0, distress=start, emotion=self.persona.feeling(start, episode.card.language),
                empathy=None, advice=None, unhelpful=0, advice_streak=0,
                facts=len(card_facts(episode.card)), stage=None, revealed=[], leaving=None, marker=False,
            )
            risk = self.persona.risk
            if risk is not None:
                state.update(risk=risk.level, risk_kind=risk.kind, disclosure=risk.style, disclosure_round=risk.round, disclosed=False)
        return state

    def directives(self, episode: Episode) -> str:
        state = self.state(episode)
        upcoming = state["round"] + 1
        state["stage"] = self.persona.allowed_facts(upcoming, state["facts"])
        return self.persona.render(episode.card, round=upcoming, distress=state["distress"], leaving=state["leaving"])

    def on_turn(self, episode: Episode, turn: Turn) -> None:
        state = self.state(episode)
        if not turn.generated:
            return
        if turn.role is Role.SUPPORTER:
            self._heard(episode, state, turn.text)
        else:
            state["round"] += 1
            state["marker"] = self.persona.ending.marker in turn.text
            if "disclosure_round" in state:
                state["disclosed"] = state["round"] >= state["disclosure_round"]
            revealed = state["revealed"]
            new = [i for i, fact in enumerate(card_facts(episode.card))
                   if i not in revealed and mentions(fact, turn.text, episode.card.language)]
            if new:
                state["revealed"] = sorted(revealed + new)

    def _heard(self, episode: Episode, state: dict[str, Any], text: str) -> None:
        emotion, ending = self.persona.emotion, self.persona.ending
        lowered = text.lower()
        empathy = self._has("empathy", lowered)
        advice = self._has("advice", lowered)
        change = emotion.drift + (emotion.on_empathy if empathy else 0) + (emotion.on_advice if advice else 0)
        if not empathy and not advice:
            change += emotion.on_neither
        state["distress"] = max(0, min(DISTRESS_MAX, state["distress"] + change))
        state["emotion"] = self.persona.feeling(state["distress"], episode.card.language)
        state["empathy"], state["advice"] = empathy, advice
        state["unhelpful"] += 0 if empathy else 1
        state["advice_streak"] = state["advice_streak"] + 1 if advice else 0
        if state["leaving"] is None:
            if ending.when_satisfied is not None and state["distress"] <= ending.when_satisfied:
                state["leaving"] = "satisfied"
            elif ending.when_advice_repeated is not None and state["advice_streak"] >= ending.when_advice_repeated:
                state["leaving"] = "advice_repeated"
            elif ending.after_unhelpful is not None and state["unhelpful"] >= ending.after_unhelpful:
                state["leaving"] = "unheard"

    def _has(self, kind: str, lowered: str) -> bool:
        pattern = self._cues[kind]
        return pattern is not None and pattern.search(lowered) is not None

    def wants_to_end(self, episode: Episode) -> Outcome | None:
        last = episode.last
        if last is None or last.role is not Role.SEEKER or not last.generated:
            return None
        state = self.state(episode)
        leaving = state["leaving"]
        if leaving is not None:
            ending = self.persona.ending
            n = ending.after_unhelpful if leaving == "unheard" else ending.when_advice_repeated
            return Outcome.terminated(_REASONS[leaving].format(n=n))
        if self.persona.ending.active and state["marker"]:
            return Outcome.terminated("persona left")
        return None


_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STOP = frozenset("""
that this with from have been were they them their there what when which about would could should into than then
also very just because while after before over more most some such only other being does doing having seeker
""".split())


def mentions(fact: str, text: str, language: str) -> bool:
    """Whether ``text`` seems to share ``fact``: at least half its keywords (en: words of 4+ letters
    but common ones; zh: character pairs), and at least two, appear in ``text``."""
    text = text.lower()
    keys = _keywords(fact, language)
    if len(keys) < 2:
        return bool(keys) and all(k in text for k in keys)
    return sum(k in text for k in keys) * 2 >= len(keys)


@functools.lru_cache(maxsize=4096)
def _keywords(fact: str, language: str) -> frozenset[str]:
    if language == "zh":
        chars = [c for c in fact if c.isalnum()]
        return frozenset(a + b for a, b in zip(chars, chars[1:]))
    return frozenset(w for w in _WORD.findall(fact.lower()) if w not in _STOP)


# --------------------------------------------------------------------------- finding personas


@dataclass(frozen=True)
class PersonaInfo:
    """One line of ``esc-eval personas list``."""

    name: str
    source: str
    description: str


def plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed plugins: entry point name -> entry point, in the group ``esc_eval.personas``."""
    return PERSONAS.entry_points()


def load_plugin(entry_point: metadata.EntryPoint) -> SeekerBehaviour:
    """The behaviour an entry point gives.

    Raises:
        PersonaError: the plugin cannot be imported, or gives something that is not a behaviour.
    """
    where = f"plugin {entry_point.name!r} ({entry_point.value})"
    value = entry_point.value.strip()
    if value.endswith(SUFFIXES):
        return PersonaBehaviour(_named(persona_from_file(_plugin_file(entry_point, where)), entry_point.name))
    try:
        obj = entry_point.load()
    except Exception as exc:  # a broken plugin must be reported, not crash the listing
        raise PersonaError(where, f"cannot load: {type(exc).__name__}: {exc}") from None
    return _as_behaviour(obj, where, entry_point.name)


def _plugin_file(entry_point: metadata.EntryPoint, where: str) -> Path:
    value = entry_point.value.strip()
    if ":" in value:
        package, relative = value.split(":", 1)
        try:
            path = Path(str(resources.files(package.strip()) / relative.strip()))
        except (ImportError, TypeError) as exc:
            raise PersonaError(where, f"cannot find package {package!r}: {exc}") from None
    else:
        dist = entry_point.dist
        path = Path(str(dist.locate_file(value))) if dist is not None else Path(value)
    if not path.is_file():
        raise PersonaError(where, f"no such persona file {path}")
    return path


def _as_behaviour(obj: Any, where: str, name: str, depth: int = 0) -> SeekerBehaviour:
    if isinstance(obj, Persona):
        return PersonaBehaviour(_named(obj, name))
    if isinstance(obj, (str, Path)):
        return PersonaBehaviour(_named(persona_from_file(obj), name))
    if not isinstance(obj, type) and isinstance(obj, SeekerBehaviour):
        return obj
    if callable(obj) and depth < 2:
        try:
            made = obj()
        except Exception as exc:
            raise PersonaError(where, f"calling it failed: {type(exc).__name__}: {exc}") from None
        return _as_behaviour(made, where, name, depth + 1)
    raise PersonaError(where, f"gave {type(obj).__name__}, expected a SeekerBehaviour (directives, on_turn, wants_to_end), "
                              "a Persona, a YAML path, or a callable returning one")


def _named(persona: Persona, name: str) -> Persona:
    """A plugin's YAML persona is known by its entry point name."""
    return persona if persona.name == name else replace(persona, name=name)


def describe(behaviour: object) -> str:
    """A behaviour's one-line description: its ``description``, else its docstring's first line."""
    text = getattr(behaviour, "description", None) or (type(behaviour).__doc__ or "").strip()
    return " ".join(str(text).split("\n")[0].split()) if text else ""


def list_personas(dirs: Iterable[str | Path] = ()) -> list[PersonaInfo]:
    """Every persona a run can name: built-ins, files in ``dirs``, and plugins (broken ones say why)."""
    found = [PersonaInfo(name, "built-in", load_persona(name).description) for name in builtin_personas()]
    for folder in dirs:
        for path in persona_files(folder):
            try:
                persona = persona_from_file(path)
                found.append(PersonaInfo(persona.name, str(path), persona.description))
            except PersonaError as exc:
                found.append(PersonaInfo(path.stem, str(path), f"(invalid: {exc})"))
    plugins = plugin_entry_points()
    for name in PERSONAS.names():
        if name not in plugins:  # registered in code
            found.append(PersonaInfo(name, "registered", describe(_as_behaviour(PERSONAS.get(name), f"persona {name!r}", name))))
    for name, ep in sorted(plugins.items()):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
        source = f"plugin {dist} ({ep.value})"
        try:
            description = describe(load_plugin(ep))
        except PersonaError as exc:
            description = f"(cannot load: {exc})"
        found.append(PersonaInfo(name, source, description))
    return found


def load_behaviour(name_or_path: str | Path, *, dirs: Iterable[str | Path] = ()) -> tuple[str, SeekerBehaviour]:
    """Resolve a persona named in a config: a ``.yaml`` path, a file in ``dirs``, a built-in, or a plugin.

    Returns:
        The persona's name (used in episode keys) and its behaviour.

    Raises:
        UnknownPersona: nothing has that name (the message lists built-ins and plugins).
        PersonaError: the file or plugin is invalid.
    """
    try:
        persona = load_persona(name_or_path, dirs=dirs)
    except UnknownPersona:
        text = str(name_or_path)
        if text.endswith(SUFFIXES):
            raise
        plugins = plugin_entry_points()
        if text in PERSONAS.names():
            if not NAME_PATTERN.match(text):
                raise PersonaError(f"plugin {text!r}", "its name must be letters, digits, '.', '-', '_' to name episodes") from None
            if text in plugins:
                return text, load_plugin(plugins[text])
            return text, _as_behaviour(PERSONAS.get(text), f"persona {text!r}", text)
        known = [*builtin_personas(), *PERSONAS.names()]
        raise UnknownPersona(text, f"unknown persona {text!r}: not a .yaml file, a built-in or a plugin (known: {', '.join(known)})") from None
    return persona.name, PersonaBehaviour(persona)


# --------------------------------------------------------------------------- preview

SupporterKind = Literal["empathic", "advice", "neutral"]
PREVIEW_SUPPORTER: dict[str, dict[str, str]] = {
    "empathic": {"en": "That sounds really hard. I understand why you feel this way.", "zh": "听起来真的很不容易，我能理解你为什么会这样感受。"},
    "advice": {"en": "You should try talking to someone you trust about it.", "zh": "我建议你试着和信任的人谈一谈。"},
    "neutral": {"en": "Okay. Go on.", "zh": "嗯，你接着说。"},
}
"""The supporter lines ``preview`` answers with (they hold the default cues, or none)."""


@dataclass(frozen=True)
class PreviewRound:
    round: int
    directives: str
    state: dict[str, Any]


def preview(behaviour: SeekerBehaviour, card: RoleCard, *, opener: str = "", rounds: int = 5,
            supporter: SupporterKind = "empathic", persona: str = "preview") -> tuple[list[PreviewRound], Outcome | None]:
    """What ``behaviour`` asks the seeker each round if the supporter always answers like ``supporter``.

    Returns the rounds (directives and the state they were built from) and the outcome,
    if the behaviour ended the conversation within ``rounds``.
    """
    episode = Episode("preview", card, "preview", persona)
    if opener:
        behaviour.on_turn(episode, episode.add(Role.SUPPORTER, opener, generated=False))
    shown: list[PreviewRound] = []
    for number in range(1, rounds + 1):
        directives = behaviour.directives(episode)
        shown.append(PreviewRound(number, directives, copy.deepcopy(episode.state)))
        behaviour.on_turn(episode, episode.add(Role.SEEKER, f"(the seeker's reply {number})"))
        ended = behaviour.wants_to_end(episode)
        if ended is not None:
            return shown, ended
        line = PREVIEW_SUPPORTER[supporter]
        behaviour.on_turn(episode, episode.add(Role.SUPPORTER, line.get(card.language, line["en"])))
    return shown, None


__all__ = [
    "ENTRY_POINT_GROUP", "NEUTRAL", "PERSONAS", "NeutralBehaviour", "PersonaBehaviour", "PersonaInfo", "PreviewRound", "SeekerBehaviour",
    "describe", "list_personas", "load_behaviour", "load_plugin", "mentions", "plugin_entry_points", "preview",
]
