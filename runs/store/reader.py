"""Typed reads of a store: every query analysis, annotation, formats and the CLI need, as methods.

``Reader`` is the read half of ``Store``: it holds the connection and answers with the
records of ``esc_eval.runs.store.records``, so no module outside ``runs/store/`` writes SQL. Reads
work on a read-only open, and on stores of older schemas (tables added since read as empty).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from esc_eval.runs.store import schema
from esc_eval.runs.store.records import (
    FINAL_ROUND,
    AnnotationRecord,
    EpisodeRecord,
    EpisodeRows,
    EventRecord,
    FinalScore,
    RunRecord,
    ScoreRecord,
    TurnRecord,
    Unscored,
)

_USAGE_DEFAULTS = {"prompt_tokens": "NULL", "completion_tokens": "NULL", "usage": "'reported'", "cached": "0"}
"""Schema 4's usage columns as a store of an older schema reads (docs/cost.md: NULL tokens are unknown)."""


class Reader:
    """Queries over one open SQLite connection of a store."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path, self._conn = path, conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        self._conn.row_factory = sqlite3.Row
        try:
            return self._conn.execute(sql, params).fetchall()
        finally:
            self._conn.row_factory = None

    def _has_table(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    # -- run-level -------------------------------------------------------------------

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def meta_items(self) -> dict[str, Any]:
        """Every meta key with its value (decoded), in key order."""
        return {key: json.loads(value) for key, value in self._conn.execute("SELECT key, value FROM meta ORDER BY key")}

    def table_rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a schema ``table`` as column -> value, by primary key (an archive's generic read).

        A table or column this store's older schema lacks is simply absent.
        """
        if table not in schema.tables():
            raise ValueError(f"no table {table!r} in the store schema")
        if not self._has_table(table):
            return []
        order = ", ".join(schema.primary_key(table)) or "rowid"
        return [dict(row) for row in self._rows(f"SELECT * FROM {table} ORDER BY {order}")]

    def episode_rows(self, keys: Iterable[str]) -> dict[str, EpisodeRows]:
        """The episodes of ``keys`` that the store holds, each with its rows in every episode table (an import compares them)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, EpisodeRows] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            owned: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for table in schema.episode_tables():
                if not self._has_table(table):
                    continue
                order = ", ".join(schema.primary_key(table))
                for row in self._rows(f"SELECT * FROM {table} WHERE episode_key IN ({marks}) ORDER BY {order}", tuple(chunk)):
                    key = row["episode_key"]
                    owned.setdefault(key, {}).setdefault(table, []).append({k: row[k] for k in row.keys() if k != "episode_key"})
            for row in self._rows(f"SELECT * FROM episodes WHERE key IN ({marks})", tuple(chunk)):
                tables = {t: tuple(rows) for t, rows in owned.get(row["key"], {}).items()}
                turns, scores = tables.pop("turns", ()), tables.pop("scores", ())
                found[row["key"]] = EpisodeRows(dict(row), turns, scores, tables)
        return found

    def statuses(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, status FROM episodes"))

    def counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM episodes GROUP BY status"))

    def last_run(self) -> RunRecord | None:
        """The newest invocation that ran this store; ``None`` for a store older than the ``runs`` table."""
        if not self._has_table("runs"):
            return None
        row = self._conn.execute("SELECT id, started_at, heartbeat, ended_at, status, pid, host FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return RunRecord(*row) if row else None

    def events(self, kind: str | None = None, *, episode: str | None = None) -> list[EventRecord]:
        """The run's events in the order they happened, optionally of one ``kind`` / about one ``episode`` key."""
        names = ", ".join(EventRecord._fields)
        where = [(c, v) for c, v in (("kind", kind), ("episode_key", episode)) if v is not None]
        clause = f"WHERE {' AND '.join(f'{c}=?' for c, _ in where)}" if where else ""
        return [EventRecord(*row) for row in self._conn.execute(f"SELECT {names} FROM events {clause} ORDER BY id",
                                                                 tuple(v for _, v in where))]

    def version(self) -> tuple[int, ...]:
        """A cheap mark that changes whenever episodes, turns, scores or events are written (a page follows a live store)."""
        return tuple(self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM episodes), (SELECT COUNT(*) FROM episodes WHERE status IN ('done','failed')),"
            " (SELECT COALESCE(MAX(rowid), 0) FROM turns), (SELECT COALESCE(MAX(rowid), 0) FROM scores),"
            " (SELECT COALESCE(MAX(rowid), 0) FROM events)").fetchone())

    # -- episodes and turns -------------------------------------------------------------

    def episodes(self, status: str | None = None, *, supporter: str | None = None, language: str | None = None,
                 with_turns: bool = False) -> list[EpisodeRecord]:
        """Episodes in plan order, optionally only of one ``status`` / ``supporter`` / ``language``, or having turns."""
        where, params = [], []
        for column, value in (("status", status), ("supporter", supporter), ("language", language)):
            if value is not None:
                where.append(f"e.{column}=?")
                params.append(value)
        if with_turns:
            where.append("EXISTS (SELECT 1 FROM turns t WHERE t.episode_key=e.key)")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        names = ", ".join(f"e.{name}" for name in EpisodeRecord._fields).replace("e.seeker", self._seeker())
        return [EpisodeRecord(*row) for row in self._conn.execute(f"SELECT {names} FROM episodes e {clause} ORDER BY e.ordinal",
                                                                   tuple(params))]

    def episode(self, key: str) -> EpisodeRecord | None:
        """One episode by key, or ``None``."""
        names = ", ".join(EpisodeRecord._fields).replace("seeker", self._seeker())
        row = self._conn.execute(f"SELECT {names} FROM episodes WHERE key=?", (key,)).fetchone()
        return EpisodeRecord(*row) if row else None

    def stored_columns(self, table: str) -> set[str]:
        """The columns ``table`` has in this store: a store of an older schema read read-only lacks the newer ones."""
        return {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}

    def _seeker(self) -> str:
        """The ``seeker`` column, or ``''`` in a store of schema 2 or older (one seeker) read read-only."""
        return "seeker" if "seeker" in self.stored_columns("episodes") else "'' AS seeker"

    def seekers(self) -> list[str]:
        """The distinct seeker labels of the store's episodes, in plan order (``''``: a store from before schema 3)."""
        if self._seeker() != "seeker":
            return [""] if self.counts() else []
        return [s for (s,) in self._conn.execute("SELECT seeker FROM episodes GROUP BY seeker ORDER BY MIN(ordinal)")]

    def transcript(self, key: str) -> list[tuple[str, str]]:
        return [(role, text) for role, text in self._conn.execute("SELECT role, text FROM turns WHERE episode_key=? ORDER BY idx", (key,))]

    def transcripts(self) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        """Every episode's (key, transcript), in plan order, in one scan."""
        current: str | None = None
        lines: list[tuple[str, str]] = []
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

    def _columns(self, table: str, fields: Sequence[str], defaults: dict[str, str]) -> str:
        """A record's ``fields`` as ``table``'s columns; one this store's older schema lacks reads as its default (read-only opens)."""
        have = self.stored_columns(table)
        return ", ".join(name if name in have else f"{defaults[name]} AS {name}" for name in fields)

    def turns(self, episode: str | None = None) -> list[TurnRecord]:
        """Every turn (or one ``episode`` key's), by episode key and index (exports, the viewer)."""
        names = self._columns("turns", TurnRecord._fields, _USAGE_DEFAULTS)
        clause, params = ("WHERE episode_key=?", (episode,)) if episode is not None else ("", ())
        return [TurnRecord(*row) for row in self._conn.execute(f"SELECT {names} FROM turns {clause} ORDER BY episode_key, idx", params)]

    def turn_counts(self) -> dict[str, tuple[int, list[float]]]:
        """Episode key -> its number of turns and the seeker's distress after each turn that records one, in turn order.

        The viewer's episode rows, aggregated in SQL: no turn's text is read (a large store has ~40k episodes).
        A distress is a number in the turn's hidden ``state`` (JSON), as the page charts it.
        """
        found: dict[str, tuple[int, list[float]]] = {
            key: (count, []) for key, count in self._conn.execute("SELECT episode_key, COUNT(*) FROM turns GROUP BY episode_key")}
        for key, distress in self._conn.execute(
                "SELECT episode_key, json_extract(state, '$.distress') FROM turns WHERE state IS NOT NULL AND state != ''"
                " AND json_type(state, '$.distress') IN ('integer', 'real') ORDER BY episode_key, idx"):
            found[key][1].append(distress)
        return found

    # -- judge scores ---------------------------------------------------------------------

    def _sample(self, table: str = "") -> str:
        """The ``sample`` column (of the ``table`` alias), or 0 in a store of schema 1 (before judge samples) read read-only."""
        return f"{table + '.' if table else ''}sample" if "sample" in self.stored_columns("scores") else "0 AS sample"

    def scores(self, episode: str | None = None) -> list[ScoreRecord]:
        """Every judge score (or one ``episode`` key's), final and per round, by episode key, round and dimension."""
        names = self._columns("scores", ScoreRecord._fields, {"sample": "0", **_USAGE_DEFAULTS})
        clause, params = ("WHERE episode_key=?", (episode,)) if episode is not None else ("", ())
        return [ScoreRecord(*row) for row in self._conn.execute(
            f"SELECT {names} FROM scores {clause} ORDER BY episode_key, round, dimension", params)]

    def final_scores(self) -> list[FinalScore]:
        """Whole-episode judge labels of finished episodes, in plan order, then dimension and sample.

        Works read-only on a store of schema 1 (before judge samples): its labels are sample 0.
        """
        return list(map(FinalScore._make, self.final_score_rows()))

    def final_score_rows(self) -> list[tuple[str, str, int | None, str, int]]:
        """``final_scores`` as plain tuples (the same fields): a large store's reports read ~300k of them, and a
        named tuple each costs more than the query."""
        return self._conn.execute(
            f"SELECT s.episode_key, s.dimension, s.label, s.status, {self._sample('s')} FROM scores s"
            " JOIN episodes e ON e.key = s.episode_key WHERE s.round=? AND e.status='done'"
            " ORDER BY e.ordinal, s.dimension, sample", (FINAL_ROUND,)).fetchall()

    def unscored(self, dimensions: Sequence[str], *, include_failed: bool = False) -> list[Unscored]:
        """Finished episodes with judge dimensions to score (again), in plan order.

        A dimension is to score when its final score is missing (a crash came between the
        episode's end and its scores) or, with ``include_failed``, when any of its scores
        (final or per round) failed.
        """
        sep = "\x1f"
        ok = "AND s.status='ok'" if include_failed else ""
        found = self._rows(
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
            missing = tuple(d for d in dimensions if d not in complete)
            if missing:
                todo.append(Unscored(row["key"], row["language"], row["supporter"], missing))
        return todo

    def labelled_multiline_replies(self) -> list[tuple[str, str, str]]:
        """``(episode key, dimension, raw reply)`` of finished episodes' final labels 0..4 whose reply spans several lines.

        The replies a rubric echo can hide in (``esc_eval.agents.judge.labels.echoes_rubric``), without reading every reply.
        """
        return list(self._conn.execute(
            "SELECT s.episode_key, s.dimension, s.raw FROM scores s JOIN episodes e ON e.key=s.episode_key"
            " WHERE s.round=? AND s.status='ok' AND s.label BETWEEN 0 AND 4 AND e.status='done'"
            " AND instr(s.raw, char(10)) > 0 AND (instr(s.raw, ':') > 0 OR instr(s.raw, '：') > 0)",
            (FINAL_ROUND,)))

    def failed_scores(self) -> int:
        """Judge scores of finished episodes that failed (the judge gave up), final or per round."""
        return self._conn.execute(
            "SELECT COUNT(*) FROM scores s JOIN episodes e ON e.key=s.episode_key WHERE s.status='failed' AND e.status='done'"
        ).fetchone()[0]

    # -- human labels ---------------------------------------------------------------------

    def annotations(self) -> list[AnnotationRecord]:
        """Every human label, in plan order; none in a store without the table."""
        if not self._has_table("annotations"):
            return []
        return [AnnotationRecord(*row) for row in self._conn.execute(
            "SELECT a.episode_key, a.annotator, a.dimension, a.label, a.at FROM annotations a"
            " LEFT JOIN episodes e ON e.key=a.episode_key ORDER BY e.ordinal, a.episode_key, a.annotator, a.dimension")]
