"""Run configuration: TOML in, validated frozen dataclasses out, one clear error per problem.

Sections: ``[run]``, ``[cards]``, ``[seeker]`` (or ``[[seekers]]``, several named seekers
compared in one run), ``[[supporters]]``, ``[judge]`` (with ``[judge.models]``). Unknown keys and wrong types are errors that name the file, the
field and the value. Secrets are never in the file: ``api_key_env`` names the
environment variable that holds a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from esc_eval.runs.config_sections import (  # noqa: F401  (re-exported: the config's public API)
    EXECUTORS,
    CardsSection,
    ConfigError,
    EndpointConfig,
    JudgeSection,
    RunSection,
    SafetySection,
    SeekerSection,
    SupporterSection,
)


@dataclass(frozen=True)
class Config:
    path: str
    run: RunSection
    cards: CardsSection
    seeker: SeekerSection
    supporters: tuple[SupporterSection, ...]
    judge: JudgeSection | None
    seekers: tuple[SeekerSection, ...] = ()
    """The ``[[seekers]]`` tables (empty with ``[seeker]``); ``seeker`` is then the first of them."""
    safety: SafetySection | None = None
    """``[safety]`` as written; a risk persona turns the safety judge on without it (``RunPlan.safety``)."""
    as_written: Config | None = field(default=None, compare=False, repr=False)
    """The config before its relative paths were resolved (``resolve_paths``); the fingerprint reads it."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, as_written=None))
        data.pop("path")
        data.pop("as_written")
        return data

    @property
    def seeker_sections(self) -> tuple[SeekerSection, ...]:
        """Every seeker of the run: the ``[[seekers]]`` tables, or the one ``[seeker]``."""
        return self.seekers or (self.seeker,)

    def seeker_where(self, index: int) -> str:
        """How error messages name seeker ``index``: ``[seeker]`` or ``[seekers[INDEX]]`` (``section_name``)."""
        return section_name("seekers", index) if self.seekers else "[seeker]"

    def endpoints(self) -> Iterator[tuple[str, EndpointConfig]]:
        """Each endpoint section with its name as error messages give it."""
        for i, seeker in enumerate(self.seeker_sections):
            yield self.seeker_where(i), seeker
        for i, supporter in enumerate(self.supporters):
            yield section_name("supporters", i), supporter
        if self.judge is not None:
            yield "[judge]", self.judge

    def fingerprint(self) -> str:
        """What decides the results: changing it between a run and its resume is refused.

        Computed from the paths as written, so the same file resumed from another folder,
        or a store started before paths were resolved against the config, keeps its fingerprint.
        """
        if self.as_written is not None:
            return self.as_written.fingerprint()
        data = self.to_dict()
        for volatile in ("store", "concurrency", "name", "executor", "ray_address", "workers", *COST_FIELDS):
            data["run"].pop(volatile)
        if not data["seekers"]:  # added later: a single [seeker] keeps older fingerprints
            data.pop("seekers")
        if data["safety"] is None:  # added later: configs without [safety] keep older fingerprints
            data.pop("safety")
        else:
            for volatile in ("max_connections", "timeout", "max_attempts", "max_retry_time", "base_url", "api_key_env", "price"):
                data["safety"].pop(volatile)
        for section in [data["seeker"], *data.get("seekers", ()), data["judge"] or {}, *data["supporters"]]:
            if not section.get("name", True):  # [seeker] name, added later: unset, keep older fingerprints
                section.pop("name")
            for volatile in ("max_connections", "timeout", "max_attempts", "max_retry_time", "base_url", "api_key_env", "price"):
                section.pop(volatile, None)
            for added in ("lora", "options"):  # at their defaults, keep older fingerprints
                if not section.get(added):
                    section.pop(added, None)
        for added in ("termination", "turn_policy"):  # at their defaults, keep older fingerprints
            if not data["run"].get(added):
                data["run"].pop(added, None)
        for added, default in (("personas", ()), ("role_break_retries", 2)):  # at their defaults, keep older fingerprints
            if data["seeker"].get(added) in (default, list(default) if isinstance(default, tuple) else default):
                data["seeker"].pop(added, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path, *, judge_only: bool = False) -> Config:
    """Read and validate a TOML config; ``judge_only`` needs just ``[judge]`` (for ``esc-eval judge``)."""
    path = Path(path)
    return resolve_paths(parse_config(read_toml(path), str(path), judge_only=judge_only), path.parent)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; ``ConfigError`` naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def check_api_keys(config: Config, environ: Mapping[str, str] = os.environ) -> None:
    """Every variable an ``api_key_env`` names must hold a key before anything is sent.

    Without it requests would go out unauthenticated, cost money and fail with 401 one by one.
    The message names the variable, never a value.
    """
    for section, endpoint in config.endpoints():
        check_api_key(config.path, section, endpoint, environ)


