"""The run store: one SQLite file (WAL) per run holding config, episodes, turns, scores and events.

Writes go through one writer task that drains a queue into batched transactions on
a dedicated thread, so no coroutine waits on disk and every turn is committed moments
after it happens. Episodes have deterministic keys; starting an episode wipes any
partial turns and scores a crashed attempt left, so a resumed run never duplicates.
Readers (monitor, report, export) open the file read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import sqlite3
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from agents.messages import TurnTaken

SCHEMA_VERSION = 2
"""Stores with a newer version are refused; bump it (and add a migration to ``_MIGRATIONS``) when the schema changes."""

_SCHEMA = """
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
    ended_at REAL
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

_ANNOTATIONS = """
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
_RUNS = """
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
_SCHEMA += _ANNOTATIONS + _RUNS

HEARTBEAT_SECONDS = 2.0
"""How often a running invocation touches its ``runs`` row; a reader sees it as alive for a few of these."""

_MIGRATIONS = {
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
}
"""Schema version -> the SQL that brings a store of the version before up to it; run on a writable open."""

FINAL_ROUND = -1
"""``scores.round`` of the score of a whole episode; per-round scores use the round number."""


@functools.cache
def columns(table: str) -> tuple[str, ...]:
    """The columns of ``table`` in this esc-eval's schema (importers check a file's fields against them)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        found = tuple(row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,)))
    finally:
        conn.close()
    if not found:
        raise ValueError(f"no table {table!r} in the store schema")
    return found


class StoreError(Exception):
    """The store file cannot be used (unreadable, not a store, newer schema, locked)."""


@dataclass(frozen=True, slots=True)
class PlannedEpisode:
    key: str
    ordinal: int
    card_index: int
    card_id: str
    language: str
    category: str
    source: str
    supporter: str
    persona: str
    repeat: int
    seed: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One invocation that ran the store: ``status`` is ``running`` until it ends as
    ``finished`` (its plan ran out), ``stopped`` (Ctrl-C: stopped admitting) or ``interrupted``
    (it raised or was cancelled). A ``running`` row whose heartbeat went stale is a crash."""

    id: int
    started_at: float
    heartbeat: float
    ended_at: float | None
    status: str
    pid: int | None
    host: str | None


