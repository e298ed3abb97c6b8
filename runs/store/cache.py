"""The response cache file: a SQLite file (WAL) of chat replies keyed by what was asked; the only place that knows its SQL.

A file of its own, apart from any run's store: one cache serves many runs and many stores (a rerun into a new store,
another config asking the same questions). Its ``cache_meta`` table names the format (``FORMAT``) and its version, so
an esc-eval run store, another program's SQLite file or a corrupt file is refused with one line (``CacheError``, a
``StoreError``: bad input, exit 2) before anything is written to it.

The key (``request_key``) is the sha256 of a canonical JSON (sorted keys, no spaces, UTF-8) of::

    {"adapter": ADAPTER|null, "messages": [{"content": ..., "role": ...}, ...], "model": MODEL|null,
     "params": {"max_tokens": N, "seed": S|null, "temperature": T|null, "top_p": P|null}, "v": 1}

``model`` is the endpoint's model; ``adapter`` the LoRA adapter (or per-dimension model name) a request names, if any;
``params`` every decoding setting sent. The server's URL, the backend kind (HTTP, transformers, vLLM), keys and
timeouts are not part of it: the same model asked the same thing on another server or engine is the same question.

Several processes on one host share a file safely: WAL (readers never wait for the writer), a 30 s busy timeout, and
``INSERT OR IGNORE`` (two processes storing the same key keep the first reply; nothing is overwritten or lost).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.store.schema import StoreError, readonly_uri

FORMAT = "esc-eval response cache"
"""``cache_meta.format``: what tells a cache file from any other SQLite file."""
VERSION = 1
"""``cache_meta.version``: files of a newer version are refused; bump it when the table or the key changes."""
KEY_VERSION = 1
"""``v`` in the key's JSON: a changed key definition must never match old replies."""
BUSY_SECONDS = 30.0
"""How long a write waits for another process's write to end before failing."""

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS cache_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    usage TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO cache_meta VALUES ('format', '{FORMAT}');
INSERT OR IGNORE INTO cache_meta VALUES ('version', '{VERSION}');
COMMIT;
"""

_PARAMS = tuple(f.name for f in fields(SamplingParams))
"""Every decoding setting a request carries: a field added to ``SamplingParams`` joins the key."""
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class CacheError(StoreError):
    """The cache file cannot be used: missing (for reading), unreadable, corrupt, another program's, or newer."""


class CachedReply(NamedTuple):
    """One stored reply: its text, the model that answered, and the tokens the request cost (and how they were known)."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    usage: str


def request_key(model: str | None, adapter: str | None, messages: Sequence[ChatMessage], params: SamplingParams) -> str:
    """The cache key of one chat request (the module docstring gives its JSON); floats stay floats (``0`` is ``0.0``).

    >>> a = request_key("m", None, [{"role": "user", "content": "hi"}], SamplingParams(8, 0))
    >>> a == request_key("m", None, [{"role": "user", "content": "hi"}], SamplingParams(8, 0.0)), len(a)
    (True, 64)
    >>> a == request_key("m", "fluency_en", [{"role": "user", "content": "hi"}], SamplingParams(8, 0.0))
    False
    """
    sampling = {name: getattr(params, name) for name in _PARAMS}
    for name in ("temperature", "top_p"):
        if sampling[name] is not None:
            sampling[name] = float(sampling[name])
    canonical = {"v": KEY_VERSION, "model": model, "adapter": adapter, "params": sampling,
                 "messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    return hashlib.sha256(_ENCODER.encode(canonical).encode()).hexdigest()


class ResponseCache:
    """One connection to a cache file: ``get`` by key, ``put_many`` (``INSERT OR IGNORE``, one transaction).

    Open it with ``ResponseCache.open(path, writable=...)``; one connection is used by one thread at a time.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, writable: bool):
        self.path, self._conn, self.writable = path, conn, writable

    @classmethod
    def open(cls, path: str | Path, *, writable: bool) -> ResponseCache:
        """Open (``writable``: or create, folders too) the cache at ``path``; ``CacheError`` names the path and why not.

        A foreign or corrupt file is checked before any change: switching it to WAL would write to it.
        """
        path = Path(path)
        if path.is_dir():
            raise CacheError(f"{path}: is a directory, not a response cache file")
        if not writable and not path.is_file():
            raise CacheError(f"{path}: no such response cache file (cache_mode 'read' reads an existing cache)")
        if writable:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"{path}: cannot create its folder: {exc.strerror or exc}") from None
        try:
            conn = _connect(path, writable)
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{path}: not a readable esc-eval response cache ({exc})") from None
        return cls(path, conn, writable)

    def get(self, key: str) -> CachedReply | None:
        """The reply stored under ``key``, if any; ``CacheError`` when the file fails to answer (a damaged page, say)."""
        try:
            row = self._conn.execute("SELECT text, model, prompt_tokens, completion_tokens, usage FROM replies WHERE key = ?",
                                     (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path}: cannot read a reply ({exc})") from None
        return CachedReply(*row) if row else None

    def put_many(self, replies: Iterable[tuple[str, CachedReply]]) -> None:
        """Store ``(key, reply)`` pairs in one transaction; a key already there keeps its first reply."""
        if not self.writable:
            raise CacheError(f"{self.path}: opened for reading only")
        now = time.time()
        rows = [(key, *reply, now) for key, reply in replies]
        with self._conn:  # isolation_level None: the context manager alone does not begin; BEGIN IMMEDIATE waits its turn
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


def _connect(path: Path, writable: bool) -> sqlite3.Connection:
    """A checked connection. Reading only, it is an ordinary one made ``query_only``, so it sees what a writing process
    commits as WAL readers do; a file it cannot open so (in a read-only folder) is opened read-only."""
    if writable:
        return _checked(sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False), path, writable)
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw", uri=True, timeout=BUSY_SECONDS,
                               isolation_level=None, check_same_thread=False)
        return _checked(conn, path, writable)
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) and "readonly" not in str(exc):
            raise
    conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
    return _checked(conn, path, writable)


def _checked(conn: sqlite3.Connection, path: Path, writable: bool) -> sqlite3.Connection:
    """``conn`` once the file is known to be a cache (closed if not), in WAL mode for writing, ``query_only`` for reading."""
    try:
        _check(path, conn, writable=writable)
        if writable:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _check(path: Path, conn: sqlite3.Connection, *, writable: bool) -> None:
    """Create the tables in a new (empty) file, else make sure the file is a cache this version reads."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        if not writable:
            raise CacheError(f"{path}: an empty file, not an esc-eval response cache")
        conn.executescript(_SCHEMA)  # idempotent: two processes creating one file at once both succeed
        tables = {"cache_meta", "replies"}
    if not {"cache_meta", "replies"} <= tables:
        raise CacheError(f"{path}: not an esc-eval response cache (another SQLite file: tables {', '.join(sorted(tables))})")
    meta = dict(conn.execute("SELECT key, value FROM cache_meta").fetchall())
    if meta.get("format") != FORMAT:
        raise CacheError(f"{path}: not an esc-eval response cache (cache_meta format {meta.get('format')!r})")
    version = int(meta["version"]) if str(meta.get("version", "")).isdigit() else 0
    if version < 1:
        raise CacheError(f"{path}: response cache without a version (cache_meta version {meta.get('version')!r})")
    if version > VERSION:
        raise CacheError(f"{path}: response cache version {version} is newer than this esc-eval reads ({VERSION}); upgrade esc-eval")
