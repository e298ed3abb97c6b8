"""Exit codes of ``esc-eval`` and the error its commands raise for bad flags and paths."""

from __future__ import annotations

from esc_eval.runs.execution.result import BAD_INPUT, FAILED_EPISODES, INTERNAL_ERROR, STOPPED  # the README's table (RunResult.exit_code)

__all__ = ["BAD_INPUT", "FAILED_EPISODES", "INTERNAL_ERROR", "STOPPED", "UsageError"]


class UsageError(Exception):
    """Bad input found by the CLI itself (paths, flags)."""
