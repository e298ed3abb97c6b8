"""Exit codes of ``esc-eval`` and the error its commands raise for bad flags and paths."""

from __future__ import annotations

FAILED_EPISODES = 1  # the run finished, but the store holds failed episodes or judge scores (esc_eval.runs.execution.runner.RunResult.exit_code)
BAD_INPUT = 2


class UsageError(Exception):
    """Bad input found by the CLI itself (paths, flags)."""
