"""The run's plan: everything a run needs that can be checked before a store exists.

Cards, protocol, personas and the judge profile are loaded and checked here; episode keys
and seeds are derived here, so the same config always plans the same episodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.profiles import JudgeProfile, ProfileError, load_profile
from esc_eval.agents.judge.safety import SafetyRubric, SafetyRubricError
from esc_eval.environments.behaviours import SeekerBehaviour, load_behaviour
from esc_eval.environments.termination import TERMINATION, AnyOf, Detector
from esc_eval.environments.turn_policies import TURN_POLICIES, TurnPolicy
from esc_eval.roles.cards import RoleCard
from esc_eval.roles.loaders import builtin_cards, load_cards
from esc_eval.roles.personas import RoleBreakRule, UnknownPersona, base_role_break
from esc_eval.roles.templates import ProtocolError, SeekerProtocol, load_protocol
from esc_eval.runs.config import Config, ConfigError
from esc_eval.runs.config_sections import CardsSection, EndpointConfig, SafetySection, SeekerSection
from esc_eval.runs.store import PlannedEpisode
from esc_eval.runs.store.records import episode_key


def episode_seed(run_seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}|{key}".encode()).digest()[:4], "big")


def load_run_cards(config: Config) -> list[RoleCard]:
    return load_section_cards(config.cards)


def load_section_cards(section: CardsSection) -> list[RoleCard]:
    """The cards a ``[cards]`` section names; also read back from a store's recorded config (``seeker eval``)."""
    cards = load_cards(section.path, language=section.language) if section.path else builtin_cards(section.language)
    return cards[: section.limit] if section.limit else cards


@dataclass(frozen=True)
class Seeker:
    """One seeker of a run: its section, the protocol it plays with and its personas (names, in order).

    ``role`` names it for backends, events and test overrides: ``seeker`` in a one-seeker run,
    ``seeker:NAME`` among several (a supporter may have the same name).
    """

    section: SeekerSection
    protocol: SeekerProtocol
    personas: tuple[str, ...]
    role: str = "seeker"

    @property
    def label(self) -> str:
        return self.section.label


@dataclass(frozen=True)
class SafetyPlan:
    """The safety judge of a run: its settings, the endpoint it resolved to, and its rubric."""

    section: SafetySection
    endpoint: EndpointConfig
    rubric: SafetyRubric


