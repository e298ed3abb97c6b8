"""Reading a store while another process writes it: the incremental queries behind ``esc-eval monitor``.

A ``LiveReader`` keeps a watermark (the highest rowid it has read) for each table that
only grows (turns, scores, events), so a refresh reads what was written since the last
one, never the whole table: its cost does not grow with the run. Everything it returns
is typed; what the numbers mean to a display is the monitor's business
(``esc_eval.runs.monitor.sources.StoreSource``). A read that finds the store busy (a writer's
checkpoint, a lock) raises ``StoreBusy``; the same call may simply be made again.

Example::

    reader = LiveReader(Store.open(path, readonly=True))
    counts = reader.status_counts()          # {"done": 12, "running": 4, ...}
    for tally in reader.new_turns().counts:  # only turns written since the last call
        ...
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from esc_eval.runs.store.records import FINAL_ROUND, RunRecord
from esc_eval.runs.store.schema import StoreError
from esc_eval.runs.store.writer import Store


class StoreBusy(StoreError):
    """The store could not be read just now (locked, being checkpointed); reading again later may succeed."""


@dataclass(frozen=True, slots=True)
class TurnCount:
    """Turns of one role (and, for supporter turns, one supporter) written since the last read.

    ``requests`` counts the turns that were generated (a latency above 0): the fixed opener was not.
    """

    role: str
    supporter: str
    turns: int
    tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """One generated turn's request latency, with whose request it was."""

    role: str
    supporter: str
    seconds: float


@dataclass(frozen=True, slots=True)
class NewTurns:
    """What ``LiveReader.new_turns`` found: counts by role and supporter, and the latest latencies in write order."""

    counts: tuple[TurnCount, ...] = ()
    latencies: tuple[TurnLatency, ...] = ()


@dataclass(frozen=True, slots=True)
class NewScores:
    """What ``LiveReader.new_scores`` found: judge requests that succeeded and the latest of their latencies."""

    ok: int = 0
    latencies: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class EventCount:
    """How many events of one ``kind`` (``retry:429``, ``fault:timeout``, ...) an endpoint logged since the last read."""

    endpoint: str | None
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class ScoreTally:
    """Final (whole-episode) judge scores of one supporter on one dimension.

    ``label_sum``/``valid`` cover the successful scores with a label on the 0..4 scale;
    ``scores`` counts every final score, ``failed`` those the judge gave up on. ``card_mean``
    is the report's estimand on the label scale: the mean over cards of the card's mean over
    its episodes of the episode's mean label (``nan`` without a valid label).
    """

    supporter: str
    dimension: str
    label_sum: int
    valid: int
    scores: int
    failed: int
    card_mean: float = math.nan


@dataclass(frozen=True, slots=True)
class EpisodeState:
    status: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class LiveTurn:
    """One stored turn as a live view shows it: ``state`` is the seeker's hidden state (JSON) or ``None``."""

    index: int
    role: str
    text: str
    state: str | None


