"""Chat backends by name: ``openai`` (HTTP), ``transformers`` and ``vllm`` (in-process), ``scripted`` (tests).

Public API:
    ChatBackend, BackendStats and the typed errors -- see ``agents.backends.base``
    create_backend(kind, **options)                -- build a backend from config values
"""

from __future__ import annotations

from typing import Any

from agents.backends.base import BackendError, BackendStats, ChatBackend, GaveUp, RetryableError


def create_backend(kind: str, **options: Any) -> ChatBackend:
    """Build a backend; heavy imports (torch) happen only for the kind asked for."""
    if kind == "openai":
        from agents.backends.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(**options)
    if kind == "transformers":
        from agents.backends.transformers_local import TransformersLocalBackend

        return TransformersLocalBackend(**options)
    if kind == "vllm":
        from agents.backends.vllm_engine import VLLMEngineBackend

        return VLLMEngineBackend(**options)
    if kind == "scripted":
        from agents.backends.scripted import ScriptedBackend

        return ScriptedBackend(**options)
    raise ValueError(f"unknown backend {kind!r}")


__all__ = ["BackendError", "BackendStats", "ChatBackend", "GaveUp", "RetryableError", "create_backend"]
