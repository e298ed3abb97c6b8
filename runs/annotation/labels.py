"""Human labels: who labels what (``assignment``), checks of names and labels, and label files.

Assignment: each dialogue should get ``k`` annotators. An annotator's queue holds every
finished dialogue they have labelled already plus every dialogue that fewer than ``k``
*other* annotators have labelled, shuffled by a seed drawn from their name. Two annotators
labelling the same dialogue at the same moment can take it past ``k``; nothing refuses a label.

Label files (``export_labels`` / ``import_labels``):

* ``.jsonl``: one line per (dialogue, annotator): ``{"episode_key", "supporter", "language",
  "card_index", "annotator", "labels": {dimension: label}, "at", "transcript": [{"role",
  "text"}]}``. The transcript makes the file a training set for ``esc-eval judge train``.
* ``.json``: an ESC-Eval score file (``{"0": {"fluency": 3, ...}}`` keyed by card index) of one
  supporter and language: the consensus labels (``esc_eval.runs.analysis.agreement.consensus``), or one
  annotator's with ``annotator=``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.profiles import DIMENSIONS
from esc_eval.roles.jsonl import read_jsonl
from esc_eval.runs.analysis.agreement import LABELS, consensus_labels, human_labels
from esc_eval.runs.store import Store

MAX_NAME = 64


class AnnotationError(ValueError):
    """Bad annotation input (a label file, a name, a label); the message names the file and line."""


def assignment(store: Store, annotator: str, k: int) -> list[str]:
    """Episode keys for ``annotator`` to label so that each dialogue gets ``k`` annotators, in the annotator's own order.

    The order is a shuffle seeded by the annotator's name: dialogues sorted by
    ``sha256(name, key)``. It is the same at every reload, keeps its relative order when
    dialogues join or leave the queue, differs between annotators (who then start at
    different dialogues) and hides the plan order, which groups dialogues by supporter.
    """
    by_episode = human_labels(store)
    queue = [e.key for e in store.episodes(status="done", with_turns=True)
             if annotator in by_episode.get(e.key, {}) or len(set(by_episode.get(e.key, {})) - {annotator}) < k]
    return sorted(queue, key=lambda key: hashlib.sha256(f"{annotator}\0{key}".encode()).digest())


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError("annotator name must be non-empty text")
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise AnnotationError(f"annotator name must be at most {MAX_NAME} printable characters")
    return name


def check_label(label: Any, where: str) -> int:
    if isinstance(label, bool) or not isinstance(label, int) or label not in LABELS:
        raise AnnotationError(f"{where}: label must be an integer 0..4, got {label!r}")
    return label


# -- label files ----------------------------------------------------------------------


def export_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Write the store's human labels to ``path`` (``.jsonl`` or an ESC-Eval ``.json`` score file); returns items written."""
    from esc_eval.runs.formats.exchange import write_json, write_text

    path = Path(path)
    labels = human_labels(store)
    if annotator is not None:
        labels = {key: {annotator: by[annotator]} for key, by in labels.items() if annotator in by}
    episodes = {e.key: e for e in store.episodes(status="done", supporter=supporter, language=language, with_turns=True)}
    labels = {key: by for key, by in labels.items() if key in episodes}
    if path.suffix == ".jsonl":
        times: dict[tuple[str, str], float] = {}
        for row in store.annotations():
            slot = (row.episode_key, row.annotator)
            times[slot] = max(times.get(slot, 0.0), row.at)
        lines = []
        for key in episodes:
            for who, dims in labels.get(key, {}).items():
                e = episodes[key]
                record = {"episode_key": key, "supporter": e.supporter, "language": e.language,
                          "card_index": e.card_index, "annotator": who, "labels": dims, "at": times.get((key, who)),
                          "transcript": [{"role": role, "text": text} for role, text in store.transcript(key)]}
                lines.append(json.dumps(record, ensure_ascii=False))
        write_text(path, "".join(line + "\n" for line in lines))
        return len(lines)
    if path.suffix == ".json":
        pairs = {(episodes[key].supporter, episodes[key].language) for key in labels}
        if len(pairs) > 1:
            shown = ", ".join(f"{s} ({lang})" for s, lang in sorted(pairs))
            raise AnnotationError(f"{path}: an ESC-Eval score file holds one supporter and language; the labels cover {shown} "
                                  "(choose with --supporter and --language)")
        table: dict[str, dict[str, int]] = {}
        merged = consensus_labels(labels)
        for key in episodes:
            if key in merged:
                card = str(episodes[key].card_index)
                if card in table:
                    raise AnnotationError(f"{path}: card {card} has several labelled episodes (personas or repeats); "
                                          "an ESC-Eval score file needs one per card")
                order = [d for d in DIMENSIONS if d in merged[key]] + sorted(d for d in merged[key] if d not in DIMENSIONS)
                table[card] = {d: merged[key][d] for d in order}
        write_json(path, dict(sorted(table.items(), key=lambda item: int(item[0]))))
        return len(table)
    raise AnnotationError(f"{path}: label files end in .jsonl (labels with transcripts) or .json (an ESC-Eval score file)")


