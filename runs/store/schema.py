"""The store's schema: its tables (DDL), version and migrations; the only module that knows the SQL of tables.

``SCHEMA`` creates a new store; ``MIGRATIONS`` bring an older one up to ``SCHEMA_VERSION`` on a
writable open (each step one transaction); ``ADDITIVE`` gives older stores the tables added
since without a version bump. Read-only opens never change a file (``readonly_uri``).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import urllib.parse
from pathlib import Path
from typing import NamedTuple


class StoreError(Exception):
    """The store file cannot be used (unreadable, not a store, newer schema, locked)."""


SCHEMA_VERSION = 4
"""Stores with a newer version are refused; bump it (and add a migration to ``MIGRATIONS``) when the schema changes."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    key TEXT PRIMARY KEY,
    ordinal INTEGER NOT NULL,
    card_index INTEGER NOT NULL,
    card_id TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    source TEXT NOT NULL,
    supporter TEXT NOT NULL,
    persona TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'planned',
    outcome TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    ended_at REAL,
    seeker TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS episodes_status ON episodes (status);
CREATE TABLE IF NOT EXISTS turns (
    episode_key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency REAL NOT NULL,
    at REAL NOT NULL,
    state TEXT,
    usage TEXT NOT NULL DEFAULT 'reported',
    cached INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (episode_key, idx)
);
CREATE TABLE IF NOT EXISTS scores (
    episode_key TEXT NOT NULL,
    dimension TEXT NOT NULL,
    round INTEGER NOT NULL,
    label INTEGER,
    raw TEXT,
    model TEXT,
    latency REAL,
    status TEXT NOT NULL,
    error TEXT,
    at REAL NOT NULL,
    sample INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    usage TEXT NOT NULL DEFAULT 'reported',
    cached INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (episode_key, dimension, round, sample)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    endpoint TEXT,
    episode_key TEXT,
    detail TEXT
);
"""

ANNOTATIONS = """
CREATE TABLE IF NOT EXISTS annotations (
    episode_key TEXT NOT NULL,
    annotator TEXT NOT NULL,
    dimension TEXT NOT NULL,
    label INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (episode_key, annotator, dimension)
);
"""
"""Human labels (``esc-eval annotate``). Additive: stores made before it gain the table on their first writable open."""
RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    pid INTEGER,
    host TEXT
);
"""
"""One row per invocation that ran the store (a run, each resume): the monitor's source of truth
for "running", "finished" or "crashed". Additive, like ``annotations``."""
SAFETY = """
CREATE TABLE IF NOT EXISTS safety (
    episode_key TEXT NOT NULL,
    sample INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    items TEXT,
    raw TEXT,
    model TEXT,
    latency REAL,
    error TEXT,
    risk TEXT,
    disclosure_round INTEGER,
    disclosure_turn INTEGER,
    at REAL NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    usage TEXT NOT NULL DEFAULT 'reported',
    cached INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (episode_key, sample)
);
"""
"""The safety judge's replies (``esc_eval.agents.judge.safety``), one row per episode and sample: ``kind`` risk, control
or excluded; ``status`` ok, unparsed, failed, excluded; ``items`` the parsed JSON object. Additive, like ``annotations``."""
SAFETY_ANNOTATIONS = """
CREATE TABLE IF NOT EXISTS safety_annotations (
    episode_key TEXT NOT NULL,
    annotator TEXT NOT NULL,
    item TEXT NOT NULL,
    value INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (episode_key, annotator, item)
);
"""
"""Human answers to the safety items (``esc-eval annotate``; ``value`` 1 yes, 0 no), apart from ``annotations`` so that they
never feed the quality figures. Additive, like ``annotations``."""
ADDITIVE = ANNOTATIONS + RUNS + SAFETY + SAFETY_ANNOTATIONS
"""Tables added without a schema bump; idempotent, run on every writable open."""
SCHEMA += ADDITIVE

MIGRATIONS = {
    # 1 -> 2: judge samples ([judge] samples = k); a column in the primary key needs a new table
    2: """
    CREATE TABLE scores_v2 (
        episode_key TEXT NOT NULL, dimension TEXT NOT NULL, round INTEGER NOT NULL, label INTEGER, raw TEXT, model TEXT,
        latency REAL, status TEXT NOT NULL, error TEXT, at REAL NOT NULL, sample INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (episode_key, dimension, round, sample)
    );
    INSERT INTO scores_v2 SELECT episode_key, dimension, round, label, raw, model, latency, status, error, at, 0 FROM scores;
    DROP TABLE scores;
    ALTER TABLE scores_v2 RENAME TO scores;
    """,
    # 2 -> 3: the seeker of each episode ([[seekers]]); older episodes were all played by the run's one [seeker]
    3: "ALTER TABLE episodes ADD COLUMN seeker TEXT NOT NULL DEFAULT '';",
    # 3 -> 4: usage per request (docs/cost.md): where token counts come from, response-cache hits, the judges' tokens.
    # The additive tables (safety) gain their new columns in ``upgrade``: an older store may not have them yet.
    4: """
    ALTER TABLE turns ADD COLUMN usage TEXT NOT NULL DEFAULT 'reported';
    ALTER TABLE turns ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE scores ADD COLUMN prompt_tokens INTEGER;
    ALTER TABLE scores ADD COLUMN completion_tokens INTEGER;
    ALTER TABLE scores ADD COLUMN usage TEXT NOT NULL DEFAULT 'reported';
    ALTER TABLE scores ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
    """,
}
"""Schema version -> the SQL that brings a store of the version before up to it; run on a writable open."""


