"""Shared by the round-trip and merging tests: a real run's store (``Runner`` with scripted backends, the store
made as ``esc-eval run`` makes it), the CLI in-process, and table-by-table reads of a store file.

The run: two supporters, two personas (seeker state, a natural ending), a judge with two samples per
dimension scoring every round, raw replies, unparsed (-1) labels, failed judgements with their errors,
failed episodes with their reasons; then human labels, an event and the annotation server's secret.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from esc_eval.agents.backends.base import ServerError
from esc_eval.agents.backends.scripted import ScriptedBackend
from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.roles.loaders import builtin_cards
from esc_eval.runs.cli import main
from esc_eval.runs.config import Config, parse_config
from esc_eval.runs.execution.resume import open_run_store
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store, schema

URL = "http://127.0.0.1:9/v1"
TROUBLE = "Trouble at home, really."
"""The seeker's line for the second card; supporter b fails on it, so those episodes fail."""
SECRET = "0123456789abcdef-never-exported"


def seeker_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if "end your message with [END]" in messages[0]["content"]:
        return "Thanks, that helps. Bye. [END]"
    if builtin_cards("en")[1].profile in messages[0]["content"]:
        return TROUBLE
    return "I keep going over it at night."


def supporter_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if model == "b" and any(TROUBLE in m["content"] for m in messages):
        raise ServerError("HTTP 500: supporter b is down")
    return "That sounds so hard; I understand." if model == "a" else "Okay."


def judge_script(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
    if model == "empathic-model" and any("Okay." in m["content"] for m in messages):
        raise ServerError("HTTP 503: empathy adapter not loaded")
    return "no label here" if model == "overall-model" else f"Score: {len(messages[-1]['content']) % 5}"


def run_config(rounds: int = 3) -> Config:
    return parse_config({
        "run": {"rounds": rounds, "concurrency": 8},
        "cards": {"language": "en", "limit": 2},
        "seeker": {"base_url": URL, "model": "seeker", "personas": ["leaves-when-satisfied", "default"]},
        "supporters": [{"name": "a", "base_url": URL, "model": "a"}, {"name": "b", "base_url": URL, "model": "b"}],
        "judge": {"base_url": URL, "model": "judge-model", "score_every_round": True, "samples": 2, "temperature": 0.7,
                  "models": {"empathic": "empathic-model", "overall": "overall-model"}},
    }, "run.toml")


def backends() -> dict[str, ScriptedBackend]:
    return {"seeker": ScriptedBackend(seeker_script, model="seeker"), "a": ScriptedBackend(supporter_script, model="a"),
            "b": ScriptedBackend(supporter_script, model="b"), "judge": ScriptedBackend(judge_script, model="judge-model")}


async def make_run(path: Path, rounds: int = 3) -> Path:
    """A run's store as ``esc-eval run`` leaves it, then human labels, an event and the annotation server's secret."""
    plan = RunPlan.prepare(run_config(rounds))
    result = await Runner(plan, open_run_store(plan, path, resume=False).store, backends=backends()).run()
    assert result.exit_code == 1  # supporter b's episodes on the second card failed
    with Store.open(path) as store:
        done = [e.key for e in store.episodes(status="done")]
        store.add_annotations([(key, annotator, "empathic", (i + len(annotator)) % 5, 100.0 + i)
                               for i, key in enumerate(done) for annotator in ("ann", "bea")])
        store.add_event("note", "labelled by two annotators", episode_key=done[0])
        store.set_meta(annotation_secret=SECRET)
    return path


EXCLUDED_META = ("annotation_secret", "imports")
"""Meta that differs after a round trip, as docs/reliability.md lists: the secret never leaves; an import records itself."""


def content(path: Path, *, tables: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the file (or of ``tables``), in a fixed order; meta without ``EXCLUDED_META``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        names = tables or [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        out = {}
        for name in names:
            width = len(conn.execute(f"SELECT * FROM {name} LIMIT 0").description)
            out[name] = [dict(row) for row in conn.execute(f"SELECT * FROM {name} ORDER BY {', '.join(map(str, range(1, width + 1)))}")]
        if "meta" in out:
            out["meta"] = [row for row in out["meta"] if row["key"] not in EXCLUDED_META]
        return out
    finally:
        conn.close()


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def export(source: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = cli(capsys, "export", source, "--format", "jsonl", "--out", out)
    assert code == 0, err
    return out / "episodes.jsonl"


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def format_2(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines a format-2 export of the same store held: no store line, no ordinal, no annotations."""
    later = set(schema.episode_tables()) - {"turns", "scores"}  # annotations, and tables added since
    return [{**{k: v for k, v in r.items() if k != "ordinal" and k not in later}, "format_version": 2} for r in records[1:]]
