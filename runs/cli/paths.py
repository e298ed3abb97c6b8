"""Where a command may write: ``--out``/``--plot`` paths checked before any work, so a bad one is one line (exit 2).

A path that cannot be written (a file where a folder is needed, a folder where a file is
needed, a parent that is a file, a folder without write permission) is refused before the
command reads or writes anything; folders that do not exist yet are fine: the writers make
them (``output_file``/``output_folder`` give the path back unchanged).
"""

from __future__ import annotations

import os
from pathlib import Path

from esc_eval.runs.cli.errors import UsageError


def output_file(path: Path, flag: str = "--out") -> Path:
    """``path`` as a file to (re)write; ``UsageError`` when it is a folder or cannot be made."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give the path of a file (inside it, or elsewhere)")
    _check_parents(path, flag)
    return path


def output_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` as a folder to write files into; ``UsageError`` when it is a file or cannot be made."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file; this writes a folder of files: give a folder (it is made if missing)")
    _check_parents(path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` is a folder this process may write into."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
            if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{flag} {path}: cannot create it in {parent}: permission denied")
            return
