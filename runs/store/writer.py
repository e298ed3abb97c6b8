"""The store's write side: ``Store`` opens a run's file and writes it (its reads are ``esc_eval.runs.store.reader``).

Writes go through one writer task that drains a queue into batched transactions on
a dedicated thread, so no coroutine waits on disk and every turn is committed moments
after it happens. Episodes have deterministic keys; starting an episode wipes any
partial turns and scores a crashed attempt left, so a resumed run never duplicates.
Readers (monitor, report, export) open the file read-only. Imports and human labels
are written synchronously, each in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from esc_eval.agents.messages import TurnTaken
from esc_eval.runs.store import schema
from esc_eval.runs.store.reader import Reader
from esc_eval.runs.store.records import FINAL_ROUND, NO_TOKENS, EpisodeRows, ImportedEpisode, ImportedRows, PlannedEpisode, Tokens
from esc_eval.runs.store.schema import StoreError

HEARTBEAT_SECONDS = 2.0
"""How often a running invocation touches its ``runs`` row; a reader sees it as alive for a few of these."""


class Store(Reader):
    """One run's SQLite file. Create with ``Store.open(path)``; read-only with ``readonly=True``.

    A context manager that closes it (``close_sync``) on leaving, so a reader is one line::

        with Store.open(path, readonly=True) as store:
            labels = final_labels(store.final_scores())

    A run that started the writer closes with ``await store.close()`` instead.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool):
        super().__init__(path, conn)
        self.readonly = readonly
        self._queue: asyncio.Queue[tuple[tuple[str, tuple[Any, ...]], ...] | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.writes = 0
        self.write_error: BaseException | None = None
        self.on_write_error: Callable[[BaseException], None] | None = None
        """Called once, on the loop, when a write fails (the runner stops the run); later writes are dropped."""
        self.batch_window = 0.02
        """Seconds the writer waits after a write arrives for others to share its transaction."""
        self._run_id: int | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close_sync()

    # -- opening ---------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, **meta: Any) -> Store:
        """Create a new store holding ``meta`` atomically: a crash leaves either no file or a complete one."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent is a file, or the folder cannot be made
            blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            why = f"{blocking} is a file, not a folder" if blocking else f"cannot create its folder {path.parent}: {exc.strerror or exc}"
            raise StoreError(f"{path}: {why}") from None
        tmp = path.with_name(f".{path.name}.creating")
        tmp.unlink(missing_ok=True)
        store = cls.open(tmp, create=True)
        store.set_meta(**meta)
        store.close_sync()
        os.replace(tmp, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, create: bool = False) -> Store:
        """Open (``create``: or make) a store; raises ``StoreError`` for a missing, foreign or newer file.

        A writable open migrates an older schema (``esc_eval.runs.store.schema``); a read-only one
        changes nothing, not even the journal mode, and creates no file beside it.
        """
        path = Path(path)
        if readonly or not create:
            if path.is_dir():
                raise StoreError(f"{path}: is a directory, not a store file")
            if not path.is_file():
                raise StoreError(f"{path}: no such store file")
        try:
            if readonly:
                conn = sqlite3.connect(schema.readonly_uri(path), uri=True, check_same_thread=False, timeout=5)
            else:
                conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            # check before any PRAGMA: switching a foreign database to WAL would write to it
            version = schema.check_version(path, conn, creating=create and not readonly)
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            if version is None:
                schema.create(conn)
            elif not readonly:
                schema.upgrade(conn, version)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a readable esc-eval store ({exc})") from None
        return cls(path, conn, readonly)

    # -- run-level metadata (synchronous, before and after the event loop work) --

    def set_meta(self, **values: Any) -> None:
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v, ensure_ascii=False)) for k, v in values.items()])

    def plan(self, episodes: Iterable[PlannedEpisode]) -> None:
        """Record planned episodes; keys already present keep their state."""
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO episodes (key, ordinal, card_index, card_id, language, category, source,"
                " supporter, persona, repeat, seed, seeker) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(e.key, e.ordinal, e.card_index, e.card_id, e.language, e.category, e.source, e.supporter, e.persona, e.repeat, e.seed,
                  e.seeker) for e in episodes],
            )

    def import_episodes(self, episodes: Iterable[ImportedEpisode | EpisodeRows]) -> list[str]:
        """Write finished episodes with their turns and scores in one transaction; returns the keys of the new ones.

        ``import_rows`` without store-level rows; see there.
        """
        return self.import_rows(episodes).new

    def import_rows(self, episodes: Iterable[ImportedEpisode | EpisodeRows], *, tables: dict[str, list[dict[str, Any]]] | None = None,
                    meta: dict[str, Any] | None = None) -> ImportedRows:
        """Write imported episodes with their rows, rows of store-level tables and ``meta``, all in one transaction.

        For imports from files, not for live runs: it refuses while the writer runs. Duplicates nothing:

        * an episode whose key is new is written with its rows in every episode table; it keeps
          its ``ordinal`` when the store held no episodes and every episode given has one, else
          it is numbered after the store's last ordinal, in the order given;
        * an episode whose key the store holds is left as it is, but rows of its episode tables
          that the store lacks (by primary key: a human label given since) are added; the caller
          checks beforehand that the rows both have are the same;
        * ``tables``: rows of store-level tables (``runs``, ``events``, ...). A row equal to one the
          store has, on every column but the rowid alias (``id``), is skipped; the others keep
          their ``id`` when the store's table was empty, else are numbered after its last;
        * ``meta``: these keys are written (replacing the store's values for them).
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        if self._writer is not None:
            raise StoreError(f"{self.path}: cannot import while the store's writer is running")
        given = [item.rows() if isinstance(item, ImportedEpisode) else item for item in episodes]
        new: list[str] = []
        fresh: dict[str, list[dict[str, Any]]] = {}  # table -> rows of new episodes
        more: dict[str, list[dict[str, Any]]] = {}  # table -> rows for episodes the store has, written if it lacks them
        written: dict[str, int] = {}
        with self._transaction() as conn:
            last, count = conn.execute("SELECT COALESCE(MAX(ordinal), -1) + 1, COUNT(*) FROM episodes").fetchone()
            keep = count == 0 and all("ordinal" in rows.episode for rows in given)
            for rows in given:
                key = rows.episode["key"]
                episode = rows.episode if keep else {**rows.episode, "ordinal": last + len(new)}
                into = fresh if self._insert(conn, "episodes", [episode], " ON CONFLICT(key) DO NOTHING") else more
                if into is fresh:
                    new.append(key)
                for table, owned in rows.tables().items():
                    into.setdefault(table, []).extend({**row, "episode_key": key} for row in owned)
            for table, rows_of in fresh.items():
                self._insert(conn, table, rows_of)
            added = {table: n for table, rows_of in more.items() if (n := self._insert(conn, table, rows_of, " ON CONFLICT DO NOTHING"))}
            for table, rows_of in (tables or {}).items():
                written[table] = self._insert_store_rows(conn, table, rows_of)
            if meta:
                conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [(k, json.dumps(v, ensure_ascii=False)) for k, v in meta.items()])
        return ImportedRows(new, added, written)

    def _insert_store_rows(self, conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> int:
        """Rows of a store-level table the store lacks (compared without the rowid alias); returns how many were written."""
        if table not in schema.tables() or table in ("meta", "episodes", *schema.episode_tables()):
            raise StoreError(f"{self.path}: {table!r} is not a store-level table")
        rowid = schema.row_id(table)
        names = [c for c in schema.columns(table) if c != rowid]
        have = {tuple(row) for row in conn.execute(f"SELECT {', '.join(names)} FROM {table}")}
        keep_ids = not have
        fresh = []
        for row in rows:
            content = tuple(row.get(name) for name in names)
            if content in have:
                continue
            have.add(content)
            fresh.append(row if keep_ids or rowid is None else {k: v for k, v in row.items() if k != rowid})
        return self._insert(conn, table, fresh)

    def _insert(self, conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]], conflict: str = "") -> int:
        """``INSERT`` rows given as column -> value, in order; names are checked against the schema, never pasted in blind."""
        written = 0
        known = set(schema.columns(table))
        start = 0
        while start < len(rows):  # runs of rows with the same columns go in one executemany
            names = tuple(rows[start])
            end = start + 1
            while end < len(rows) and tuple(rows[end]) == names:
                end += 1
            unknown = sorted(set(names) - known)
            if unknown:
                raise StoreError(f"{self.path}: table {table} has no column {', '.join(map(repr, unknown))}")
            written += conn.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}){conflict}",
                                        [tuple(row.values()) for row in rows[start:end]]).rowcount
            start = end
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
        self._put(("INSERT OR REPLACE INTO turns VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
            turn.episode_key, turn.index, turn.role, turn.text, turn.prompt_tokens, turn.completion_tokens, turn.latency, turn.at,
            turn.state or None, turn.usage, int(turn.cached),
        )))

    def end_episode(self, key: str, outcome: str, reason: str, at: float) -> None:
        status = "failed" if outcome == "failed" else "done"
        self._put(("UPDATE episodes SET status=?, outcome=?, reason=?, ended_at=? WHERE key=?", (status, outcome, reason, at, key)))

    def add_score(self, key: str, dimension: str, label: int | None, raw: str | None, model: str, latency: float,
                  *, status: str = "ok", error: str | None = None, round: int = FINAL_ROUND, sample: int = 0,
                  tokens: Tokens = NO_TOKENS) -> None:
        """Queue one judge label; ``sample`` tells apart the k labels of ``[judge] samples = k``."""
        self._put(("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (key, dimension, round, label, raw, model, latency, status, error, time.time(), sample, *tokens)))

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
            raise StoreWriteError(f"{self.path}: a write failed: {_os_error(self.write_error)}")

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
            if ops and self.write_error is None:  # after a failed write nothing more is written: no episode ends without its turns
                try:
                    await loop.run_in_executor(self._executor, self._write, ops)
                except Exception as exc:  # keep draining so producers never block; surfaced at close()
                    self.write_error = exc
                    if self.on_write_error is not None:
                        self.on_write_error(exc)

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


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class StoreWriteError(StoreError):
    """A write to the store failed while a run was going (a full disk): the run stopped; exit code 1, not bad input."""


def _os_error(exc: BaseException) -> str:
    """The OS's words for a failed write (``No space left on device``), as SQLite or the OS reported it."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return "No space left on device" if text == "database or disk is full" else text
