"""The generic registry: built-ins by decorator, plugins from entry points, specs, errors that list the known names."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import pytest

from esc_eval.roles import registry as registry_module
from esc_eval.roles.registry import REGISTRIES, Registry, RegistryError

GROUP = "esc_eval.test_things"


@dataclass(frozen=True)
class Thing:
    """A thing with a size."""

    size: int = 1


def make_registry(kind: str = "thing") -> Registry[type[Thing]]:
    things: Registry[type[Thing]] = Registry(kind, GROUP)
    things.register("small")(Thing)
    return things


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[metadata.EntryPoint]:
    """Entry points the registry finds, as installed packages would declare them."""
    found: list[metadata.EntryPoint] = []
    real = metadata.entry_points

    def entry_points(*, group: str):  # type: ignore[no-untyped-def]
        return [ep for ep in found if ep.group == group] if group == GROUP else real(group=group)

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)
    return found


def test_specs_create_with_their_arguments_and_the_registry_is_listed() -> None:
    things = make_registry("thing-a")
    assert things.create({"name": "small", "size": 3}) == Thing(3)
    assert things.create("small") == Thing(1)
    assert REGISTRIES["thing-a"] is things
    [entry] = things.entries()
    assert (entry.kind, entry.name, entry.source, entry.description) == ("thing-a", "small", "built-in", "A thing with a size.")


def test_unknown_names_and_bad_arguments_say_what_is_known() -> None:
    things = make_registry()
    with pytest.raises(RegistryError, match=r"unknown thing 'large' \(known: small\)"):
        things.create({"name": "large"})
    with pytest.raises(RegistryError, match=r"thing 'small': .*'colour'"):
        things.create({"name": "small", "colour": "red"})
    with pytest.raises(RegistryError, match="needs a 'name'"):
        things.create({"size": 2})
    with pytest.raises(ValueError, match="registered twice"):
        things.register("small")(Thing)


def test_plugins_come_from_entry_points_and_cannot_replace_a_builtin(plugins: list[metadata.EntryPoint]) -> None:
    things = make_registry()
    plugins.append(metadata.EntryPoint("bounded", "esc_eval.environments.termination:MaxTokens", GROUP))
    plugins.append(metadata.EntryPoint("small", "esc_eval.environments.termination:MaxRounds", GROUP))
    plugins.append(metadata.EntryPoint("broken", "no_such_module_xyz:Thing", GROUP))
    assert things.names() == ["small", "bounded", "broken"]
    from esc_eval.environments.termination import MaxTokens

    assert things.create({"name": "bounded", "tokens": 7}) == MaxTokens(7)
    assert things.create("small") == Thing(1)  # the built-in wins
    with pytest.raises(RegistryError, match="thing plugin 'broken' .* cannot load: ModuleNotFoundError"):
        things.get("broken")
    sources = {e.name: e.source for e in things.entries()}
    assert sources["small"] == "built-in" and sources["bounded"] == "plugin ? (esc_eval.environments.termination:MaxTokens)"


def test_arguments_of_the_wrong_type_are_refused_before_anything_runs() -> None:
    from esc_eval.environments.termination import TERMINATION, Timeout

    with pytest.raises(RegistryError, match=r"termination 'max_rounds': argument 'rounds' must be int, got str '5'"):
        TERMINATION.create({"name": "max_rounds", "rounds": "5"})
    with pytest.raises(RegistryError, match=r"argument 'rounds' must be int, got bool"):
        TERMINATION.create({"name": "max_rounds", "rounds": True})
    with pytest.raises(RegistryError, match=r"argument 'role' must be str or none, got int"):
        TERMINATION.create({"name": "end_token", "role": 1})
    assert TERMINATION.create({"name": "timeout", "seconds": 3}) == Timeout(3)  # TOML's 3 is a fine float


def test_a_plugin_reusing_a_built_in_name_is_a_conflict_naming_both(plugins: list[metadata.EntryPoint]) -> None:
    things: Registry[type[Thing]] = Registry("thing-c", GROUP, reserved=lambda: ["large"])  # "large": declared elsewhere, as persona files are
    things.register("small")(Thing)
    plugins.append(metadata.EntryPoint("small", "esc_eval.environments.termination:MaxRounds", GROUP))
    plugins.append(metadata.EntryPoint("large", "esc_eval.environments.termination:MaxTokens", GROUP))
    plugins.append(metadata.EntryPoint("bounded", "esc_eval.environments.termination:MaxTokens", GROUP))
    assert things.conflicts() == [
        "thing-c plugin 'large' (? (esc_eval.environments.termination:MaxTokens)) reuses the name of the built-in thing-c 'large': "
        f"rename its entry point in the group {GROUP}",
        "thing-c plugin 'small' (? (esc_eval.environments.termination:MaxRounds)) reuses the name of the built-in thing-c 'small' "
        f"({__name__}:Thing): rename its entry point in the group {GROUP}",
    ]
    assert things.names() == ["small", "bounded"] and [e.name for e in things.entries()] == ["small", "bounded"]
    with pytest.raises(RegistryError, match="unknown thing-c 'large'"):
        things.get("large")


def test_plugins_are_listed_with_their_docstrings_first_line(plugins: list[metadata.EntryPoint]) -> None:
    things = make_registry("thing-d")
    plugins.append(metadata.EntryPoint("bounded", "esc_eval.environments.termination:MaxTokens", GROUP))
    plugins.append(metadata.EntryPoint("broken", "no_such_module_xyz:Thing", GROUP))
    plugins.append(metadata.EntryPoint("plain", "esc_eval.environments.termination:AnyOf", GROUP))  # a dataclass without a docstring
    described = {e.name: e.description for e in things.entries()}
    assert described == {"small": "A thing with a size.", "bounded": "Truncate once generated tokens (both sides) reach ``tokens``.",
                         "broken": "(cannot load: ModuleNotFoundError: No module named 'no_such_module_xyz')", "plain": ""}


def test_check_binds_a_spec_without_calling_the_factory() -> None:
    made: list[int] = []

    def factory(endpoint: object, *, name: str, size: int = 1) -> int:
        made.append(size)
        return size

    things: Registry[object] = Registry("thing-e")
    things.register("counted")(factory)
    assert things.check("counted", {"size": 3}, None, name="x") is factory and made == []
    with pytest.raises(RegistryError, match=r"thing-e 'counted': argument 'size' must be int, got str '3'"):
        things.check("counted", {"size": "3"}, None, name="x")
    with pytest.raises(RegistryError, match=r"thing-e 'counted': missing a required argument: 'name'"):
        things.check("counted", {}, None)
