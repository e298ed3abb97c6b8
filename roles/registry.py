"""Named extension points: one ``Registry`` per kind (backend, turn policy, termination, persona).

Each room declares its own registry and registers its built-ins with the ``register``
decorator; installed packages add more through an entry point group (``esc_eval.backends``,
``esc_eval.turn_policies``, ``esc_eval.termination``, ``esc_eval.personas``), under names of
their own: a plugin reusing a built-in's name is refused (``Registry.conflicts``). Configs name
them with a spec, ``{name = "max_rounds", rounds = 5}``: ``create(spec)`` calls the factory
with the other keys as keyword arguments. This module sits in the bottom layer and imports
nothing of the project, so every room can declare a registry.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Installed(Protocol):
    """Every installed entry point, as ``metadata.entry_points()`` gives them (its type varies with Python's version)."""

    def select(self, *, group: str) -> Iterable[metadata.EntryPoint]: ...


class RegistryError(ValueError):
    """A spec names nothing registered, or its arguments do not fit; the message says which are known."""


@dataclass(frozen=True)
class Entry:
    """One registered name, as ``esc-eval plugins list`` shows it."""

    kind: str
    name: str
    source: str
    """``built-in`` or ``plugin DIST (module:attr)``."""
    description: str


class Registry(Generic[T]):
    """Factories by name: built-ins registered in code, plugins found in an entry point group on first use.

    A plugin may not reuse a built-in's name: ``conflicts()`` says which do, loading a config refuses
    them, and meanwhile the built-in keeps the name (a plugin cannot change what a config meant).
    """

    def __init__(self, kind: str, group: str | None = None, *, reserved: Callable[[], Iterable[str]] | None = None):
        """``reserved``: names of built-ins declared outside this registry (the persona files), also closed to plugins."""
        self.kind, self.group = kind, group
        self._builtin: dict[str, tuple[T, str]] = {}
        self._loaded: dict[str, T] = {}
        self._reserved = reserved
        REGISTRIES[kind] = self

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``factory`` under ``name`` (its docstring's first line describes it)."""

        def add(factory: T) -> T:
            if name in self._builtin:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builtin[name] = (factory, description or _first_line(factory))
            return factory

        return add

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """Installed plugins of this kind (those reusing a built-in's name excluded): name -> entry point."""
        builtins = self.builtin_names()
        return {name: ep for name, ep in self._plugins().items() if name not in builtins}

    def builtin_names(self) -> set[str]:
        """The names plugins may not take: those registered in code and the ``reserved`` ones."""
        return {*self._builtin, *(self._reserved() if self._reserved is not None else ())}

    def conflicts(self, installed: Installed | None = None) -> list[str]:
        """One line per installed plugin that reuses a built-in's name, naming both; such a plugin is refused.

        ``installed``: every entry point, scanned once for several registries (``metadata.entry_points()``).
        """
        builtins = self.builtin_names()
        return [f"{self.kind} plugin {name!r} ({_origin(ep)}) reuses the name of the built-in {self.kind} {name!r}"
                f"{self._defined_at(name)}: rename its entry point in the group {self.group}"
                for name, ep in sorted(self._plugins(installed).items()) if name in builtins]

    def _plugins(self, installed: Installed | None = None) -> dict[str, metadata.EntryPoint]:
        if self.group is None:
            return {}
        found = installed.select(group=self.group) if installed is not None else metadata.entry_points(group=self.group)
        return {ep.name: ep for ep in found}

    def _defined_at(self, name: str) -> str:
        if name not in self._builtin:
            return ""
        factory = self._builtin[name][0]
        return f" ({getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')})"

    def names(self) -> list[str]:
        """Built-ins in registration order, then plugins by name."""
        return [*self._builtin, *sorted(self.entry_points())]

    def get(self, name: str) -> T:
        """The factory registered as ``name``; a plugin is imported on first use.

        Raises:
            RegistryError: nothing has that name (the message lists the known ones) or the plugin fails to import.
        """
        if name in self._builtin:
            return self._builtin[name][0]
        if name not in self._loaded:
            plugin = self.entry_points().get(name)
            if plugin is None:
                raise RegistryError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
            try:
                self._loaded[name] = plugin.load()
            except Exception as exc:  # a broken plugin is the config's problem to report, not a crash
                raise RegistryError(f"{self.kind} plugin {name!r} ({plugin.value}) cannot load: {type(exc).__name__}: {exc}") from None
        return self._loaded[name]

    def create(self, spec: str | Mapping[str, Any], **extra: Any) -> Any:
        """Call the factory a spec names: ``"name"`` or ``{name = "...", arg = value, ...}``, plus ``extra``.

        Raises:
            RegistryError: unknown name, a spec without ``name``, or arguments the factory does not take.
        """
        name, args = split_spec(spec, self.kind)
        factory = self.check(name, args, **extra)
        try:
            return factory(**args, **extra)  # type: ignore[operator]
        except ValueError as exc:  # a value the factory refuses (RegistryError included)
            raise RegistryError(f"{self.kind} {name!r}: {exc}") from None

    def check(self, name: str, args: Mapping[str, Any], /, *positional: Any, **extra: Any) -> T:
        """The factory ``name``, once ``args`` fit its signature and plain annotated types; nothing is called.

        ``positional`` and ``extra`` are what the caller adds (a backend factory's endpoint, ``name``, ``shared``).

        Raises:
            RegistryError: unknown name, or arguments the factory does not take or of the wrong type.
        """
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(*positional, **args, **extra)  # type: ignore[arg-type]
        except TypeError as exc:
            raise RegistryError(f"{self.kind} {name!r}: {exc}") from None
        except ValueError:  # no signature (a builtin callable): let the call decide
            pass
        _check_types(self.kind, name, factory, args)
        return factory

    def entries(self) -> list[Entry]:
        """Everything registered, built-ins first; each plugin is imported for its docstring's first line
        (one that cannot load says why instead). Plugins reusing a built-in's name are left out: ``conflicts()``."""
        found = [Entry(self.kind, name, "built-in", description) for name, (_, description) in self._builtin.items()]
        for name, ep in sorted(self.entry_points().items()):
            try:
                description = _first_line(self.get(name))
            except RegistryError as exc:
                description = f"(cannot load: {str(exc).split(' cannot load: ', 1)[-1]})"
            found.append(Entry(self.kind, name, f"plugin {_origin(ep)}", description))
        return found


def split_spec(spec: str | Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{name = ..., **args}`` -> ``(name, args)``; raises ``RegistryError`` without a text ``name``."""
    if isinstance(spec, str):
        return spec, {}
    args = dict(spec)
    name = args.pop("name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"a {kind} needs a 'name' (a text value), got {dict(spec)!r:.80}")
    return name, args


def _check_types(kind: str, name: str, factory: Any, args: Mapping[str, Any]) -> None:
    """Arguments annotated with plain types (``int``, ``float``, ``str``, ``bool``, optional ones) must have them.

    A spec comes from a TOML file: a quoted number must be refused here, not fail mid-run.
    """
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable annotations (a plugin's): let the call decide
        return
    for arg, value in args.items():
        allowed = typing.get_args(hints[arg]) if isinstance(hints.get(arg), types.UnionType) else (hints.get(arg),)
        plain = [t for t in allowed if t in _PLAIN]
        if len(plain) != len(allowed) or (any(isinstance(value, _PLAIN[t]) for t in plain) and (bool in plain or not isinstance(value, bool))):
            continue
        expected = " or ".join("none" if t is type(None) else t.__name__ for t in plain)
        raise RegistryError(f"{kind} {name!r}: argument '{arg}' must be {expected}, got {type(value).__name__} {value!r:.40}")


_PLAIN: dict[Any, tuple[type, ...]] = {
    int: (int,), float: (int, float), str: (str,), bool: (bool,), type(None): (type(None),),
}
"""Annotation -> the TOML values it takes (an int is a float; a bool is neither, though Python says so)."""


def _first_line(obj: object) -> str:
    """The first line of ``obj``'s docstring; a dataclass's generated one (its signature) is no description."""
    doc = (inspect.getdoc(obj) or "").strip()
    if isinstance(obj, type) and doc.startswith(f"{obj.__name__}("):
        doc = ""
    return doc.split("\n")[0]


def _origin(ep: metadata.EntryPoint) -> str:
    """``DIST (module:attr)``: where a plugin comes from, as listings and errors name it."""
    dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
    return f"{dist} ({ep.value})"


REGISTRIES: dict[str, Registry[Any]] = {}
"""Every registry declared so far, by kind (a registry's module must be imported to appear)."""

__all__ = ["REGISTRIES", "Entry", "Registry", "RegistryError", "split_spec"]
