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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from esc_eval.runs.store import EpisodeRecord, Store, final_labels

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


def _file_stem(episode: EpisodeRecord, *, seeker: bool = False) -> str:
    """``supporter[-persona][-with-seeker][-rN]_lang``; ``seeker``: the store compares several seekers, never mixed in one file."""
    name = episode.supporter
    if episode.persona != "default":
        name += f"-{episode.persona}"
    if seeker:
        name += f"-with-{episode.seeker}"
    if episode.repeat:
        name += f"-r{episode.repeat}"
    return f"{name}_{episode.language}"


class MissingScores(Exception):
    """Finished dialogues lack judge scores (failed, or never scored): an ESC-Eval score file would hide them."""

    RESCORE = "re-score them with `esc-eval run CONFIG --resume --retry-failed`"

    def __init__(self, store: Path, dialogues: int, failed: int, absent: int):
        self.store, self.dialogues, self.failed, self.absent = store, dialogues, failed, absent
        self.summary = f"{store}: {dialogues} dialogues lack {failed + absent} judge scores ({failed} failed, {absent} never scored)"
        super().__init__(f"{self.summary}, which ESC-Eval score files cannot show; {self.RESCORE}, "
                         "or pass --allow-missing to write -1 (ESC-Eval's 'no label') for them")


def export_esc_eval(store: Store, out: Path, *, allow_missing: bool = False) -> list[Path]:
    """Write ``result_{supporter}_{lang}.json`` (and ``score_...`` when scored) for finished episodes.

    ESC-Eval's files hold one dialogue per card, so a store that several seekers played
    (``[[seekers]]``) gets one file per supporter and seeker: ``result_{supporter}-with-{seeker}_{lang}.json``.
    A file whose dialogues are scored expects every dimension any of them has for each of
    them. A missing one (its judgement failed, or never ran) raises ``MissingScores`` before
    anything is written; with ``allow_missing`` it is written as -1, ESC-Eval's "no label".
    """
    episodes = {e.key: e for e in store.episodes(status="done")}
    split = len(store.seekers()) > 1
    stems = {key: _file_stem(e, seeker=split) for key, e in episodes.items()}
    results: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for key, transcript in store.transcripts():
        if key in episodes:
            results[stems[key]][str(episodes[key].card_index)] = transcript_lines(transcript)
    labels = final_labels(store.final_scores())  # episode key -> dimension -> label (None: failed)
    dimensions: dict[str, dict[str, None]] = defaultdict(dict)  # stem -> every dimension scored there, in first-seen order
    for key, own in labels.items():
        for dim in own:
            dimensions[stems[key]].setdefault(dim)
    scores: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    failed = absent = 0
    short: set[str] = set()
    for key, e in episodes.items():
        stem = stems[key]
        own = labels.get(key, {})
        for dim in dimensions.get(stem, ()):
            if dim not in own:
                absent += 1
            elif own[dim] is None:
                failed += 1
            else:
                continue
            short.add(key)
        if stem in dimensions:
            scores[stem][str(e.card_index)] = {dim: -1 if own.get(dim) is None else own[dim] for dim in {**own, **dimensions[stem]}}
    if short and not allow_missing:
        raise MissingScores(store.path, len(short), failed, absent)
    written = []
    for stem, data in sorted(results.items()):
        written.append(write_json(out / f"result_{stem}.json", _by_index(data)))
    for stem, data in sorted(scores.items()):
        written.append(write_json(out / f"score_{stem}.json", _by_index(data)))
    return written


JSONL_FORMAT_VERSION = 2
"""``format_version`` of every line of a JSONL export. 1 (no field): labels only, no raw replies or
failures, cannot be imported. 2: every column of the episode, its turns and its scores (all rounds)."""


def export_jsonl(store: Store, out: Path) -> list[Path]:
    """One line per planned episode: its columns, its turns (usage, seeker state) and its scores.

    Scores are every row of the ``scores`` table (each round; ``status``/``error`` of a failed
    judgement, the judge's ``raw`` reply and ``model``), so ``esc-eval import`` rebuilds the store.
    """
    turns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in store.turns():
        turn = {k: v for k, v in t._asdict().items() if k not in ("episode_key", "state")}
        if t.state:  # the seeker's hidden state, as an object
            turn["state"] = json.loads(t.state)
        turns[t.episode_key].append(turn)
    scores: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in store.scores():
        scores[s.episode_key].append({k: v for k, v in s._asdict().items() if k != "episode_key"})
    path = out / "episodes.jsonl"
    lines = []
    for e in store.episodes():
        record = {"format_version": JSONL_FORMAT_VERSION, **{k: v for k, v in e._asdict().items() if k != "ordinal"}}
        record["turns"] = turns.get(e.key, [])
        record["scores"] = scores.get(e.key, [])
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
