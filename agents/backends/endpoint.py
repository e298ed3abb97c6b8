"""``EndpointConfig``: what a backend factory is given, so it lives with the backends.

A run config's ``[seeker]``, ``[[supporters]]``, ``[judge]`` and ``[safety]`` sections are read into it
(``esc_eval.runs.config_sections`` declares the other sections beside it); the ``metadata`` limits are
checked when the config loads (``esc_eval.runs.config_model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EndpointConfig:
    """Where a model is and how to talk to it (shared by seeker, supporters and judge)."""

    backend: str = "openai"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    max_connections: int = field(default=64, metadata={"ge": 1})
    timeout: float = field(default=120.0, metadata={"gt": 0})
    max_attempts: int = field(default=6, metadata={"ge": 1})
    """Tries per request, first included, counting hard faults (5xx, timeouts, resets, garbage); throttling does not count."""
    max_retry_time: float = field(default=900.0, metadata={"gt": 0})
    """Seconds after a request's first failure within which it is retried (throttling waits as long as this allows)."""
    max_tokens: int = field(default=512, metadata={"ge": 1})
    temperature: float | None = field(default=None, metadata={"ge": 0, "le": 2})
    """Sampling temperature, 0 (greedy) to 2 as OpenAI's API takes it; unset: the server's default."""
    top_p: float | None = field(default=None, metadata={"gt": 0, "le": 1})
    """Nucleus sampling mass in (0, 1]; unset: the server's default."""
    lora: dict[str, str] = field(default_factory=dict)
    """LoRA adapter name -> folder: served with the model (``vllm`` backend, ``esc-eval serve``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The backend's own settings, passed to its factory as keyword arguments: a plugin backend declares
    and checks them (the built-ins take none); see docs/plugins.md."""
    price: dict[str, float] = field(default_factory=dict)
    """``{ input = USD, output = USD }`` per million tokens (docs/cost.md); unset: this endpoint's cost is unknown."""