@dataclass(frozen=True, slots=True)
class EpisodeRows:
    """One finished episode as rows of the store's tables (column -> value), for ``Store.import_episodes``.

    ``episode`` holds the ``episodes`` columns but ``ordinal`` (the store numbers imports);
    ``turns`` and ``scores`` hold their tables' columns but ``episode_key``.
    """

    episode: dict[str, Any]
    turns: tuple[dict[str, Any], ...] = ()
    scores: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ImportedEpisode:
    """A finished episode read from a file: its plan row, ``(role, text)`` turns and final ``(dimension, label)`` scores."""

    episode: PlannedEpisode
    transcript: tuple[tuple[str, str], ...]
    scores: tuple[tuple[str, int], ...] = ()
    outcome: str = "truncated"
    reason: str = "imported"
    model: str = "imported"
    at: float = 0.0

    def rows(self) -> EpisodeRows:
        """As table rows: a ``done`` episode, turns without usage, ``ok`` final scores without raw replies."""
        episode = {f.name: getattr(self.episode, f.name) for f in fields(PlannedEpisode) if f.name != "ordinal"}
        episode.update(status="done", outcome=self.outcome, reason=self.reason, attempts=1, started_at=self.at, ended_at=self.at)
        turns = tuple({"idx": index, "role": role, "text": text, "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "at": self.at}
                      for index, (role, text) in enumerate(self.transcript))
        scores = tuple({"dimension": dim, "round": FINAL_ROUND, "label": label, "model": self.model, "status": "ok", "at": self.at}
                       for dim, label in self.scores)
        return EpisodeRows(episode, turns, scores)


class Store:
    """One run's SQLite file. Create with ``Store.open(path)``; read-only with ``readonly=True``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool):
        self.path, self._conn, self.readonly = path, conn, readonly
        self._queue: asyncio.Queue[tuple[tuple[str, tuple[Any, ...]], ...] | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.writes = 0
        self.write_error: BaseException | None = None
        self.batch_window = 0.02
        """Seconds the writer waits after a write arrives for others to share its transaction."""
        self._run_id: int | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # -- opening ---------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, **meta: Any) -> Store:
        """Create a new store holding ``meta`` atomically: a crash leaves either no file or a complete one."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.creating")
        tmp.unlink(missing_ok=True)
        store = cls.open(tmp, create=True)
        store.set_meta(**meta)
        store.close_sync()
        os.replace(tmp, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, create: bool = False) -> Store:
        path = Path(path)
        if readonly or not create:
            if path.is_dir():
                raise StoreError(f"{path}: is a directory, not a store file")
            if not path.is_file():
                raise StoreError(f"{path}: no such store file")
        try:
            if readonly:
                conn = sqlite3.connect(_readonly_uri(path), uri=True, check_same_thread=False, timeout=5)
            else:
                conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            # check before any PRAGMA: switching a foreign database to WAL would write to it
            version = cls._check_version(path, conn, creating=create and not readonly)
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            if version is None:
                conn.executescript("BEGIN;" + _SCHEMA + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            elif not readonly:
                cls._migrate(conn, version)
                conn.executescript(_ANNOTATIONS + _RUNS)  # idempotent; gives older stores the tables added since
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a readable esc-eval store ({exc})") from None
        return cls(path, conn, readonly)

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        """Bring an older store up to ``SCHEMA_VERSION``, each step in one transaction (all or nothing)."""
        for target in range(version + 1, SCHEMA_VERSION + 1):
            try:
                conn.executescript(f"BEGIN IMMEDIATE;{_MIGRATIONS[target]}"
                                   f"INSERT OR REPLACE INTO meta VALUES ('schema_version', '{target}'); COMMIT;")
            except sqlite3.DatabaseError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _check_version(path: Path, conn: sqlite3.Connection, *, creating: bool) -> int | None:
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

    # -- run-level metadata (synchronous, before and after the event loop work) --

    def set_meta(self, **values: Any) -> None:
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v, ensure_ascii=False)) for k, v in values.items()])

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def plan(self, episodes: Iterable[PlannedEpisode]) -> None:
        """Record planned episodes; keys already present keep their state."""
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO episodes (key, ordinal, card_index, card_id, language, category, source,"
                " supporter, persona, repeat, seed) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(e.key, e.ordinal, e.card_index, e.card_id, e.language, e.category, e.source, e.supporter, e.persona, e.repeat, e.seed) for e in episodes],
            )

    def statuses(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, status FROM episodes"))

    def import_episodes(self, episodes: Iterable[ImportedEpisode | EpisodeRows]) -> list[str]:
        """Write finished episodes with their turns and scores in one transaction; returns the keys of the new ones.

        For imports from files, not for live runs: it refuses while the writer runs. An
        episode whose key the store holds already is skipped with its turns and scores, so
        importing a file twice, or into the store it came from, duplicates nothing. New
        episodes are numbered after the store's last ordinal, in the order given.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        if self._writer is not None:
            raise StoreError(f"{self.path}: cannot import while the store's writer is running")
        written = []
        with self._transaction() as conn:
            ordinal = conn.execute("SELECT COALESCE(MAX(ordinal), -1) + 1 FROM episodes").fetchone()[0]
            for item in episodes:
                rows = item.rows() if isinstance(item, ImportedEpisode) else item
                key = rows.episode["key"]
                if not self._insert(conn, "episodes", [{**rows.episode, "ordinal": ordinal + len(written)}], " ON CONFLICT(key) DO NOTHING"):
                    continue  # the store has this episode already
                self._insert(conn, "turns", [{**turn, "episode_key": key} for turn in rows.turns])
                self._insert(conn, "scores", [{**score, "episode_key": key} for score in rows.scores])
                written.append(key)
        return written

    def _insert(self, conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]], conflict: str = "") -> int:
        """``INSERT`` rows given as column -> value; names are checked against the schema, never pasted in blind."""
        written = 0
        for row in rows:
            unknown = sorted(set(row) - set(columns(table)))
            if unknown:
                raise StoreError(f"{self.path}: table {table} has no column {', '.join(map(repr, unknown))}")
            names = ", ".join(row)
            written += conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))}){conflict}",
                                    tuple(row.values())).rowcount
        return written

    # -- the writer --------------------------------------------------------------

    async def start_writer(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esc-eval-store")
        self._writer = asyncio.create_task(self._drain(), name="store-writer")

    def start_episode(self, key: str) -> None:
        """Mark ``key`` running and wipe whatever an earlier, interrupted attempt left."""
        self._put(
            ("UPDATE episodes SET status='running', attempts=attempts+1, started_at=?, ended_at=NULL, outcome=NULL, reason=NULL"
             " WHERE key=?", (time.time(), key)),
            ("DELETE FROM turns WHERE episode_key=?", (key,)),
            ("DELETE FROM scores WHERE episode_key=?", (key,)),
        )

    def add_turn(self, turn: TurnTaken) -> None:
        self._put(("INSERT OR REPLACE INTO turns VALUES (?,?,?,?,?,?,?,?,?)", (
            turn.episode_key, turn.index, turn.role, turn.text, turn.prompt_tokens, turn.completion_tokens, turn.latency, turn.at,
            turn.state or None,
        )))

    def end_episode(self, key: str, outcome: str, reason: str, at: float) -> None:
        status = "failed" if outcome == "failed" else "done"
        self._put(("UPDATE episodes SET status=?, outcome=?, reason=?, ended_at=? WHERE key=?", (status, outcome, reason, at, key)))

    def add_score(self, key: str, dimension: str, label: int | None, raw: str | None, model: str, latency: float,
                  *, status: str = "ok", error: str | None = None, round: int = FINAL_ROUND, sample: int = 0) -> None:
        """Queue one judge label; ``sample`` tells apart the k labels of ``[judge] samples = k``."""
        self._put(("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (key, dimension, round, label, raw, model, latency, status, error, time.time(), sample)))

    def add_event(self, kind: str, detail: str = "", *, endpoint: str | None = None, episode_key: str | None = None) -> None:
        """Queue an event for the writer; before the writer starts (run setup) it is written at once."""
        statement = ("INSERT INTO events (at, kind, endpoint, episode_key, detail) VALUES (?,?,?,?,?)",
                     (time.time(), kind, endpoint, episode_key, detail))
        if self._queue is None and not self.readonly:
            with self._transaction() as conn:
                conn.execute(*statement)
            return
        self._put(statement)

    def begin_run(self) -> None:
        """Record that this process runs the store now, and keep its heartbeat fresh until ``end_run``.

        Call after ``start_writer``. The row is written at once, so a monitor attached from
        the first moment sees the run as running.
        """
        if self._queue is None:
            raise StoreError("store writer not started")
        now = time.time()
        with self._transaction() as conn:
            cursor = conn.execute("INSERT INTO runs (started_at, heartbeat, status, pid, host) VALUES (?,?,'running',?,?)",
                                  (now, now, os.getpid(), socket.gethostname()))
        self._run_id = cursor.lastrowid
        self._heartbeat = asyncio.create_task(self._beat(), name="store-heartbeat")

    def end_run(self, status: str) -> None:
        """Mark this process's run ended (``finished``, ``stopped`` or ``interrupted``); written with the last batch."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._run_id is not None:
            now = time.time()
            self._put(("UPDATE runs SET status=?, ended_at=?, heartbeat=? WHERE id=?", (status, now, now, self._run_id)))
            self._run_id = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._put(("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), self._run_id)))

    def last_run(self) -> RunRecord | None:
        """The newest invocation that ran this store; ``None`` for a store older than the ``runs`` table."""
        if not self.rows("SELECT name FROM sqlite_master WHERE type='table' AND name='runs'"):
            return None
        row = self._conn.execute("SELECT id, started_at, heartbeat, ended_at, status, pid, host FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return RunRecord(*row) if row else None

    async def close(self) -> None:
        """Drain pending writes and close. Safe to call twice."""
        if self._heartbeat is not None:  # closed without end_run: the run did not end normally
            self.end_run("interrupted")
        if self._writer is not None and self._queue is not None:
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.close_sync()
        if self.write_error is not None:
            raise StoreError(f"{self.path}: a write failed: {self.write_error}")

    def close_sync(self) -> None:
        """Close; a writer leaves the file self-contained (no ``-wal``/``-shm``) when no one else has it open.

        Switching back to rollback mode checkpoints the WAL into the file, so a finished
        store is one file that a reader opens read-only without creating anything beside it,
        even in a read-only directory. The next writable open switches to WAL again.
        """
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):  # another connection (a monitor) holds it: stay in WAL
                self._conn.execute("PRAGMA busy_timeout=0")
                self._conn.execute("PRAGMA journal_mode=DELETE")
        self._conn.close()

    def _put(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        if self._queue is None:
            raise StoreError("store writer not started")
        self._queue.put_nowait(statements)

    async def _drain(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        done = False
        while not done:
            batch = [await self._queue.get()]
            if batch[0] is not None and self.batch_window > 0:
                await asyncio.sleep(self.batch_window)  # let a batch gather: one transaction and thread hop for many writes
            while not self._queue.empty() and len(batch) < 5000:
                batch.append(self._queue.get_nowait())
            if batch[-1] is None or None in batch:
                done = True
            ops = [item for item in batch if item is not None]
            if ops:
                try:
                    await loop.run_in_executor(self._executor, self._write, ops)
                except Exception as exc:  # keep draining so producers never block; surfaced at close()
                    self.write_error = exc

    def _write(self, ops: list[tuple[tuple[str, tuple[Any, ...]], ...]]) -> None:
        with self._transaction() as conn:
            sql_run: str | None = None
            args_run: list[tuple[Any, ...]] = []
            for statements in ops:  # consecutive runs of one statement go in one executemany, in order
                for sql, args in statements:
                    if sql != sql_run:
                        if args_run:
                            conn.executemany(sql_run, args_run)  # type: ignore[arg-type]
                        sql_run, args_run = sql, []
                    args_run.append(args)
            if args_run:
                conn.executemany(sql_run, args_run)  # type: ignore[arg-type]
        self.writes += len(ops)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # -- reading -------------------------------------------------------------------

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        self._conn.row_factory = sqlite3.Row
        try:
            return self._conn.execute(sql, params).fetchall()
        finally:
            self._conn.row_factory = None

    def episodes(self, status: str | None = None) -> list[sqlite3.Row]:
        where = "WHERE status=?" if status else ""
        return self.rows(f"SELECT * FROM episodes {where} ORDER BY ordinal", (status,) if status else ())

    def transcript(self, key: str) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._conn.execute("SELECT role, text FROM turns WHERE episode_key=? ORDER BY idx", (key,))]  # type: ignore[misc]

    def transcripts(self) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        """Every episode's (key, transcript), in plan order, in one scan."""
        current, lines = None, []
        for key, role, text in self._conn.execute(
            "SELECT t.episode_key, t.role, t.text FROM turns t JOIN episodes e ON e.key=t.episode_key ORDER BY e.ordinal, t.idx"
        ):
            if key != current:
                if current is not None:
                    yield current, lines
                current, lines = key, []
            lines.append((role, text))
        if current is not None:
            yield current, lines

    def unscored(self, dimensions: Sequence[str], *, include_failed: bool = False) -> list[dict[str, Any]]:
        """Finished episodes with judge dimensions to score (again), in plan order.

        A dimension is to score when its final score is missing (a crash came between the
        episode's end and its scores) or, with ``include_failed``, when any of its scores
        (final or per round) failed. Each item: ``key``, ``language``, ``supporter``, ``dimensions``.
        """
        sep = "\x1f"
        ok = "AND s.status='ok'" if include_failed else ""
        found = self.rows(
            "SELECT e.key, e.language, e.supporter,"
            f" (SELECT group_concat(s.dimension, char(31)) FROM scores s WHERE s.episode_key=e.key AND s.round=? {ok}) AS scored,"
            " (SELECT group_concat(s.dimension, char(31)) FROM scores s WHERE s.episode_key=e.key AND s.status='failed') AS failed"
            " FROM episodes e WHERE e.status='done' ORDER BY e.ordinal",
            (FINAL_ROUND,),
        )
        todo = []
        for row in found:
            complete = set((row["scored"] or "").split(sep))
            if include_failed:
                complete -= set((row["failed"] or "").split(sep))
            missing = [d for d in dimensions if d not in complete]
            if missing:
                todo.append({"key": row["key"], "language": row["language"], "supporter": row["supporter"], "dimensions": missing})
        return todo

    def failed_scores(self) -> int:
        """Judge scores of finished episodes that failed (the judge gave up), final or per round."""
        return self._conn.execute(
            "SELECT COUNT(*) FROM scores s JOIN episodes e ON e.key=s.episode_key WHERE s.status='failed' AND e.status='done'"
        ).fetchone()[0]

    def final_scores(self) -> list[sqlite3.Row]:
        """Whole-episode judge labels of finished episodes: ``episode_key, dimension, label, status, sample``.

        Works read-only on a store of schema 1 (before judge samples): its labels are sample 0.
        """
        have = {r["name"] for r in self.rows("PRAGMA table_info(scores)")}
        sample = "s.sample" if "sample" in have else "0"
        return self.rows(f"SELECT s.episode_key, s.dimension, s.label, s.status, {sample} AS sample FROM scores s"
                         " JOIN episodes e ON e.key = s.episode_key WHERE s.round=? AND e.status='done'"
                         " ORDER BY e.ordinal, s.dimension, sample", (FINAL_ROUND,))

    def counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM episodes GROUP BY status"))

    # -- human labels (esc-eval annotate) -------------------------------------------

    def add_annotations(self, labels: Iterable[tuple[str, str, str, int, float]]) -> int:
        """Write ``(episode_key, annotator, dimension, label, at)`` rows in one committed transaction.

        Synchronous, not through the writer: a label is on disk when this returns. A
        label the same annotator gave before for the same dimension is replaced.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        rows = list(labels)
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO annotations VALUES (?,?,?,?,?)", rows)
        return len(rows)

    def annotations(self) -> list[sqlite3.Row]:
        """Every human label (``episode_key, annotator, dimension, label, at``); none in a store without the table."""
        if not self.rows("SELECT name FROM sqlite_master WHERE type='table' AND name='annotations'"):
            return []
        return self.rows("SELECT a.* FROM annotations a LEFT JOIN episodes e ON e.key=a.episode_key"
                         " ORDER BY e.ordinal, a.episode_key, a.annotator, a.dimension")


def _readonly_uri(path: Path) -> str:
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


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


from runs.store.live import LiveReader, StoreBusy  # noqa: E402,F401  (last: live.py builds on Store)
