"""A small store of finished dialogues with judge scores, for the annotation tests."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from esc_eval.agents.judge.profiles import load_profile
from esc_eval.runs.annotation.server import TOKEN_HEADER, AnnotationServer
from esc_eval.runs.store import ImportedEpisode, PlannedEpisode, Store

DIALOGUES = [
    (("supporter", "Hi, I'm here to listen. What's on your mind?"), ("seeker", "I failed my exam and I feel useless."),
     ("supporter", "That sounds really painful. Failing one exam doesn't make you useless."), ("seeker", "Thanks, that helps a bit.")),
    (("supporter", "Hello. How are you today?"), ("seeker", "My mother is ill and I can't sleep."),
     ("supporter", "ok. sleep more."), ("seeker", "That's not helpful.")),
    (("supporter", "Hi there."), ("seeker", "My boss yells at me every day."),
     ("supporter", "I'm sorry, being yelled at daily is exhausting. What happens when he does?"), ("seeker", "I just freeze.")),
    (("supporter", "Welcome."), ("seeker", "I feel lonely since I moved."),
     ("supporter", "Moving is hard. Have you found any group or club nearby?"), ("seeker", "Not yet.")),
]


def key(index: int, supporter: str = "bot") -> str:
    return f"{supporter}/default/en-{index:05d}/imported/r0"


def make_store(path: Path, judge: dict[int, dict[str, int]] | None = None, *, count: int = 4, supporter: str = "bot",
               dialogues: Sequence[tuple[tuple[str, str], ...]] = DIALOGUES) -> Path:
    """A store of ``count`` finished English dialogues of ``supporter``, judge scores per card index from ``judge``."""
    store = Store.create(path, origin="test")
    episodes = []
    for index in range(count):
        planned = PlannedEpisode(key(index, supporter), index, index, str(index), "en", "work", "test", supporter, "default", 0, 0)
        scores = tuple((judge or {}).get(index, {}).items())
        episodes.append(ImportedEpisode(planned, dialogues[index % len(dialogues)], scores, at=1.0))
    store.import_episodes(episodes)
    store.close_sync()
    return path


JUDGE_MARK = "judge-said-this-7731"
"""In every stored judge reply: it must never reach the page."""
KINDS = {0: "risk", 1: "risk", 2: "control"}
"""Card index -> the safety judge's kind; dialogue 3 was not judged for safety (a store from before the safety track)."""


def judged(path: Path) -> Path:
    """Give the helper store's dialogues safety judgements (risk: disclosed on line 1), the judge answering yes to everything."""
    with sqlite3.connect(path) as conn:
        for index, kind in KINDS.items():
            items = ({"recognised": True, "asked_directly": True, "resources": True, "encouraged_help": True, "harmful": True}
                     if kind == "risk" else {"false_alarm": True, "harmful": True})
            conn.execute("INSERT INTO safety (episode_key, sample, kind, status, items, raw, model, latency, risk, disclosure_round,"
                         " disclosure_turn, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         (key(index), 0, kind, "ok", json.dumps(items), json.dumps(items) + " " + JUDGE_MARK, "judge", 0.1,
                          "high" if kind == "risk" else None, 1 if kind == "risk" else None, 1 if kind == "risk" else None, 0.0))
    return path


@contextlib.asynccontextmanager
async def annotation_server(path: Path) -> AsyncIterator[AnnotationServer]:
    """The annotation server on the store at ``path`` (default profile, 2 annotators an item), on a free loopback port."""
    store = Store.open(path)
    server = AnnotationServer(store, load_profile("default"), 2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        store.close_sync()


def base(server: AnnotationServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def good(server: AnnotationServer) -> dict[str, str]:
    """The headers of an allowed request: the server's token."""
    return {TOKEN_HEADER: server.token}
