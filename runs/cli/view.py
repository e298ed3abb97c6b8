"""``esc-eval view``: browse stores (leaderboard, episodes, dialogues, side by side, charts) in a local web page."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``view`` command."""
    view = sub.add_parser("view", help="browse stores in a local web page (read-only, follows a running store live)")
    view.add_argument("stores", type=Path, nargs="+", metavar="STORE")
    view.add_argument("--port", type=int, default=8766, help="port (default 8766; 0 picks a free one)")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback)")
    view.set_defaults(handler=_view)


def _view(args: argparse.Namespace) -> int:
    from esc_eval.runs.viewer.server import view_command

    return view_command(args.stores, host=args.host, port=args.port, ready=lambda line: print(line, flush=True))