def read_label_file(path: Path) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` label file, checked; raises ``AnnotationError`` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read: {exc}") from None
    records = []
    for number, record in read_jsonl(text, str(path), AnnotationError):
        where = f"{path}: line {number}"
        if not isinstance(record.get("labels"), dict):
            raise AnnotationError(f"{where}: expected an object with 'labels' ({{dimension: label}})")
        if not isinstance(record.get("episode_key"), str) or not record["episode_key"]:
            raise AnnotationError(f"{where}: field 'episode_key' must be non-empty text")
        try:
            record["annotator"] = check_name(record.get("annotator"))
        except AnnotationError as exc:
            raise AnnotationError(f"{where}: field 'annotator': {exc}") from None
        for dim, label in record["labels"].items():
            check_label(label, f"{where}: dimension {dim!r}")
        transcript = record.get("transcript")
        if transcript is not None:
            if not isinstance(transcript, list) or not all(
                    isinstance(t, dict) and t.get("role") in ("supporter", "seeker") and isinstance(t.get("text"), str)
                    for t in transcript):
                raise AnnotationError(f"{where}: field 'transcript' must be a list of {{role: supporter|seeker, text}}")
        records.append(record)
    return records


def import_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Read a ``.jsonl`` label file or an ESC-Eval ``.json`` score file into the store; returns labels written.

    Every line is checked before anything is written (``label_rows``).
    """
    return store.add_annotations(label_rows(store, path, annotator=annotator, supporter=supporter, language=language))


def label_rows(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
               language: str | None = None) -> list[tuple[str, str, str, int, float]]:
    """The annotation rows a label file holds for ``store`` (which may be read-only), every line checked.

    A ``.json`` score file is matched to
    the store's episodes by supporter and language (from the file name, ``score_MODEL_LANG.json``,
    unless given) and card index; its labels are stored as ``annotator`` (default: the file's
    stem). Labels -1 in a score file are skipped. An episode the store lacks is an error.
    """
    path = Path(path)
    known = {e.key: e for e in store.episodes(status="done", with_turns=True)}
    rows: list[tuple[str, str, str, int, float]] = []
    now = time.time()
    if path.suffix == ".jsonl":
        for number, record in enumerate(read_label_file(path), 1):
            if record["episode_key"] not in known:
                raise AnnotationError(f"{path}: record {number}: episode {record['episode_key']!r} is not a finished episode of {store.path}")
            who = check_name(annotator) if annotator else record["annotator"]
            at = float(record["at"]) if isinstance(record.get("at"), (int, float)) else now
            rows += [(record["episode_key"], who, dim, label, at) for dim, label in record["labels"].items()]
    elif path.suffix == ".json":
        from esc_eval.runs.formats.importing import ResultFileError, read_score_file, supporter_and_language

        try:
            table = read_score_file(path)
            supporter, language = supporter_and_language(path, supporter, language)
        except ResultFileError as exc:
            raise AnnotationError(str(exc)) from None
        who = check_name(annotator or path.stem)
        by_card: dict[str, str] = {}
        for key, e in known.items():
            if e.supporter == supporter and e.language == language:
                card = str(e.card_index)
                if card in by_card:
                    raise AnnotationError(f"{store.path}: supporter {supporter!r} ({language}) has several episodes of card {card}; "
                                          "a score file can label only one episode per card")
                by_card[card] = key
        for card, labels in table.items():
            if card not in by_card:
                raise AnnotationError(f"{path}: card {card}: {store.path} has no finished episode of supporter {supporter!r} ({language})")
            rows += [(by_card[card], who, dim, label, now) for dim, label in labels.items() if label != -1]
    else:
        raise AnnotationError(f"{path}: label files end in .jsonl or .json (an ESC-Eval score file)")
    return rows
