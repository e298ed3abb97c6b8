"""``esc-eval cards``: role card tools."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from roles.loaders import load_cards


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``cards`` command group."""
    cards = sub.add_parser("cards", help="role card tools")
    cards_sub = cards.add_subparsers(required=True, metavar="ACTION")
    validate = cards_sub.add_parser("validate", help="check a card file and summarise it")
    validate.add_argument("file", type=Path)
    validate.add_argument("--language", choices=("en", "zh"))
    validate.set_defaults(handler=_cards_validate)


def _cards_validate(args: argparse.Namespace) -> int:
    cards = load_cards(args.file, language=args.language)
    languages = Counter(c.language for c in cards)
    categories = Counter(c.category for c in cards)
    print(f"{args.file}: {len(cards)} valid cards; languages: {dict(languages)}; categories: {dict(categories)}")
    return 0
