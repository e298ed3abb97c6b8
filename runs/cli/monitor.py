"""``esc-eval monitor``: the live view of a run, read-only from its store."""

from __future__ import annotations

import argparse
from pathlib import Path

from esc_eval.runs.cli.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``monitor`` command."""
    monitor = sub.add_parser("monitor", help="live view of a running or finished run, read-only from its store")
    monitor.add_argument("store", type=Path)
    monitor.add_argument("--episode", metavar="KEY", help="follow this episode turn by turn (its key or a unique part of it)")
    monitor.add_argument("--once", action="store_true", help="print one frame and exit")
    monitor.add_argument("--interval", type=float, metavar="SECONDS",
                         help="seconds between refreshes (default 1 in a terminal, 5 for plain lines)")
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from esc_eval.runs.monitor import monitor_command

    if args.interval is not None and args.interval <= 0:
        raise UsageError(f"--interval must be positive, got {args.interval}")
    return monitor_command(args.store, args.episode, args.once, args.interval)
