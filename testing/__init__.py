"""The plugin author's kit, and the fixtures esc-eval's own tests and benchmarks use (installed with the package).

For a plugin's tests:
    check_backend, check_detector, check_turn_policy, check_persona  -- contract checks (``esc_eval.testing.checks``)
    ContractError                                                    -- what they raise, naming the breach
    ScriptedBackend   -- a deterministic in-process backend: replies come from a function
    FakeOpenAIServer  -- an OpenAI-compatible server on 127.0.0.1 that records requests and injects faults

By module:
    esc_eval.testing.checks        -- the contract checks
    esc_eval.testing.fake_server   -- FakeOpenAIServer, its fault kinds
    esc_eval.testing.model_server  -- start_transformers_serve: the embedded model behind ``transformers serve``
    esc_eval.testing.scenarios     -- fault and crash scenarios, audit_store (nothing lost or duplicated)
    esc_eval.testing.cli           -- esc_eval (the command in a subprocess), write_config

``FakeOpenAIServer`` is imported on first use: the kit costs no aiohttp import until a server is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.testing.checks import ContractError, check_backend, check_detector, check_persona, check_turn_policy

if TYPE_CHECKING:
    from esc_eval.testing.fake_server import FakeOpenAIServer


def __getattr__(name: str) -> Any:
    if name == "FakeOpenAIServer":
        from esc_eval.testing.fake_server import FakeOpenAIServer

        return FakeOpenAIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ContractError", "FakeOpenAIServer", "ScriptedBackend", "check_backend", "check_detector", "check_persona", "check_turn_policy"]