class LiveReader:
    """Incremental, rowid-based reads of ``store`` for a live view.

    Args:
        store: a store, usually opened read-only while its run goes on elsewhere.
        recent: how many of the latest latencies per kind the readers return (the monitor's
            percentile window); turn latencies are taken from the last ``4 * recent`` turns,
            since several endpoints share them.

    The ``new_*`` methods move their watermark: each row is counted once.
    """

    def __init__(self, store: Store, *, recent: int = 512):
        self.store, self.recent = store, recent
        self._turns_seen = self._scores_seen = self._events_seen = 0
        with _busy():
            cached = "cached" in store.stored_columns("turns")  # a store before schema 4 has no cache hits
        self._generated = "CASE WHEN t.cached = 0 THEN t.completion_tokens ELSE 0 END" if cached else "t.completion_tokens"
        """A turn's tokens generated: a cache hit generated none (as ``RunProgress.tokens_out`` counts them)."""

    @property
    def scores_seen(self) -> int:
        """A position that grows whenever ``new_scores`` found scores written since its last call."""
        return self._scores_seen

    # -- growing tables, past their watermark ---------------------------------------------

    def new_turns(self) -> NewTurns:
        """Turns written since the last call, counted by role and supporter, and their latest latencies."""
        high = self._scalar("SELECT MAX(rowid) FROM turns")
        if not high or high <= self._turns_seen:
            return NewTurns()
        low = self._turns_seen
        counts = tuple(TurnCount(role, supporter, n, tokens or 0, requests) for role, supporter, n, tokens, requests in self._rows(
            f"SELECT t.role, e.supporter, COUNT(*), SUM({self._generated}), COUNT(CASE WHEN t.latency > 0 THEN 1 END)"
            " FROM turns t JOIN episodes e ON e.key = t.episode_key"
            " WHERE t.rowid > ? AND t.rowid <= ? GROUP BY t.role, e.supporter", (low, high)))
        latencies = tuple(TurnLatency(role, supporter, latency) for role, supporter, latency in self._rows(
            "SELECT t.role, e.supporter, t.latency FROM turns t JOIN episodes e ON e.key = t.episode_key"
            " WHERE t.rowid > ? AND t.rowid <= ? AND t.latency > 0 ORDER BY t.rowid", (max(low, high - 4 * self.recent), high)))
        self._turns_seen = high
        return NewTurns(counts, latencies)

    def new_scores(self) -> NewScores:
        """Judge scores written since the last call: how many succeeded, and the latest of their latencies."""
        high = self._scalar("SELECT MAX(rowid) FROM scores")
        if not high or high <= self._scores_seen:
            return NewScores()
        low = self._scores_seen
        ok = self._scalar("SELECT COUNT(*) FROM scores WHERE rowid > ? AND rowid <= ? AND status = 'ok'", (low, high)) or 0
        latencies = tuple(latency or 0.0 for (latency,) in self._rows(
            "SELECT latency FROM scores WHERE rowid > ? AND rowid <= ? AND status = 'ok' ORDER BY rowid",
            (max(low, high - self.recent), high)))
        self._scores_seen = high
        return NewScores(ok, latencies)

    def new_events(self) -> tuple[EventCount, ...]:
        """Events logged since the last call, counted by endpoint and kind."""
        high = self._scalar("SELECT MAX(id) FROM events")
        if not high or high <= self._events_seen:
            return ()
        found = tuple(EventCount(endpoint, kind, n) for endpoint, kind, n in self._rows(
            "SELECT endpoint, kind, COUNT(*) FROM events WHERE id > ? AND id <= ? GROUP BY endpoint, kind", (self._events_seen, high)))
        self._events_seen = high
        return found

    def newest_episode(self, exclude: str | None = None) -> str | None:
        """The episode that most recently started (its first turn is among the latest read), else the latest written to."""
        since = self._turns_seen - 4 * self.recent
        for sql in ("SELECT episode_key FROM turns WHERE rowid > ? AND idx = 0 AND episode_key IS NOT ? ORDER BY rowid DESC LIMIT 1",
                    "SELECT episode_key FROM turns WHERE rowid > ? AND episode_key IS NOT ? ORDER BY rowid DESC LIMIT 1"):
            row = self._rows(sql, (since, exclude))
            if row:
                return str(row[0][0])
        return None

    # -- small reads by key or index ---------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        """Episodes by status (``planned``, ``running``, ``done``, ``failed``): an index scan."""
        with _busy():
            return self.store.counts()

    def find_episode(self, part: str) -> str:
        """The key of the episode whose key is ``part`` or the only one containing it; ``StoreError`` otherwise."""
        if self._rows("SELECT 1 FROM episodes WHERE key = ?", (part,)):
            return part
        found = [str(key) for (key,) in self._rows("SELECT key FROM episodes WHERE instr(key, ?) > 0 LIMIT 6", (part,))]
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"{self.store.path}: no episode key contains {part!r}")
        listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise StoreError(f"{self.store.path}: {part!r} matches several episodes ({listed}); give more of the key")

    def episode_state(self, key: str) -> EpisodeState | None:
        row = self._rows("SELECT status, outcome FROM episodes WHERE key = ?", (key,))
        return EpisodeState(row[0][0], row[0][1]) if row else None

    def last_turns(self, key: str, n: int) -> tuple[LiveTurn, ...]:
        """The last ``n`` turns of episode ``key``, oldest first."""
        return tuple(LiveTurn(*row) for row in reversed(self._rows(
            "SELECT idx, role, text, state FROM turns WHERE episode_key = ? ORDER BY idx DESC LIMIT ?", (key, n))))

    def last_run(self) -> RunRecord | None:
        with _busy():
            return self.store.last_run()

    # -- full aggregates (the caller decides how often) ---------------------------------------

    def final_score_tallies(self) -> tuple[ScoreTally, ...]:
        """Final judge scores by supporter and dimension: a scan of the scores, for the running leaderboard."""
        means = {(supporter, dimension): mean for supporter, dimension, mean in self._rows(
            "SELECT supporter, dimension, AVG(card) FROM ("
            " SELECT supporter, dimension, AVG(episode) AS card FROM ("
            "  SELECT e.supporter, e.language, e.card_index, s.dimension, AVG(s.label) AS episode"
            "  FROM scores s JOIN episodes e ON e.key = s.episode_key"
            "  WHERE s.round = ? AND s.status = 'ok' AND s.label BETWEEN 0 AND 4 GROUP BY s.episode_key, s.dimension)"
            " GROUP BY supporter, dimension, language, card_index) GROUP BY supporter, dimension", (FINAL_ROUND,))}
        return tuple(ScoreTally(supporter, dimension, total or 0, valid, n, errors, means.get((supporter, dimension), math.nan))
                     for supporter, dimension, total, valid, n, errors in self._rows(
            "SELECT e.supporter, s.dimension,"
            " SUM(CASE WHEN s.status = 'ok' AND s.label BETWEEN 0 AND 4 THEN s.label END),"
            " COUNT(CASE WHEN s.status = 'ok' AND s.label BETWEEN 0 AND 4 THEN 1 END), COUNT(*),"
            " COUNT(CASE WHEN s.status != 'ok' THEN 1 END)"
            " FROM scores s JOIN episodes e ON e.key = s.episode_key WHERE s.round = ? GROUP BY e.supporter, s.dimension",
            (FINAL_ROUND,)))

    def outcome_counts(self) -> dict[str, int]:
        """Ended episodes by outcome: a table scan, worth repeating only when an episode ended since."""
        return {outcome: n for outcome, n in self._rows(
            "SELECT outcome, COUNT(*) FROM episodes WHERE status IN ('done', 'failed') GROUP BY outcome") if outcome}

    def first_start(self) -> float | None:
        """When the first episode started (wall clock); ``None`` before any did."""
        return self._scalar("SELECT MIN(started_at) FROM episodes")

    def last_end(self) -> float | None:
        """When the last episode ended (wall clock); ``None`` before any did."""
        return self._scalar("SELECT MAX(ended_at) FROM episodes")

    # -- the one way in -------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with _busy():
            return self.store._conn.execute(sql, params).fetchall()

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None


@contextlib.contextmanager
def _busy() -> Iterator[None]:
    """SQLite's operational errors while reading a live store (locked, checkpointing) as ``StoreBusy``."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreBusy(str(exc)) from exc
