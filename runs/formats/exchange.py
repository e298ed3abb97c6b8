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


class ResultFileError(ValueError):
    """A file cannot be imported; the message names the file and the key (or line and field)."""

    def __init__(self, path: Path | str, message: str, *, key: str | None = None):
        where = str(path) if key is None else f"{path}: key {key!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.key = str(path), key


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


PERSONA_SEPARATOR = "+"
"""Joins supporter and persona in ESC-Eval file names; names (letters, digits, ``-_.``) cannot hold it, so import splits them back."""


def _file_stem(episode: EpisodeRecord, *, seeker: bool = False) -> str:
    """``supporter[-with-seeker][-rN][+persona]_lang``; ``seeker``: the store compares several seekers, never mixed in one file.

    The default persona adds nothing (ESC-Eval's own ``result_{supporter}_{lang}.json``); another
    comes last, after ``+``, which import reads back as the persona.
    """
    name = episode.supporter
    if seeker:
        name += f"-with-{episode.seeker}"
    if episode.repeat:
        name += f"-r{episode.repeat}"
    if episode.persona != "default":
        name += f"{PERSONA_SEPARATOR}{episode.persona}"
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
    (``[[seekers]]``) gets one file per supporter and seeker: ``result_{supporter}-with-{seeker}_{lang}.json``,
    and each persona but ``default`` its own: ``result_{supporter}+{persona}_{lang}.json``.
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
            scores[stem][str(e.card_index)] = {dim: -1 if (label := own.get(dim)) is None else label for dim in {**own, **dimensions[stem]}}
    if short and not allow_missing:
        raise MissingScores(store.path, len(short), failed, absent)
    written = []
    for stem, lines in sorted(results.items()):
        written.append(write_json(out / f"result_{stem}.json", _by_index(lines)))
    for stem, labelled in sorted(scores.items()):
        written.append(write_json(out / f"score_{stem}.json", _by_index(labelled)))
    return written


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
