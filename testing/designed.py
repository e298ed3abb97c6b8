"""Designed stores: exact judge labels chosen by a test or benchmark, written as a JSONL export and imported.

A design is a list of ``DesignedEpisode`` (supporter, card, labels per dimension, any number of
judge samples); ``write_design`` writes it as an ``esc-eval export --format jsonl`` file (format
3: a store line, then one finished episode per line) and ``designed_store`` imports that file
with ``esc-eval import``'s code, so a report over the store sees exactly the labels the design
states, through the same path as a user's archive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from esc_eval.runs.formats.archive import JSONL_FORMAT_VERSION
from esc_eval.runs.formats.importing import import_command
from esc_eval.runs.store import schema
from esc_eval.runs.store.records import episode_key


@dataclass(frozen=True)
class DesignedEpisode:
    """One finished episode: ``labels`` maps a dimension to its judge samples (labels 0..4, -1 for "no label")."""

    supporter: str
    card_index: int
    labels: Mapping[str, Sequence[int]]
    persona: str = "default"
    repeat: int = 0
    language: str = "en"
    category: str = field(default="work")

    @property
    def key(self) -> str:
        return episode_key(self.supporter, self.persona, f"{self.language}-{self.card_index:05d}", "design", self.repeat)


def _line(ordinal: int, e: DesignedEpisode) -> dict[str, object]:
    return {
        "format_version": JSONL_FORMAT_VERSION, "key": e.key, "ordinal": ordinal, "card_index": e.card_index,
        "card_id": f"c{e.card_index}", "language": e.language, "category": e.category, "source": "design",
        "supporter": e.supporter, "persona": e.persona, "repeat": e.repeat, "seed": 0, "status": "done",
        "outcome": "truncated", "reason": "design", "attempts": 1, "started_at": 1.0, "ended_at": 2.0, "seeker": "",
        "turns": [{"idx": 0, "role": "supporter", "text": "Hello", "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0,
                   "at": 1.0, "state": None}],
        "scores": [{"dimension": dim, "round": -1, "label": label, "raw": f"Score: {label}", "model": "design", "latency": 0.0,
                    "status": "ok", "error": None, "at": 2.0, "sample": sample}
                   for dim, labels in e.labels.items() for sample, label in enumerate(labels)],
        "annotations": [],
    }


def write_design(path: Path, episodes: Iterable[DesignedEpisode]) -> Path:
    """``episodes`` as a JSONL export at ``path``."""
    header = {"format_version": JSONL_FORMAT_VERSION,
              "store": {"schema_version": schema.SCHEMA_VERSION, "meta": {}, "tables": {"events": [], "runs": []}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        for ordinal, e in enumerate(episodes):
            out.write(json.dumps(_line(ordinal, e)) + "\n")
    return path


def designed_store(store: Path, episodes: Iterable[DesignedEpisode]) -> Path:
    """A new store at ``store`` holding exactly ``episodes``, imported from a JSONL file written next to it."""
    source = write_design(store.with_suffix(".jsonl"), episodes)
    import_command(store, [source], [])
    return store