def columns(table: str) -> tuple[str, ...]:
    """The column names of ``table`` in this esc-eval's schema (importers check a file's fields against them)."""
    return tuple(c.name for c in table_columns(table))


class Column(NamedTuple):
    """One column of a table in this esc-eval's schema (``pragma_table_info``)."""

    name: str
    type: str
    """``TEXT``, ``INTEGER`` or ``REAL``."""
    notnull: bool
    default: str | None
    """The SQL default, or ``None``."""
    key: int
    """Its place in the primary key (1, 2, ...), 0 when not part of it."""


@functools.cache
def tables() -> tuple[str, ...]:
    """Every table of this esc-eval's schema, in creation order: exports enumerate them, so a table added later travels."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(SCHEMA)
        return tuple(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY rowid"))


@functools.cache
def table_columns(table: str) -> tuple[Column, ...]:
    """The columns of ``table`` with their types, nullability, defaults and primary-key places."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(SCHEMA)
        found = tuple(Column(name, kind, bool(notnull), default, key) for name, kind, notnull, default, key
                      in conn.execute('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,)))
    if not found:
        raise ValueError(f"no table {table!r} in the store schema")
    return found


def primary_key(table: str) -> tuple[str, ...]:
    """The columns of ``table``'s primary key, in key order."""
    return tuple(c.name for c in sorted((c for c in table_columns(table) if c.key), key=lambda c: c.key))


def row_id(table: str) -> str | None:
    """The column aliasing SQLite's rowid (``events.id``, ``runs.id``): a number the store hands out, not content."""
    key = [c for c in table_columns(table) if c.key]
    return key[0].name if len(key) == 1 and key[0].type == "INTEGER" else None


def episode_tables() -> tuple[str, ...]:
    """The tables whose rows belong to one episode: their primary key starts with ``episode_key`` (turns, scores, annotations)."""
    return tuple(t for t in tables() if primary_key(t)[:1] == ("episode_key",))


PRIVATE_META = ("annotation_secret", "schema_version")
"""Meta keys that never leave the store: the annotation server's item-id secret, and the
schema version (the importing store has its own)."""


def create(conn: sqlite3.Connection) -> None:
    """Create every table in an empty file, stamped with ``SCHEMA_VERSION``, in one transaction."""
    conn.executescript("BEGIN;" + SCHEMA + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")


def upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a writable store of ``version`` up to date: the migrations, then the additive tables and their new columns."""
    migrate(conn, version)
    conn.executescript(ADDITIVE)
    for table in _additive_tables():
        have = {name for (name,) in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}
        for column in table_columns(table):
            if column.name not in have:  # added to an additive table since the store made it: nullable or defaulted
                default = f" DEFAULT {column.default}" if column.default is not None else ""
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type}"
                             f"{' NOT NULL' if column.notnull else ''}{default}")


@functools.cache
def _additive_tables() -> tuple[str, ...]:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(ADDITIVE)
        return tuple(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older store up to ``SCHEMA_VERSION``, each step in one transaction (all or nothing)."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            conn.executescript(f"BEGIN IMMEDIATE;{MIGRATIONS[target]}"
                               f"INSERT OR REPLACE INTO meta VALUES ('schema_version', '{target}'); COMMIT;")
        except sqlite3.DatabaseError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def check_version(path: Path, conn: sqlite3.Connection, *, creating: bool) -> int | None:
    """The store's schema version; ``None`` for an empty file being created. Raises ``StoreError`` for a foreign or newer file."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        if creating and not tables:
            return None
        raise StoreError(f"{path}: not an esc-eval store (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema {version} is newer than this esc-eval understands ({SCHEMA_VERSION}); upgrade esc-eval")
    if version < 1:
        raise StoreError(f"{path}: store has no schema version")
    return version


def readonly_uri(path: Path) -> str:
    """A read-only URI that creates no file beside the store.

    A WAL-mode file whose ``-wal`` is absent has no writer (a writer keeps its ``-wal``
    until it closes): it is opened ``immutable``, since SQLite would otherwise create
    ``-wal``/``-shm`` to read it. Otherwise ``mode=ro`` reads alongside a live writer.
    """
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}"
    with contextlib.suppress(OSError), path.open("rb") as f:
        header = f.read(20)
        if len(header) == 20 and header[18] == 2 and not path.with_name(path.name + "-wal").exists():
            return uri + "?immutable=1"
    return uri + "?mode=ro"
