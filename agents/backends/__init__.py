"""Chat backends by name: ``openai`` (HTTP), ``transformers`` and ``vllm`` (in-process); plugins add more.

Public API:
    ChatBackend, BackendStats and the typed errors -- see ``agents.backends.base``
    BACKENDS                                       -- the registry: name -> factory(endpoint, name=, shared=)
    Shared                                         -- what one pool's backends share (HTTP sessions), closed with it

A factory takes an endpoint section (``runs.config.EndpointConfig``: ``model``,
``base_url``, ``api_key_env``, ``lora``, limits ...), the role name, and ``Shared``.
Plugins register in the entry point group ``esc_eval.backends``. Heavy imports (torch,
vLLM, aiohttp) happen inside the factories, only for the backend asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agents.backends.base import BackendError, BackendStats, ChatBackend, GaveUp, RetryableError
from roles.registry import Registry


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
    def __call__(self, endpoint: Any, *, name: str, shared: Shared) -> ChatBackend: ...


BACKENDS: Registry[BackendFactory] = Registry("backend", "esc_eval.backends")


@BACKENDS.register("openai")
def openai_backend(endpoint: Any, *, name: str, shared: Shared) -> ChatBackend:
    """An OpenAI-compatible HTTP server (vLLM, SGLang, TGI, llama.cpp, a hosted API)."""
    from agents.backends.openai_http import HTTPSessions, OpenAIHTTPBackend

    return OpenAIHTTPBackend(
        base_url=endpoint.base_url, model=endpoint.model, api_key_env=endpoint.api_key_env,
        max_connections=endpoint.max_connections, timeout=endpoint.timeout, max_attempts=endpoint.max_attempts,
        max_retry_time=endpoint.max_retry_time, name=name, sessions=shared.get("http", HTTPSessions),
    )


@BACKENDS.register("transformers")
def transformers_backend(endpoint: Any, *, name: str, shared: Shared) -> ChatBackend:
    """A Hugging Face model in this process (CPU or GPU), continuously batched; with ``lora``, one adapter per request."""
    if endpoint.lora:
        from agents.backends.lora_local import LoraLocalBackend

        return LoraLocalBackend(endpoint.model, adapters=dict(endpoint.lora), name=name)
    from agents.backends.transformers_local import TransformersLocalBackend

    return TransformersLocalBackend(model=endpoint.model, name=name)


@BACKENDS.register("vllm")
def vllm_backend(endpoint: Any, *, name: str, shared: Shared) -> ChatBackend:
    """vLLM's engine in this process (needs vLLM), with LoRA adapters."""
    from agents.backends.vllm_engine import VLLMEngineBackend

    return VLLMEngineBackend(model=endpoint.model, lora=dict(endpoint.lora), name=name)


__all__ = ["BACKENDS", "BackendError", "BackendFactory", "BackendStats", "ChatBackend", "GaveUp", "RetryableError", "Shared"]
