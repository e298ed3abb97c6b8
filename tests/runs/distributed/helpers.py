"""A fake OpenAI server on its own thread (Ray workers reach it over 127.0.0.1), configs and store dumps."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from esc_eval.testing.fake_server import FakeOpenAIServer, default_responder
from esc_eval.testing.scenarios import JUDGE_MODEL, write_cards, write_run_config


def responder(body: dict[str, Any]) -> str:
    """Deterministic given the request: the fake server's default reply; the judge gives a parseable score."""
    if body.get("model") == JUDGE_MODEL:
        return f"Score: {len(body.get('messages', [])) % 5}"
    return default_responder(body)


class ThreadedServer:
    """``FakeOpenAIServer`` served by an event loop on a daemon thread of this process."""

    def __init__(self, **options: Any):
        self.server = FakeOpenAIServer(responder=responder, record=False, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-server", daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def write_config(workdir: Path, base_url: str, *, cards: int, rounds: int, supporters: tuple[str, ...] = ("alpha", "beta"),
                 judge: bool = True, concurrency: int = 64, **run: Any) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    endpoint = {"base_url": base_url, "max_connections": 32, "timeout": 30.0}
    return write_run_config(
        workdir / "run.toml",
        run={"name": "distributed", "rounds": rounds, "concurrency": concurrency, "seed": 7, **run},
        cards={"path": str(write_cards(workdir / "cards.jsonl", cards)), "language": "en"},
        seeker={**endpoint, "model": "esc-role"},
        supporters=[{"name": name, **endpoint, "model": f"{name}-model"} for name in supporters],
        judge={**endpoint, "model": JUDGE_MODEL, "max_connections": 32} if judge else None,
    )


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What decides a run's results, minus timings and attempt counts: comparable across executors."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            "episodes": conn.execute("SELECT key, ordinal, supporter, persona, seed, status, outcome, reason "
                                     "FROM episodes ORDER BY key").fetchall(),
            "turns": conn.execute("SELECT episode_key, idx, role, text, prompt_tokens, completion_tokens "
                                  "FROM turns ORDER BY episode_key, idx").fetchall(),
            "scores": conn.execute("SELECT episode_key, dimension, round, label, raw, model, status "
                                   "FROM scores ORDER BY episode_key, dimension, round").fetchall(),
        }
    finally:
        conn.close()
