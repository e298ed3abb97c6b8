"""Exports (and imports) of run data: ESC-Eval's result/score files and JSONL.

ESC-Eval result files are JSON objects keyed by the card's index in the run's card list
("0", "1", ...); each value is the transcript as lines ``"AI assistant：text"`` (supporter)
or ``"ESC-Role：text"`` (seeker), opener first, U+FF1A after the name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from runs.store import FINAL_ROUND, Store

PREFIXES = {"supporter": "AI assistant：", "seeker": "ESC-Role："}
ROLES_BY_PREFIX = {prefix: role for role, prefix in PREFIXES.items()}


def transcript_lines(transcript: Iterable[tuple[str, str]]) -> list[str]:
    return [PREFIXES[role] + text for role, text in transcript]


def parse_lines(lines: Iterable[str]) -> list[tuple[str, str]]:
    """Turn ESC-Eval result lines back into ``(role, text)``; raises ``ValueError`` on an unknown prefix."""
    out = []
    for line in lines:
        for prefix, role in ROLES_BY_PREFIX.items():
            if line.startswith(prefix):
                out.append((role, line[len(prefix):]))
                break
        else:
            raise ValueError(f"line does not start with {' or '.join(map(repr, ROLES_BY_PREFIX))}: {line[:40]!r}")
    return out


def _file_stem(episode: Any) -> str:
    name = episode["supporter"]
    if episode["persona"] != "default":
        name += f"-{episode['persona']}"
    if episode["repeat"]:
        name += f"-r{episode['repeat']}"
    return f"{name}_{episode['language']}"


def export_esc_eval(store: Store, out: Path) -> list[Path]:
    """Write ``result_{supporter}_{lang}.json`` (and ``score_...`` when scored) for finished episodes."""
    episodes = {e["key"]: e for e in store.episodes(status="done")}
    results: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for key, transcript in store.transcripts():
        if key in episodes:
            e = episodes[key]
            results[_file_stem(e)][str(e["card_index"])] = transcript_lines(transcript)
    scores: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for row in store.rows("SELECT episode_key, dimension, label FROM scores WHERE round=? AND status='ok'", (FINAL_ROUND,)):
        e = episodes.get(row["episode_key"])
        if e is not None:
            scores[_file_stem(e)].setdefault(str(e["card_index"]), {})[row["dimension"]] = row["label"]
    written = []
    for stem, data in sorted(results.items()):
        written.append(write_json(out / f"result_{stem}.json", _by_index(data)))
    for stem, data in sorted(scores.items()):
        written.append(write_json(out / f"score_{stem}.json", _by_index(data)))
    return written


def export_jsonl(store: Store, out: Path) -> list[Path]:
    """One line per planned episode with card, outcome, turns (with usage) and scores."""
    turns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.rows("SELECT * FROM turns ORDER BY episode_key, idx"):
        turn = {k: row[k] for k in ("role", "text", "prompt_tokens", "completion_tokens", "latency", "at")}
        if "state" in row.keys() and row["state"]:  # the seeker's hidden state (stores of schema 2 on)
            turn["state"] = json.loads(row["state"])
        turns[row["episode_key"]].append(turn)
    scores: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in store.rows("SELECT * FROM scores WHERE round=?", (FINAL_ROUND,)):
        scores[row["episode_key"]][row["dimension"]] = row["label"] if row["status"] == "ok" else None
    path = out / "episodes.jsonl"
    lines = []
    for e in store.episodes():
        record = {k: e[k] for k in e.keys() if k != "ordinal"}
        record["turns"] = turns.get(e["key"], [])
        record["scores"] = scores.get(e["key"], {})
        lines.append(json.dumps(record, ensure_ascii=False))
    return [write_text(path, "\n".join(lines) + "\n")]


def _by_index(data: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(data.items(), key=lambda item: int(item[0])))


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, ensure_ascii=False, indent=4))


def write_text(path: Path, text: str) -> Path:
    """Atomic: a crash never leaves a half-written export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
