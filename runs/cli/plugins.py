"""``esc-eval plugins list``: every named extension a config can use, built-in or installed."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plugins = sub.add_parser("plugins", help="backends, turn policies, termination detectors, personas, card formats "
                                             "and card-build source shapes a config can name")
    actions = plugins.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="everything registered: built-ins and installed plugins (entry points)")
    listing.add_argument("--kind", choices=KINDS, help="only this kind")
    listing.set_defaults(handler=_list)


KINDS = ("backend", "turn policy", "termination", "persona", "card reader", "source reader")


def _list(args: argparse.Namespace) -> int:
    rows = [row for row in _rows() if args.kind in (None, row[0])]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + f"  {row[3]}".rstrip())
    return 0


def _rows() -> list[tuple[str, str, str, str]]:
    """(kind, name, source, description) for every registry; personas as ``esc-eval personas list`` shows them."""
    from esc_eval.agents.backends import BACKENDS
    from esc_eval.environments.behaviours import list_personas
    from esc_eval.environments.termination import TERMINATION
    from esc_eval.environments.turn_policies import TURN_POLICIES
    from esc_eval.roles.loaders import CARD_READERS
    from esc_eval.roles.sources import SOURCE_READERS

    rows = [(e.kind, e.name, e.source, e.description) for registry in (BACKENDS, TURN_POLICIES, TERMINATION) for e in registry.entries()]
    rows += [("persona", p.name, p.source, p.description) for p in list_personas()]
    rows += [(e.kind, e.name, e.source, e.description) for registry in (CARD_READERS, SOURCE_READERS) for e in registry.entries()]
    return rows
