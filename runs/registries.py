"""Every registry a config or command can name, and the rule that no installed plugin reuses a built-in's name.

Each room declares its registries (``esc_eval.roles.registry``); this module gathers them, so
``esc-eval plugins list`` and loading a config check the same set. A plugin named like a built-in
would otherwise be silently shadowed by it: installing a package would seem to work and do nothing.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from esc_eval.roles.registry import Registry


def registries() -> list[Registry[Any]]:
    """Backends, turn policies, termination detectors, personas, card readers and source readers, in that order."""
    from esc_eval.agents.backends import BACKENDS
    from esc_eval.environments.behaviours import PERSONAS
    from esc_eval.environments.termination import TERMINATION
    from esc_eval.environments.turn_policies import TURN_POLICIES
    from esc_eval.roles.loaders import CARD_READERS
    from esc_eval.roles.sources import SOURCE_READERS

    return [BACKENDS, TURN_POLICIES, TERMINATION, PERSONAS, CARD_READERS, SOURCE_READERS]


def name_conflicts() -> list[str]:
    """One line per installed plugin, of any kind, that reuses a built-in's name (naming the plugin and the built-in)."""
    installed = metadata.entry_points()  # one scan of the installed distributions for every registry
    return [line for registry in registries() for line in registry.conflicts(installed)]


__all__ = ["name_conflicts", "registries"]
