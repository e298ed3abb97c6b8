"""esc-eval: evaluate emotional-support conversation models by simulation, the way ESC-Eval does.

Everything importable lives under this name; the repository keeps the rooms at its root (``agents/``,
``environments/``, ``roles/``, ``runs/``, ``testing/``) and ``esc_eval/`` links them, so the installed
package is ``esc_eval.agents``, ``esc_eval.runs``, ... and nothing else lands at the top of site-packages.

The Python API (docs/api.md), imported on first use so ``import esc_eval`` loads neither autogen-core nor torch:

* ``run`` / ``run_async`` (a config into a store; ``RunResult.exit_code`` as ``esc-eval run`` exits), ``report``
  (``esc-eval report --format json`` as a dict), ``estimate`` (``esc-eval run --dry-run --format json``), ``load_config``,
  ``Config``, ``RunResult``, ``Store``;
* the building blocks: ``assemble`` (runtime, agents, observers, environments) with ``SeekerSeat``, ``SupporterSeat``,
  ``Observer``, ``Stage``; ``Environment`` (``reset`` / ``step`` / ``run``), ``Episode``, ``StepResult``, ``Role``,
  ``Outcome``; turn policies (``TurnPolicy``, ``Alternating``, ``TURN_POLICIES``); termination detectors (``Detector``,
  ``MaxRounds``, ``MaxTokens``, ``EndToken``, ``Timeout``, ``TERMINATION``); personas (``load_behaviour``,
  ``list_personas``, ``SeekerBehaviour``, ``PersonaBehaviour``, ``PERSONAS``); cards and protocols (``RoleCard``,
  ``load_cards``, ``builtin_cards``, ``load_protocol``); backends (``ChatBackend``, ``ScriptedBackend``, ``BACKENDS``,
  ``SamplingParams``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esc_eval.agents.backends import BACKENDS, ChatBackend
    from esc_eval.agents.backends.scripted import ScriptedBackend
    from esc_eval.agents.messages import SamplingParams
    from esc_eval.api import estimate, load_config, report, run, run_async
    from esc_eval.environments.behaviours import PERSONAS, PersonaBehaviour, SeekerBehaviour, list_personas, load_behaviour
    from esc_eval.environments.environment import Environment, SupporterSpec
    from esc_eval.environments.episode import Episode, Outcome, OutcomeKind, Role, StepResult, Turn
    from esc_eval.environments.stage import Observer, SeekerSeat, Stage, SupporterSeat, assemble
    from esc_eval.environments.termination import TERMINATION, Detector, EndToken, MaxRounds, MaxTokens, Timeout
    from esc_eval.environments.turn_policies import TURN_POLICIES, Alternating, TurnPolicy
    from esc_eval.roles import RoleCard, SeekerProtocol, builtin_cards, load_cards, load_protocol
    from esc_eval.runs.config import Config
    from esc_eval.runs.execution.result import RunResult
    from esc_eval.runs.store import Store

_LAZY = {
    "esc_eval.api": ("estimate", "load_config", "report", "run", "run_async"),
    "esc_eval.agents.backends": ("BACKENDS", "ChatBackend"),
    "esc_eval.agents.backends.scripted": ("ScriptedBackend",),
    "esc_eval.agents.messages": ("SamplingParams",),
    "esc_eval.environments.behaviours": ("PERSONAS", "PersonaBehaviour", "SeekerBehaviour", "list_personas", "load_behaviour"),
    "esc_eval.environments.environment": ("Environment", "SupporterSpec"),
    "esc_eval.environments.episode": ("Episode", "Outcome", "OutcomeKind", "Role", "StepResult", "Turn"),
    "esc_eval.environments.stage": ("Observer", "SeekerSeat", "Stage", "SupporterSeat", "assemble"),
    "esc_eval.environments.termination": ("TERMINATION", "Detector", "EndToken", "MaxRounds", "MaxTokens", "Timeout"),
    "esc_eval.environments.turn_policies": ("TURN_POLICIES", "Alternating", "TurnPolicy"),
    "esc_eval.roles": ("RoleCard", "SeekerProtocol", "builtin_cards", "load_cards", "load_protocol"),
    "esc_eval.runs.config": ("Config",),
    "esc_eval.runs.execution.result": ("RunResult",),
    "esc_eval.runs.store": ("Store",),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562), so a bare ``import esc_eval`` stays cheap."""
    if name not in _HOME:
        raise AttributeError(f"module 'esc_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [  # the subpackages, then every name _LAZY imports on first use (tests/test_api.py checks they agree)
    "agents", "environments", "roles", "runs", "testing", "Alternating", "BACKENDS", "ChatBackend", "Config", "Detector", "EndToken",
    "Environment", "Episode", "MaxRounds", "MaxTokens", "Observer", "Outcome", "OutcomeKind", "PERSONAS", "PersonaBehaviour", "Role",
    "RoleCard", "RunResult", "SamplingParams", "ScriptedBackend", "SeekerBehaviour", "SeekerProtocol", "SeekerSeat", "Stage", "StepResult",
    "Store", "SupporterSeat", "SupporterSpec", "TERMINATION", "TURN_POLICIES", "Timeout", "Turn", "TurnPolicy", "assemble", "builtin_cards",
    "estimate", "list_personas", "load_behaviour", "load_cards", "load_config", "load_protocol", "report", "run", "run_async",
]
