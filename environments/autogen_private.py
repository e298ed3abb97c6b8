"""Every use of autogen-core's private members, in one place (autogen-core 0.7.5, pinned in pyproject).

``LeanRuntime`` (``esc_eval.environments.runtime``) delivers through public API only. What is
left here trims autogen's own queue path, which a runtime takes only when it is given
intervention handlers; none of it has a public equivalent:

- ``SingleThreadedAgentRuntime._tracer_helper``: replaced by a no-op (every span on the
  queue path opens one, even with a no-op tracer provider);
- ``SingleThreadedAgentRuntime._try_serialize``: skipped unless ``autogen_core.events``
  logs at INFO (it serialises every message for an event record nobody reads);
- ``SingleThreadedAgentRuntime._create_otel_attributes``: returns nothing (tracing is off).

``PRIVATE_USES`` names them; ``tests/environments/test_autogen_private.py`` fails, naming
the member, when an autogen-core upgrade removes or reshapes one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from autogen_core import SingleThreadedAgentRuntime

PRIVATE_USES = ("_tracer_helper", "_try_serialize", "_create_otel_attributes")
"""The private members of ``SingleThreadedAgentRuntime`` this module overrides."""


class QuietQueueRuntime(SingleThreadedAgentRuntime):
    """``SingleThreadedAgentRuntime`` whose queue path builds no payloads or spans nobody reads."""

    _events = logging.getLogger("autogen_core.events")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._tracer_helper = _NoTracing()  # type: ignore[assignment]

    def _try_serialize(self, message: object) -> str:
        if self._events.isEnabledFor(logging.INFO):
            return super()._try_serialize(message)
        return ""

    async def _create_otel_attributes(self, *args: object, **kwargs: object) -> dict[str, str]:
        return {}


class _NoTracing:
    """Stands in for autogen-core's ``TraceHelper`` when tracing is off: every span is one shared no-op."""

    _block = contextlib.nullcontext()

    def trace_block(self, *args: object, **kwargs: object) -> contextlib.nullcontext[None]:
        return self._block
