"""The reader's SQL aggregates for the viewer (turn counts and distress, final scores as tuples) equal the Python ones."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from esc_eval.runs.store import Store
from tests.runs.analysis.test_cost import make


def _python_counts(store: Store) -> dict[str, tuple[int, list[float]]]:
    """What the viewer computed before: every turn read, its JSON state parsed, numeric distress kept in turn order."""
    found: dict[str, tuple[int, list[float]]] = {}
    for turn in store.turns():
        count, distress = found.get(turn.episode_key, (0, []))
        state = json.loads(turn.state) if turn.state else None
        if state is not None and isinstance(state.get("distress"), (int, float)):
            distress = [*distress, state["distress"]]
        found[turn.episode_key] = (count + 1, distress)
    return found


def test_turn_counts_equal_the_python_count_and_distress(tmp_path: Path) -> None:
    path = make(tmp_path)
    states = [json.dumps({"distress": 4}), json.dumps({"distress": 2.5, "x": 1}), None, "", json.dumps({"mood": "sad"}),
              json.dumps({"distress": "high"}), json.dumps({"distress": None}), json.dumps({"distress": 0.125})]
    conn = sqlite3.connect(path)
    keys = conn.execute("SELECT episode_key, idx FROM turns ORDER BY episode_key, idx DESC").fetchall()  # reversed: order counts
    assert len(keys) >= 4
    conn.executemany("UPDATE turns SET state=? WHERE episode_key=? AND idx=?",
                     [(states[i % len(states)], key, idx) for i, (key, idx) in enumerate(keys)])
    conn.commit()
    conn.close()
    with Store.open(path, readonly=True) as store:
        got, expected = store.turn_counts(), _python_counts(store)
    assert got == expected
    assert any(distress for _, distress in got.values())        # the test exercises distress values, not only counts
    assert sum(count for count, _ in got.values()) == len(keys)


def test_final_score_rows_are_the_final_scores_as_tuples(tmp_path: Path) -> None:
    with Store.open(make(tmp_path), readonly=True) as store:
        rows, records = store.final_score_rows(), store.final_scores()
    assert rows and rows == [tuple(r) for r in records]
