"""The store's safety judgements (table ``safety``): written by the run's writer, read by the report and resumes.

Functions over a ``Store`` rather than methods, so the safety track stays in one module; the SQL
stays inside the store package. Human answers to the same items (``esc-eval annotate``) live in their
own table, ``safety_annotations`` (``add_labels`` / ``labels``; ``add_with_annotations`` writes a label file's
labels and answers in one transaction), never in ``annotations``. ``forget``
clears an episode's judgements when it is played again (queued right after ``Store.start_episode``,
in order with its writes); it keeps the human answers, as a replay keeps the dimension labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from esc_eval.agents.messages import SafetyJudgement
from esc_eval.runs.store.reader import Reader
from esc_eval.runs.store.schema import StoreError
from esc_eval.runs.store.writer import Store

DONE = ("ok", "unparsed", "excluded")
"""Statuses of a judgement a resume keeps; ``failed`` ones are asked again with ``--retry-failed``."""


class SafetyRecord(NamedTuple):
    """One safety judgement of a finished episode, with the episode's grouping fields."""

    episode_key: str
    supporter: str
    persona: str
    card_index: int
    language: str
    seeker: str
    sample: int
    kind: str
    status: str
    items: dict[str, bool] | None
    risk: str | None
    disclosure_round: int | None
    disclosure_turn: int | None
    raw: str | None


def add(store: Store, judgement: SafetyJudgement) -> None:
    """Queue one judgement for the writer (a sample judged again replaces the earlier row)."""
    j = judgement
    store._put(("INSERT OR REPLACE INTO safety VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
        j.episode_key, j.sample, j.kind, j.status, j.items or None, j.raw, j.model, j.latency, j.error, j.risk,
        j.disclosure_round, j.disclosure_turn, time.time(), j.prompt_tokens, j.completion_tokens, j.usage, int(j.cached))))


def forget(store: Store, key: str) -> None:
    """Queue the removal of an episode's judgements: it is being played again."""
    store._put(("DELETE FROM safety WHERE episode_key=?", (key,)))


def has_judgements(reader: Reader) -> bool:
    return reader._has_table("safety") and reader._conn.execute("SELECT 1 FROM safety LIMIT 1").fetchone() is not None


def records(reader: Reader) -> list[SafetyRecord]:
    """Every judgement of finished episodes, in plan order then sample."""
    if not reader._has_table("safety"):
        return []
    rows = reader._conn.execute(
        "SELECT s.episode_key, e.supporter, e.persona, e.card_index, e.language, e.seeker, s.sample, s.kind, s.status, s.items,"
        " s.risk, s.disclosure_round, s.disclosure_turn, s.raw FROM safety s JOIN episodes e ON e.key=s.episode_key"
        " WHERE e.status='done' ORDER BY e.ordinal, s.sample").fetchall()
    return [SafetyRecord._make((*row[:9], json.loads(row[9]) if row[9] else None, *row[10:])) for row in rows]


class SafetyLabel(NamedTuple):
    """One annotator's answer to one safety item of one episode."""

    episode_key: str
    annotator: str
    item: str
    value: bool
    at: float


def add_labels(store: Store, rows: Iterable[tuple[str, str, str, bool, float]]) -> int:
    """Write ``(episode_key, annotator, item, value, at)`` rows in one committed transaction; returns rows written.

    Synchronous, like ``Store.add_annotations``: an answer is on disk when this returns; the same
    annotator answering an item again replaces the earlier answer.
    """
    if store.readonly:
        raise StoreError(f"{store.path}: opened read-only")
    found = [(key, who, item, int(bool(value)), at) for key, who, item, value, at in rows]
    with store._transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO safety_annotations VALUES (?,?,?,?,?)", found)
    return len(found)


def add_with_annotations(store: Store, annotations: Iterable[tuple[str, str, str, int, float]],
                         rows: Iterable[tuple[str, str, str, bool, float]]) -> tuple[int, int]:
    """Write dimension labels (``Store.add_annotations``'s rows) and safety answers (``add_labels``'s) in one committed
    transaction, each replacing the same annotator's earlier one; returns (labels, answers) written. A label file's import."""
    if store.readonly:
        raise StoreError(f"{store.path}: opened read-only")
    labelled = list(annotations)
    found = [(key, who, item, int(bool(value)), at) for key, who, item, value, at in rows]
    with store._transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO annotations VALUES (?,?,?,?,?)", labelled)
        conn.executemany("INSERT OR REPLACE INTO safety_annotations VALUES (?,?,?,?,?)", found)
    return len(labelled), len(found)


def labels(reader: Reader) -> list[SafetyLabel]:
    """Every human safety answer, in plan order; none in a store without the table."""
    if not reader._has_table("safety_annotations"):
        return []
    return [SafetyLabel(key, who, item, bool(value), at) for key, who, item, value, at in reader._conn.execute(
        "SELECT a.episode_key, a.annotator, a.item, a.value, a.at FROM safety_annotations a"
        " LEFT JOIN episodes e ON e.key=a.episode_key ORDER BY e.ordinal, a.episode_key, a.annotator, a.item")]


def kinds(reader: Reader) -> dict[str, tuple[str, int | None]]:
    """Episode key -> (``risk`` or ``control``, the disclosing line's index) of the finished episodes the safety judge took.

    Excluded episodes (ended before their disclosure was answered) have no items to answer and are left out.
    """
    if not reader._has_table("safety"):
        return {}
    return {key: (kind, turn) for key, kind, turn in reader._conn.execute(
        "SELECT s.episode_key, s.kind, MAX(s.disclosure_turn) FROM safety s JOIN episodes e ON e.key=s.episode_key"
        " WHERE e.status='done' AND s.kind IN ('risk', 'control') GROUP BY s.episode_key, s.kind")}


def unjudged(reader: Reader, samples: int, *, include_failed: bool = False) -> list[dict[str, Any]]:
    """Finished episodes with safety samples to judge (again), in plan order.

    A sample is to judge when its row is missing (a crash came between the episode's end and
    its judgement) or, with ``include_failed``, when it failed; an excluded episode is complete.
    Each item: ``key``, ``language``, ``supporter``, ``samples`` (the indexes), ``state`` (the
    seeker's last recorded state, the risk ground truth, or ``None``).
    """
    kept = DONE if include_failed else (*DONE, "failed")
    marks = ",".join("?" * len(kept))
    found = reader._conn.execute(
        "SELECT e.key, e.language, e.supporter,"
        f" (SELECT group_concat(s.sample || ':' || s.status) FROM safety s WHERE s.episode_key=e.key AND s.status IN ({marks})),"
        " (SELECT t.state FROM turns t WHERE t.episode_key=e.key AND t.role='seeker' AND t.state IS NOT NULL ORDER BY t.idx DESC LIMIT 1)"
        " FROM episodes e WHERE e.status='done' ORDER BY e.ordinal", kept).fetchall()
    todo = []
    for key, language, supporter, judged, state in found:
        have = dict(item.split(":") for item in judged.split(",")) if judged else {}
        if "excluded" in have.values():
            continue
        missing = [j for j in range(samples) if str(j) not in have]
        if missing:
            todo.append({"key": key, "language": language, "supporter": supporter, "samples": missing,
                         "state": json.loads(state) if state else None})
    return todo
