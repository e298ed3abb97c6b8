"""``esc-eval plugins list``: every named extension a config can use, built-in or installed."""

from __future__ import annotations

import argparse
import sys

from esc_eval.runs.cli.errors import BAD_INPUT


def add_parser(sub: argparse._SubParsersAction) -> None:
    plugins = sub.add_parser("plugins", help="backends, turn policies, termination detectors, personas, card formats "
                                             "and card-build source shapes a config can name")
    actions = plugins.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="everything registered: built-ins and installed plugins (entry points)")
    listing.add_argument("--kind", choices=KINDS, help="only this kind")
    listing.set_defaults(handler=_list)


KINDS = ("backend", "turn policy", "termination", "persona", "card reader", "source reader")


def _list(args: argparse.Namespace) -> int:
    """The table on stdout; a plugin reusing a built-in's name is refused on stderr, one line each (exit 2)."""
    from esc_eval.runs.registries import name_conflicts

    rows = [row for row in _rows() if args.kind in (None, row[0])]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + f"  {row[3]}".rstrip())
    conflicts = [line for line in name_conflicts() if args.kind is None or line.startswith(f"{args.kind} plugin ")]
    for line in conflicts:
        print(f"esc-eval: error: {line}", file=sys.stderr)
    return BAD_INPUT if conflicts else 0


def _rows() -> list[tuple[str, str, str, str]]:
    """(kind, name, source, description) for every registry; personas as ``esc-eval personas list`` shows them.

    Plugins are imported for their descriptions (their docstring's first line)."""
    from esc_eval.environments.behaviours import list_personas
    from esc_eval.runs.registries import registries

    rows: list[tuple[str, str, str, str]] = []
    for registry in registries():
        if registry.kind == "persona":
            rows += [("persona", p.name, p.source, p.description) for p in list_personas()]
        else:
            rows += [(e.kind, e.name, e.source, e.description) for e in registry.entries()]
    return rows
