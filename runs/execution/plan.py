"""The run's plan: everything a run needs that can be checked before a store exists.

Cards, protocol, personas and the judge profile are loaded and checked here; episode keys
and seeds are derived here, so the same config always plans the same episodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.judge.profiles import JudgeProfile, ProfileError, load_profile
from environments.behaviours import SeekerBehaviour, load_behaviour
from environments.termination import TERMINATION, AnyOf, Detector
from environments.turn_policies import TURN_POLICIES, TurnPolicy
from roles.cards import RoleCard
from roles.loaders import builtin_cards, load_cards
from roles.personas import RoleBreakRule, UnknownPersona, base_role_break
from roles.templates import SeekerProtocol, load_protocol
from runs.config import Config, ConfigError
from runs.config_sections import CardsSection
from runs.store import PlannedEpisode


def episode_key(card_index: int, card: RoleCard, supporter: str, persona: str, seed: int, repeat: int) -> str:
    """Deterministic and readable: the same plan always yields the same keys."""
    return f"{supporter}/{persona}/{card_index:05d}-{card.id}/s{seed}/r{repeat}"


def episode_seed(run_seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}|{key}".encode()).digest()[:4], "big")


def load_run_cards(config: Config) -> list[RoleCard]:
    return load_section_cards(config.cards)


def load_section_cards(section: CardsSection) -> list[RoleCard]:
    """The cards a ``[cards]`` section names; also read back from a store's recorded config (``seeker eval``)."""
    cards = load_cards(section.path, language=section.language) if section.path else builtin_cards(section.language)
    return cards[: section.limit] if section.limit else cards


@dataclass
class RunPlan:
    """Everything a run needs that can be checked before anything is written."""

    config: Config
    cards: list[RoleCard]
    protocol: SeekerProtocol
    profile: JudgeProfile | None = None
    behaviours: dict[str, SeekerBehaviour] = field(default_factory=dict)
    """Persona name -> behaviour, in the config's order; episode keys use these names."""

    @classmethod
    def prepare(cls, config: Config) -> RunPlan:
        """Load cards, protocol, personas and judge profile; raises ``CardError``/``ProtocolError``/``PersonaError``/``ConfigError``."""
        cards = load_run_cards(config)
        profile = load_judge_profile(config, {c.language for c in cards}) if config.judge else None
        behaviours = load_run_behaviours(config, {c.language for c in cards})
        return cls(config, cards, load_protocol(config.seeker.protocol), profile, behaviours)

    def personas(self) -> dict[str, Any]:
        """What each persona of the run says (a YAML persona's merged spec; a plugin's class), for the record."""
        return {name: getattr(getattr(b, "persona", None), "spec", None) or type(b).__qualname__ for name, b in self.behaviours.items()}

    def fingerprint(self) -> str:
        """The config's fingerprint plus the personas: editing a persona file between a run and its resume counts."""
        text = json.dumps([self.config.fingerprint(), self.personas()], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def episodes(self) -> Iterator[tuple[PlannedEpisode, RoleCard]]:
        """The grid repeats x cards x personas x supporters, in that nesting order (supporters innermost).

        Card-major with the supporters round-robin, so any prefix of the plan (a run
        interrupted, stopped with Ctrl-C, or watched live) has every supporter on the same
        cards and personas: the partial leaderboard compares like with like. Keys do not
        depend on the order, so stores planned in another order resume as they were.
        """
        run = self.config.run
        personas = list(self.behaviours) or list(self.config.seeker.persona_names)
        ordinal = 0
        for repeat in range(run.repeats):
            for index, card in enumerate(self.cards):
                for persona in personas:
                    for supporter in self.config.supporters:
                        key = episode_key(index, card, supporter.name, persona, run.seed, repeat)
                        yield PlannedEpisode(
                            key, ordinal, index, card.id, card.language, card.category, card.source,
                            supporter.name, persona, repeat, episode_seed(run.seed, key),
                        ), card
                        ordinal += 1

    def role_break(self) -> RoleBreakRule:
        """The built-in role-break detector with ``[seeker] role_break_retries``."""
        return base_role_break(self.config.seeker.role_break_retries)

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
        yield "seeker", self.config.seeker
        for supporter in self.config.supporters:
            yield supporter.name, supporter
        if self.config.judge is not None:
            yield "judge", self.config.judge


def load_run_behaviours(config: Config, languages: set[str]) -> dict[str, SeekerBehaviour]:
    """The run's personas as behaviours, each checked to have text for the cards' languages.

    Raises:
        ConfigError: a persona name is unknown (naming ``[seeker]`` field ``persona``/``personas``).
        PersonaError: a persona file or plugin is invalid (naming the file and the field).
    """
    field_name = config.seeker.persona_field
    behaviours: dict[str, SeekerBehaviour] = {}
    for given in config.seeker.persona_names:
        try:
            name, behaviour = load_behaviour(given)
        except UnknownPersona as exc:
            raise ConfigError(f"{config.path}: [seeker] field '{field_name}': {exc}") from None
        if name in behaviours:
            raise ConfigError(f"{config.path}: [seeker] field '{field_name}': {given!r} is also named {name!r}; persona names must differ")
        persona = getattr(behaviour, "persona", None)
        if persona is not None:
            persona.require(languages)
        behaviours[name] = behaviour
    return behaviours


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