@dataclass
class RunPlan:
    """Everything a run needs that can be checked before anything is written."""

    config: Config
    cards: list[RoleCard]
    protocol: SeekerProtocol
    profile: JudgeProfile | None = None
    behaviours: dict[str, SeekerBehaviour] = field(default_factory=dict)
    """Persona name -> behaviour, in the config's order (every seeker's personas); episode keys use these names."""
    seekers: dict[str, Seeker] = field(default_factory=dict)
    """Seeker label (``SeekerSection.label``) -> what it plays with; empty: one seeker playing ``protocol``."""
    safety: SafetyPlan | None = None
    """The safety judge, when ``[safety]`` is present or a risk persona is planned (docs/safety.md)."""

    @classmethod
    def prepare(cls, config: Config) -> RunPlan:
        """Load cards, protocol, personas and judge profile; raises ``CardError``/``ProtocolError``/``PersonaError``/``ConfigError``."""
        cards = load_run_cards(config)
        profile = load_judge_profile(config, {c.language for c in cards}) if config.judge else None
        behaviours, personas = load_run_behaviours(config, {c.language for c in cards})
        sections = config.seeker_sections
        seekers = {s.label: Seeker(s, seeker_protocol(config, i), personas[i], f"seeker:{s.name}" if len(sections) > 1 else "seeker")
                   for i, s in enumerate(sections)}
        safety = load_safety(config, behaviours, {c.language for c in cards})
        return cls(config, cards, seekers[config.seeker.label].protocol, profile, behaviours, seekers, safety)

    def seeker_plans(self) -> list[Seeker]:
        """Every seeker of the run with its protocol and personas, in the config's order."""
        if self.seekers:
            return list(self.seekers.values())
        return [Seeker(self.config.seeker, self.protocol, tuple(self.behaviours) or self.config.seeker.persona_names)]

    def personas(self) -> dict[str, Any]:
        """What each persona of the run says (a YAML persona's merged spec; a plugin's class), for the record."""
        return {name: getattr(getattr(b, "persona", None), "spec", None) or type(b).__qualname__ for name, b in self.behaviours.items()}

    def fingerprint(self) -> str:
        """The config's fingerprint plus the personas: editing a persona file between a run and its resume counts."""
        text = json.dumps([self.config.fingerprint(), self.personas()], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def episodes(self) -> Iterator[tuple[PlannedEpisode, RoleCard]]:
        """The grid repeats x cards x seekers x their personas x supporters, in that nesting order (supporters innermost).

        Card-major with the supporters round-robin, so any prefix of the plan (a run
        interrupted, stopped with Ctrl-C, or watched live) has every supporter on the same
        cards, seekers and personas: the partial leaderboard compares like with like. Keys do
        not depend on the order, so stores planned in another order resume as they were.
        """
        run = self.config.run
        seekers = self.seeker_plans()
        several = len(seekers) > 1
        ordinal = 0
        for repeat in range(run.repeats):
            for index, card in enumerate(self.cards):
                for seeker in seekers:
                    for persona in seeker.personas:
                        for supporter in self.config.supporters:
                            key = episode_key(supporter.name, persona, f"{index:05d}-{card.id}", f"s{run.seed}", repeat,
                                              seeker.label if several else None)
                            yield PlannedEpisode(
                                key, ordinal, index, card.id, card.language, card.category, card.source,
                                supporter.name, persona, repeat, episode_seed(run.seed, key), seeker.label,
                            ), card
                            ordinal += 1

    def role_break(self, seeker: SeekerSection | None = None) -> RoleBreakRule:
        """The built-in role-break detector with ``seeker``'s (default: ``[seeker]``) ``role_break_retries``."""
        return base_role_break((seeker or self.config.seeker).role_break_retries)

    def termination(self) -> Detector:
        """The ``[run]`` detectors (named or shorthand), in order; any that fires ends the episode."""
        detectors = [TERMINATION.create(spec) for spec in self.config.run.termination_specs()]
        return detectors[0] if len(detectors) == 1 else AnyOf(tuple(detectors))

    def turn_policy(self) -> TurnPolicy:
        return TURN_POLICIES.create(self.config.run.turn_policy_spec())

    def plugins(self) -> dict[str, Any]:
        """The resolved specs of every named extension the run uses, for the store's meta (``plugins``)."""
        return {
            "backends": {role: endpoint.backend for role, endpoint in self._roles()},
            "turn_policy": self.config.run.turn_policy_spec(),
            "termination": self.config.run.termination_specs(),
            "personas": list(self.behaviours) or list(self.config.seeker.persona_names),
        }

    def _roles(self) -> Iterator[tuple[str, Any]]:
        for seeker in self.seeker_plans():
            yield seeker.role, seeker.section
        for supporter in self.config.supporters:
            yield supporter.name, supporter
        if self.config.judge is not None:
            yield "judge", self.config.judge


def seeker_protocol(config: Config, index: int) -> SeekerProtocol:
    """Seeker ``index``'s protocol; a name that is neither a file nor a built-in is named by file, section and field."""
    given = config.seeker_sections[index].protocol
    try:
        return load_protocol(given)
    except ProtocolError as exc:
        if Path(given).is_file():  # the file's own fault: its message names the file and the place in it
            raise
        raise ProtocolError(f"{config.path}: {config.seeker_where(index)} field 'protocol': {exc}") from None


def load_run_behaviours(config: Config, languages: set[str]) -> tuple[dict[str, SeekerBehaviour], list[tuple[str, ...]]]:
    """The personas of every seeker as behaviours, each checked to have text for the cards' languages.

    Returns persona name -> behaviour over all seekers (a persona two seekers name is loaded once),
    and each seeker's persona names in the config's order.

    Raises:
        ConfigError: a persona name is unknown (naming ``[seeker]`` field ``persona``/``personas``).
        PersonaError: a persona file or plugin is invalid (naming the file and the field).
    """
    behaviours: dict[str, SeekerBehaviour] = {}
    given_as: dict[str, str] = {}
    personas: list[tuple[str, ...]] = []
    for i, seeker in enumerate(config.seeker_sections):
        where = f"{config.path}: {config.seeker_where(i)} field '{seeker.persona_field}'"
        names: list[str] = []
        for given in seeker.persona_names:
            try:
                name, behaviour = load_behaviour(given)
            except UnknownPersona as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if name in names or given_as.get(name, given) != given:
                raise ConfigError(f"{where}: {given!r} is also named {name!r}; persona names must differ")
            names.append(name)
            if name in behaviours:
                continue
            persona = getattr(behaviour, "persona", None)
            if persona is not None:
                persona.require(languages)
            behaviours[name], given_as[name] = behaviour, given
        personas.append(tuple(names))
    return behaviours, personas


def risk_personas(behaviours: dict[str, SeekerBehaviour]) -> list[str]:
    """The planned personas that carry a hidden risk (``risk-…`` and any persona with a ``risk`` section)."""
    return [name for name, b in behaviours.items() if getattr(getattr(b, "persona", None), "risk", None) is not None]


def load_safety(config: Config, behaviours: dict[str, SeekerBehaviour], languages: set[str]) -> SafetyPlan | None:
    """The safety judge's plan: on with ``[safety]`` or a planned risk persona; its endpoint defaults to ``[judge]``'s.

    Raises:
        ConfigError: a risk persona is planned with neither ``[safety]`` nor ``[judge]`` (naming the missing
            section), the endpoint is incomplete, or the rubric or resources file is unusable.
    """
    risky = risk_personas(behaviours)
    if config.safety is None and not risky:
        return None
    if config.safety is None and config.judge is None:
        raise ConfigError(f"{config.path}: missing section [safety] (risk persona {risky[0]!r} is planned and there is no [judge] "
                          "whose endpoint it could use)")
    if config.run.executor != "local":
        why = "[safety] is set" if config.safety is not None else f"risk persona {risky[0]!r} is planned"
        raise ConfigError(f"{config.path}: [run] field 'executor': the safety judge runs with the local executor only ({why})")
    section = config.safety or SafetySection()
    endpoint = section.endpoint(config.judge)
    from esc_eval.runs.config_model import validate  # pydantic: only when a config is checked

    validate(f"{config.path}: [safety]", {k: v for k, v in asdict(endpoint).items() if v is not None}, EndpointConfig)
    if section.samples > 1 and not endpoint.temperature:
        raise ConfigError(f"{config.path}: [safety] field 'samples': {section.samples} samples need a 'temperature' above 0")
    try:
        rubric = SafetyRubric.load(section.rubric, section.resources)
        rubric.require(sorted(languages))
    except SafetyRubricError as exc:
        raise ConfigError(f"{config.path}: [safety]: {exc}") from None
    return SafetyPlan(section, endpoint, rubric)


def load_judge_profile(config: Config, languages: set[str]) -> JudgeProfile:
    """The judge's profile, checked against the run's languages and ``[judge.models]``."""
    assert config.judge is not None
    try:
        profile = load_profile(config.judge.profile)
    except ProfileError as exc:
        raise ConfigError(f"{config.path}: [judge] field 'profile': {exc}") from None
    missing = sorted(languages - set(profile.languages))
    if missing:
        raise ConfigError(f"{config.path}: [judge] field 'profile': {profile.name} has no rubric for language {', '.join(missing)}")
    unknown = sorted(set(config.judge.models) - set(profile.keys))
    if unknown:
        raise ConfigError(f"{config.path}: [judge.models]: unknown dimension {', '.join(unknown)} (known: {', '.join(profile.keys)})")
    return profile