def check_api_key(path: str, section: str, endpoint: EndpointConfig, environ: Mapping[str, str] = os.environ) -> None:
    """The variable ``endpoint.api_key_env`` names holds a key; ``ConfigError`` says whether it is unset or empty."""
    name = endpoint.api_key_env
    if name is None or environ.get(name, "").strip():
        return
    state = "is not set" if name not in environ else "is empty" if not environ[name] else "holds only blanks"
    raise ConfigError(f"{path}: {section} field 'api_key_env': environment variable {name} {state}")


def parse_config(raw: dict[str, Any], name: str = "<config>", *, judge_only: bool = False) -> Config:
    known = {"run", "cards", "seeker", "seekers", "supporters", "judge", "safety"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}: unknown section [{key}] (known: {', '.join(sorted(known))})")
    refuse_shadowing_plugins(name)
    judge = parse_section(name, "judge", raw["judge"], JudgeSection) if "judge" in raw else None
    if judge_only:
        if judge is None:
            raise ConfigError(f"{name}: missing section [judge]")
        return Config(name, RunSection(), CardsSection(), SeekerSection(), (), judge)
    run = parse_section(name, "run", raw.get("run", {}), RunSection)
    cards = parse_section(name, "cards", raw.get("cards", {}), CardsSection)
    seekers = _parse_seekers(name, raw)
    supporters_raw = raw.get("supporters")
    if not isinstance(supporters_raw, list) or not supporters_raw:
        raise ConfigError(f"{name}: [[supporters]] must list at least one supporter")
    supporters = tuple(parse_section(name, f"supporters[{i}]", s, SupporterSection) for i, s in enumerate(supporters_raw))
    _check_names(name, "supporters", [s.name for s in supporters])
    _check_plugins(name, raw.get("run", {}), run)
    safety = parse_section(name, "safety", raw["safety"], SafetySection) if "safety" in raw else None
    return Config(name, run, cards, seekers[0], supporters, judge, seekers if "seekers" in raw else (), safety)


def _parse_seekers(name: str, raw: dict[str, Any]) -> tuple[SeekerSection, ...]:
    """``[seeker]`` as a one-tuple, or the named ``[[seekers]]`` tables; never both."""
    if "seeker" in raw and "seekers" in raw:
        raise ConfigError(f"{name}: sections [seeker] and [[seekers]] both given; use [seeker] for one seeker "
                          "or [[seekers]] (each with a 'name') to compare several, not both")
    if "seeker" in raw:
        return (parse_section(name, "seeker", raw["seeker"], SeekerSection),)
    if "seekers" not in raw:
        raise ConfigError(f"{name}: missing section [seeker]")
    listed = raw["seekers"]
    if not isinstance(listed, list) or not listed:
        raise ConfigError(f"{name}: [[seekers]] must list at least one seeker")
    seekers = tuple(parse_section(name, f"seekers[{i}]", s, SeekerSection) for i, s in enumerate(listed))
    _check_names(name, "seekers", [s.name for s in seekers])
    return seekers


def section_name(tables: str, index: int) -> str:
    """How every message names table ``index`` (from 0) of an array of tables: ``[supporters[1]]``, as in ``[run]``."""
    return f"[{tables}[{index}]]"


def _check_names(name: str, tables: str, names: list[str]) -> None:
    """Every table of the array ``tables`` has a distinct name usable in episode keys and file names."""
    for i, given in enumerate(names):
        where = f"{name}: {section_name(tables, i)} field 'name'"
        if not given.strip() or not all(c.isalnum() or c in "-_." for c in given):
            raise ConfigError(f"{where}: must be a non-empty name of letters, digits, '-', '_', '.', got {given!r}")
        if names.index(given) != i:
            raise ConfigError(f"{where}: duplicate name {given!r}")


