"""Chat backends by name: ``openai`` (HTTP), ``transformers`` and ``vllm`` (in-process), ``auto``; plugins add more.

Public API:
    ChatBackend, BackendStats and the typed errors -- see ``esc_eval.agents.backends.base``
    BACKENDS                                       -- the registry: name -> factory(endpoint, name=, shared=)
    AUTO, choose_local_backend, resolve_backend    -- ``auto``: the fastest local engine installed
    Shared                                         -- what one pool's backends share (HTTP sessions), closed with it

A factory takes an endpoint section (``esc_eval.agents.backends.endpoint.EndpointConfig``: ``model``,
``base_url``, ``api_key_env``, ``lora``, limits ...), the role name, and ``Shared``; the section's
``options`` table comes as keyword arguments, which the factory's signature declares (a config naming
one it does not take is refused when loaded; the built-ins take none).
Plugins register in the entry point group ``esc_eval.backends``, under a name no built-in has. Heavy imports (torch,
vLLM, aiohttp) happen inside the factories, only for the backend asked for.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any, Protocol

from esc_eval.agents.backends.base import LOADING_LOG, BackendError, BackendStats, ChatBackend, GaveUp, RetryableError
from esc_eval.agents.backends.endpoint import EndpointConfig
from esc_eval.roles.registry import Registry


class Shared:
    """Objects the backends of one pool share, made on first use and closed with the pool."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    async def aclose(self) -> None:
        for made in self._made.values():
            await made.aclose()
        self._made.clear()


class BackendFactory(Protocol):
    def __call__(self, endpoint: EndpointConfig, *, name: str, shared: Shared) -> ChatBackend: ...


BACKENDS: Registry[BackendFactory] = Registry("backend", "esc_eval.backends")


@BACKENDS.register("openai")
def openai_backend(endpoint: EndpointConfig, *, name: str, shared: Shared) -> ChatBackend:
    """An OpenAI-compatible HTTP server (vLLM, SGLang, TGI, llama.cpp, a hosted API)."""
    from esc_eval.agents.backends.openai_http import HTTPSessions, OpenAIHTTPBackend

    if endpoint.base_url is None or endpoint.model is None:  # a loaded config has both (config_model checks)
        raise ValueError(f"{name}: backend 'openai' needs base_url and model")
    return OpenAIHTTPBackend(
        base_url=endpoint.base_url, model=endpoint.model, api_key_env=endpoint.api_key_env,
        max_connections=endpoint.max_connections, timeout=endpoint.timeout, max_attempts=endpoint.max_attempts,
        max_retry_time=endpoint.max_retry_time, name=name, sessions=shared.get("http", HTTPSessions),
    )


@BACKENDS.register("transformers")
def transformers_backend(endpoint: EndpointConfig, *, name: str, shared: Shared) -> ChatBackend:
    """A Hugging Face model in this process (CPU or GPU), continuously batched; with ``lora``, each row its own adapter.

    Every role on the same model shares one loaded copy and one running batch (``Shared``): the
    demo's seeker (its adapter) and supporter (none) decode in the same steps.
    """
    from esc_eval.agents.backends.embedded import EMBEDDED_ALIASES
    from esc_eval.agents.backends.transformers_local import TransformersLocalBackend

    model = None if endpoint.model in EMBEDDED_ALIASES else endpoint.model
    local = shared.get(f"transformers:{model or ''}", lambda: TransformersLocalBackend(model=model, name="local"))
    return local.role(name, adapters=dict(endpoint.lora), default_model=role_adapter(endpoint, name))


@BACKENDS.register("vllm")
def vllm_backend(endpoint: EndpointConfig, *, name: str, shared: Shared) -> ChatBackend:
    """vLLM's engine in this process (needs vLLM), with LoRA adapters."""
    from esc_eval.agents.backends.vllm_engine import VLLMEngineBackend

    if endpoint.model is None:  # a loaded config has it (config_model checks)
        raise ValueError(f"{name}: backend 'vllm' needs model")
    return VLLMEngineBackend(model=endpoint.model, lora=dict(endpoint.lora), name=name, default_model=role_adapter(endpoint, name))


def role_adapter(endpoint: EndpointConfig, role: str) -> str | None:
    """The adapter named like the role (``lora = {seeker = ...}`` in ``[seeker]``): it answers the role's requests,
    which name no model (the judge names one per dimension through ``[judge.models]``). Among several
    ``[[seekers]]`` the role is ``seeker:NAME``; each names its adapter ``seeker`` all the same."""
    kind = role.split(":", 1)[0]
    return kind if kind in endpoint.lora else None


AUTO = "auto"
"""The backend name that picks a local engine when the backends are built (``choose_local_backend``)."""


def choose_local_backend(model: str | None) -> tuple[str, str]:
    """The fastest local engine installed for ``model``, and why: ``vllm`` if importable, else ``transformers``.

    vLLM batches every episode's requests continuously in a paged KV cache; on 2-core CPUs it
    gave 2-3x the tokens/s of the ``transformers`` backend (Xeon with AMX, bfloat16) and 1.1-1.2x
    (EPYC with AVX2 only, float32); docs/performance.md.
    Without a model (the embedded SmolLM2 GGUF) it is ``transformers``: vLLM needs a folder or hub id.
    """
    if not model:
        return "transformers", "no model given: the embedded model"
    if importlib.util.find_spec("vllm") is None:
        return "transformers", "vllm not installed"
    return "vllm", "vllm installed"


def resolve_backend(kind: str, *, name: str, model: str | None) -> str:
    """``kind`` itself, or for ``auto`` the engine chosen, printed on the loading log (``seeker: backend auto -> vllm (...)``)."""
    if kind != AUTO:
        return kind
    chosen, why = choose_local_backend(model)
    logging.getLogger(LOADING_LOG).info("%s: backend auto -> %s (%s)", name, chosen, why)
    return chosen


@BACKENDS.register(AUTO)
def auto_backend(endpoint: EndpointConfig, *, name: str, shared: Shared) -> ChatBackend:
    """A local model on the fastest engine installed: ``vllm`` if importable, else ``transformers``."""
    return BACKENDS.get(resolve_backend(AUTO, name=name, model=endpoint.model))(endpoint, name=name, shared=shared)


__all__ = ["AUTO", "BACKENDS", "BackendError", "BackendFactory", "BackendStats", "ChatBackend", "GaveUp", "RetryableError", "Shared",
           "choose_local_backend", "resolve_backend", "role_adapter"]
