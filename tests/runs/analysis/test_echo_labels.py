"""The report counts labels that ESC-Eval's rule read from rubric echoes (issue 31 item 15): a JSON count and a footer note."""

from __future__ import annotations

import json
import random
from pathlib import Path

from esc_eval.agents.judge.labels import parse_esc_rank
from esc_eval.runs.store import EpisodeRows, Store
from esc_eval.testing.cli import esc_eval
from tests.runs.viewer.helpers import _episode

ECHO = "0: The supporter's replies are largely unreadable or meaningless.\n1:"
ECHO_WITH_SCORE = ECHO + "\nScore: 3"  # an echo that then answers: a real label, not counted


def echo_store(path: Path) -> Path:
    """Two supporters × 4 cards; kind-bot's fluency replies on cards 0-2 are echoes ESC-Eval's rule read as 0."""
    rng = random.Random(3)
    episodes = []
    for supporter in ("kind-bot", "terse-bot"):
        for card in range(4):
            rows = _episode(supporter, "default", card, rng, False)
            scores = []
            for score in rows.scores:
                if supporter == "kind-bot" and score["dimension"] == "fluency":
                    raw = ECHO if card < 3 else ECHO_WITH_SCORE
                    score = {**score, "raw": raw, "label": parse_esc_rank(raw)}
                scores.append(score)
            episodes.append(EpisodeRows(rows.episode, rows.turns, tuple(scores)))
    store = Store.create(path, origin="test")
    store.import_episodes(episodes)
    store.close_sync()
    return path


async def test_report_counts_labels_read_from_rubric_echoes(tmp_path: Path) -> None:
    store = echo_store(tmp_path / "echo.sqlite")
    as_json = await esc_eval("report", str(store), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["echo_labels"] == {"fluency": 3}
    table = await esc_eval("report", str(store))
    footer = " ".join(table.stdout.split())  # the note wraps at the table's width
    assert "3 labels (Fluency 3) come from judge replies that only echo the rubric" in footer, table.stdout
    md = await esc_eval("report", str(store), "--format", "md")
    assert "Note: 3 labels (Fluency 3)" in md.stdout


async def test_no_echo_no_note(tmp_path: Path) -> None:
    from tests.runs.viewer.helpers import make_store

    store = make_store(tmp_path / "plain.sqlite", cards=3)
    as_json = await esc_eval("report", str(store), "--format", "json")
    assert json.loads(as_json.stdout)["echo_labels"] == {}
    table = await esc_eval("report", str(store))
    assert "echo the rubric" not in table.stdout
