"""The parser class of every ``esc-eval`` command: a command with sub-actions may name a default one."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose first word may leave out the sub-action (``esc-eval judge FILE`` = ``judge score FILE``)."""

    _default: tuple[str, argparse.Action] | None = None

    def default_action(self, name: str, actions: argparse.Action) -> None:
        """Parse as ``name`` when the first word names none of ``actions`` (the action ``add_subparsers`` returned)."""
        self._default = (name, actions)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        if self._default is not None and args is not None:
            name, actions = self._default
            words = list(args)
            if not words or (words[0] not in (actions.choices or ()) and words[0] not in ("-h", "--help")):
                words.insert(0, name)
            args = words
        return super().parse_known_args(args, namespace)