def refuse_shadowing_plugins(name: str) -> None:
    """An installed plugin named like a built-in makes every config ambiguous: refuse it, naming both (exit 2)."""
    from esc_eval.runs.registries import name_conflicts

    conflicts = name_conflicts()
    if conflicts:
        more = f" (and {len(conflicts) - 1} more: esc-eval plugins list)" if len(conflicts) > 1 else ""
        raise ConfigError(f"{name}: {conflicts[0]}{more}")


COST_FIELDS = ("cost_limit", "cache", "cache_mode")
"""``[run]`` fields about money, not results: outside the fingerprint, so changing them never blocks ``--resume``."""

SHORTHANDS = ("rounds", "end_token", "max_episode_tokens", "episode_timeout")
"""``[run]`` fields a ``termination`` list replaces."""


def _check_plugins(name: str, raw: dict[str, Any], run: RunSection) -> None:
    """Every named termination detector and the turn policy exist and take the arguments given."""
    from esc_eval.environments.termination import TERMINATION
    from esc_eval.environments.turn_policies import TURN_POLICIES
    from esc_eval.roles.registry import RegistryError

    if run.termination:
        both = [f for f in SHORTHANDS if f in raw]
        if both:
            raise ConfigError(f"{name}: [run] field 'termination': replaces '{both[0]}'; set one or the other")
    for i, spec in enumerate(run.termination_specs()):  # the shorthands' specs are valid by their types
        try:
            TERMINATION.create(spec)
        except RegistryError as exc:
            raise ConfigError(f"{name}: [run] field 'termination' {i}: {exc}") from None
    try:
        TURN_POLICIES.create(run.turn_policy_spec())
    except RegistryError as exc:
        raise ConfigError(f"{name}: [run] field 'turn_policy': {exc}") from None


def parse_section(name: str, section: str, raw: Any, cls: type[Any]) -> Any:
    """Section ``raw`` of file ``name`` validated by the model of dataclass ``cls`` (``esc_eval.runs.config_model``)."""
    from esc_eval.runs.config_model import validate

    return validate(f"{name}: [{section}]", raw, cls)


PATH_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".toml")
"""A protocol, profile or persona value ending so (or holding a slash) is a path, not a built-in name."""

LOCAL_BACKENDS = ("transformers", "vllm", "auto")


def resolve_paths(config: Config, base: Path) -> Config:
    """``config`` with its relative paths made relative to ``base``, the config file's folder.

    As in pyproject.toml or pytest.ini, a path in a file means the same wherever the
    command runs: ``[run] store``, ``[cards] path``, ``lora`` folders, and a
    ``protocol``, ``profile`` or ``persona(s)`` value that is a path (it holds a slash or
    ends in a file suffix; a bare name is a built-in or plugin). A local backend's
    ``model`` is resolved when the folder it names exists there (otherwise it stays a
    hub id). Absolute paths are unchanged.
    """
    def path(text: str | None) -> str | None:
        if text is None or Path(text).expanduser().is_absolute():
            return text if text is None else str(Path(text).expanduser())
        return str(base / text)

    def name_or_path(text: str) -> str:
        return path(text) if "/" in text or "\\" in text or text.lower().endswith(PATH_SUFFIXES) else text  # type: ignore[return-value]

    def endpoint(section: Any, **changes: Any) -> Any:
        model = section.model
        if section.backend in LOCAL_BACKENDS and model and not Path(model).is_absolute() and (base / model).exists():
            model = str(base / model)
        return replace(section, model=model, lora={name: path(folder) for name, folder in section.lora.items()}, **changes)

    def seeker(section: SeekerSection) -> SeekerSection:
        return endpoint(section, protocol=name_or_path(section.protocol), persona=name_or_path(section.persona),
                        personas=tuple(name_or_path(p) for p in section.personas))

    return replace(
        config,
        run=replace(config.run, store=path(config.run.store), cache=path(config.run.cache)),
        cards=replace(config.cards, path=path(config.cards.path)),
        seeker=seeker(config.seeker),
        seekers=tuple(seeker(s) for s in config.seekers),
        supporters=tuple(endpoint(s) for s in config.supporters),
        judge=endpoint(config.judge, profile=name_or_path(config.judge.profile)) if config.judge else None,
        safety=replace(config.safety, rubric=path(config.safety.rubric), resources=path(config.safety.resources)) if config.safety else None,
        as_written=config,
    )
