"""The card build's store: one SQLite file recording each source item's extraction, so a build resumes.

Separate from a run's store (its own tables, its own file): a build is not a run. An item is
recorded once it has a final outcome (a card or a rejection reason); items that were in
flight when a build stopped have no row and are extracted again on ``--resume``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from esc_eval.runs.store.schema import StoreError

CARDBUILD_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS build_items (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    card TEXT,
    reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    calls INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class ItemOutcome:
    """What extraction made of one source item: ``status`` ``extracted`` (``card`` set), ``rejected`` or ``failed`` (``reason``).

    ``failed`` (the backend gave up) is never recorded: a resumed build asks again.
    """

    key: str
    status: str
    card: dict[str, Any] | None
    reason: str | None
    prompt_tokens: int
    completion_tokens: int
    calls: int


class CardBuildStore:
    """``with CardBuildStore.open(path, fingerprint) as store:``; a file made for another config is refused."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path | None, fingerprint: str, *, resume: bool) -> CardBuildStore:
        """Create ``path`` (``None``: in memory, no resume), or (``resume``) reopen it; its fingerprint must match."""
        path = Path(path) if path is not None else None
        if path is not None and path.exists() and not resume:
            raise StoreError(f"{path}: exists; pass --resume to continue that build, or choose another --store")
        try:
            conn = sqlite3.connect(":memory:" if path is None else path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(CARDBUILD_SCHEMA)
            row = conn.execute("SELECT value FROM build_meta WHERE key = 'fingerprint'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a card build store: {exc}") from None
        if row is None:
            conn.execute("INSERT INTO build_meta VALUES ('fingerprint', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            conn.close()
            raise StoreError(f"{path}: was made with another build config (prompts, extractor, language); use a new --store")
        return cls(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Close as the run store does: back in rollback mode, so the build store is one file (no ``-wal``/``-shm``)."""
        with contextlib.suppress(sqlite3.Error):  # another connection holds it: stay in WAL
            self._conn.execute("PRAGMA busy_timeout=0")
            self._conn.execute("PRAGMA journal_mode=DELETE")
        self._conn.close()

    def record(self, outcome: ItemOutcome) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO build_items VALUES (?, ?, ?, ?, ?, ?, ?)",
            (outcome.key, outcome.status, None if outcome.card is None else json.dumps(outcome.card, ensure_ascii=False),
             outcome.reason, outcome.prompt_tokens, outcome.completion_tokens, outcome.calls))

    def outcomes(self) -> dict[str, ItemOutcome]:
        """Every recorded item by key."""
        rows = self._conn.execute(
            "SELECT key, status, card, reason, prompt_tokens, completion_tokens, calls FROM build_items").fetchall()
        return {r[0]: ItemOutcome(r[0], r[1], None if r[2] is None else json.loads(r[2]), r[3], r[4], r[5], r[6]) for r in rows}
