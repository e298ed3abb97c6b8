"""Live view of a run: a rich dashboard in a terminal, plain progress lines elsewhere.

A *source* turns what it watches into a ``Snapshot``; the renderer draws a snapshot
and knows nothing of where it came from, so a run watched in-process and the same
run watched through its store look alike.

Public API, by module:
    esc_eval.runs.monitor.snapshot -- Snapshot and its views (EndpointView, LeaderRow, WorkerView, Line),
                             the Source protocol, RateMeter, percentile, state_summary
    esc_eval.runs.monitor.sources  -- LiveSource (a run in this process), StoreSource (a store on disk)
    esc_eval.runs.monitor.render   -- render, Dashboard (rich Live), PlainReporter (CI and pipes), plain_text
    esc_eval.runs.monitor.watch    -- watch (the refresh loop), run_with_monitor (``esc-eval run``),
                             monitor_command (``esc-eval monitor STORE``), is_terminal

Importing this package loads rich; the command line imports it only when it shows a run.
"""

from esc_eval.runs.monitor.render import Dashboard, PlainReporter, plain_text, render
from esc_eval.runs.monitor.snapshot import (
    EndpointView,
    LeaderRow,
    Line,
    RateMeter,
    Snapshot,
    Source,
    WorkerView,
    percentile,
    state_summary,
)
from esc_eval.runs.monitor.sources import LiveSource, StoreSource
from esc_eval.runs.monitor.watch import is_terminal, monitor_command, run_with_monitor, watch

__all__ = [
    "Dashboard", "EndpointView", "LeaderRow", "Line", "LiveSource", "PlainReporter", "RateMeter", "Snapshot",
    "Source", "StoreSource", "WorkerView", "is_terminal", "monitor_command", "percentile", "plain_text", "render",
    "run_with_monitor", "state_summary", "watch",
]
