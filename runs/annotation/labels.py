"""Human labels: who labels what (``assignment``), checks of names and labels, and label files.

Assignment: each dialogue should get ``k`` annotators. An annotator's queue holds every
finished dialogue they have labelled already plus every dialogue that fewer than ``k``
*other* annotators have labelled, shuffled by a seed drawn from their name. Two annotators
labelling the same dialogue at the same moment can take it past ``k``; nothing refuses a label.

Label files (``export_labels`` / ``import_labels``):

* ``.jsonl``: one line per (dialogue, annotator): ``{"episode_key", "supporter", "language",
  "card_index", "annotator", "labels": {dimension: label}, "safety": {item: true|false}, "at",
  "times", "transcript": [{"role", "text"}]}``. The transcript makes the file a training set for
  ``esc-eval judge train``. ``safety`` (the annotator's answers to the safety items, table
  ``safety_annotations``) is there when there are some; a line with only safety answers has
  ``"labels": {}``. ``at`` is the line's latest time; ``times`` (``{"labels": {name: at},
  "safety": {name: at}}``, left out when empty) holds the times that differ from it, so that an
  export imported into a copy of the store gives both tables back exactly. Safety answers are
  checked as the page's ``POST /api/safety`` checks them (``check_safety_answer``).
* ``.json``: an ESC-Eval score file (``{"0": {"fluency": 3, ...}}`` keyed by card index) of one
  supporter and language: the consensus labels (``esc_eval.runs.analysis.agreement.consensus``), or one
  annotator's with ``annotator=``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from esc_eval.agents.judge.profiles import DIMENSIONS
from esc_eval.roles.jsonl import read_jsonl
from esc_eval.runs.analysis.agreement import LABELS, consensus_labels, human_labels
from esc_eval.runs.store import Store
from esc_eval.runs.store import safety as safety_store

if TYPE_CHECKING:   # the safety judge loads autogen-core: only when a store's safety items are read, not at CLI start
    from esc_eval.agents.judge.safety import SafetyRubric

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


# -- safety items ---------------------------------------------------------------------


def safety_rubric(store: Store) -> SafetyRubric:
    """The safety rubric the run's judge used (its ``[safety] rubric`` file, else the built-in one)."""
    from esc_eval.agents.judge.safety import SafetyRubric, SafetyRubricError

    path = ((store.meta("config") or {}).get("safety") or {}).get("rubric")
    try:
        return SafetyRubric.load(path)
    except SafetyRubricError as exc:
        raise AnnotationError(f"safety items: {exc}") from None


class SafetyItems:
    """The safety items each dialogue of a store has: its kind's (risk or control), none when the safety judge did not take it.

    Read once from the store (``kinds`` and the run's rubric; a bad rubric file is an ``AnnotationError``
    here, before any write); the page and the label-file import both ask it, and both check answers
    with ``check_safety_answer``.
    """

    def __init__(self, store: Store) -> None:
        self.kinds = safety_store.kinds(store)
        self.rubric = safety_rubric(store) if self.kinds else None

    def of(self, key: str) -> tuple[str, ...]:
        if self.rubric is None or key not in self.kinds:
            return ()
        return self.rubric.keys(self.kinds[key][0])


def check_safety_answer(allowed: Sequence[str], item: Any, value: Any) -> bool:
    """``value`` as an answer to safety item ``item`` of a dialogue whose items are ``allowed`` (``SafetyItems.of``).

    Raises ``AnnotationError`` for an item the dialogue does not have (a dimension, a control item on
    a risk dialogue, any item on a dialogue the safety judge did not take) or a value other than a boolean.
    """
    if item not in allowed:
        raise AnnotationError(f"unknown safety item {item!r} for this dialogue "
                              f"(it has: {', '.join(allowed) or 'none: the safety judge did not take it'})")
    if not isinstance(value, bool):
        raise AnnotationError(f"value must be true or false, got {value!r}")
    return value


def safety_answers(store: Store) -> dict[str, dict[str, dict[str, bool]]]:
    """Episode key -> annotator -> {safety item: answer}."""
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for row in safety_store.labels(store):
        out.setdefault(row.episode_key, {}).setdefault(row.annotator, {})[row.item] = row.value
    return out


# -- label files ----------------------------------------------------------------------


def export_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Write the store's human labels to ``path`` (``.jsonl`` or an ESC-Eval ``.json`` score file); returns items written.

    A ``.jsonl`` file also carries the answers to the safety items; a ``.json`` score file holds dimension labels only.
    """
    from esc_eval.runs.formats.exchange import write_json, write_text

    path = Path(path)
    labels = human_labels(store)
    if annotator is not None:
        labels = {key: {annotator: by[annotator]} for key, by in labels.items() if annotator in by}
    episodes = {e.key: e for e in store.episodes(status="done", supporter=supporter, language=language, with_turns=True)}
    labels = {key: by for key, by in labels.items() if key in episodes}
    if path.suffix == ".jsonl":
        answers = safety_answers(store)
        if annotator is not None:
            answers = {key: {annotator: by[annotator]} for key, by in answers.items() if annotator in by}
        times: dict[tuple[str, str], dict[str, dict[str, float]]] = {}  # (key, annotator) -> section -> name -> at
        for key, who, name, at in [(r.episode_key, r.annotator, r.dimension, r.at) for r in store.annotations()]:
            times.setdefault((key, who), {}).setdefault("labels", {})[name] = at
        for key, who, name, at in [(r.episode_key, r.annotator, r.item, r.at) for r in safety_store.labels(store)]:
            times.setdefault((key, who), {}).setdefault("safety", {})[name] = at
        lines = []
        for key in episodes:
            dims, safety = labels.get(key, {}), answers.get(key, {})
            for who in dict.fromkeys((*dims, *safety)):
                e = episodes[key]
                record: dict[str, Any] = {"episode_key": key, "supporter": e.supporter, "language": e.language,
                                          "card_index": e.card_index, "annotator": who, "labels": dims.get(who, {})}
                if who in safety:
                    record["safety"] = safety[who]
                slot = times.get((key, who), {})
                latest = max(at for section in slot.values() for at in section.values())
                record["at"] = latest
                differing = {section: {name: at for name, at in by_name.items() if at != latest}
                             for section, by_name in slot.items()}
                if any(differing.values()):
                    record["times"] = {section: by_name for section, by_name in differing.items() if by_name}
                record["transcript"] = [{"role": role, "text": text} for role, text in store.transcript(key)]
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
    return [record for _, record in read_label_lines(path)]


def read_label_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of each record of a ``.jsonl`` label file, checked as far as it can be without a store.

    ``safety`` must be an object and ``times`` an object ``{"labels"|"safety": {name: time}}`` naming
    only what the line has; whether a safety item fits its dialogue is ``label_rows``'s check.
    """
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
        if not isinstance(record.setdefault("safety", {}), dict):
            raise AnnotationError(f"{where}: field 'safety' must be an object {{safety item: true|false}}")
        times = record.setdefault("times", {})
        if not isinstance(times, dict):
            raise AnnotationError(f"{where}: field 'times' must be an object {{\"labels\"|\"safety\": {{name: time}}}}")
        for section, by_name in times.items():
            if section not in ("labels", "safety") or not isinstance(by_name, dict):
                raise AnnotationError(f"{where}: field 'times': expected {{\"labels\"|\"safety\": {{name: time}}}}, got key {section!r}")
            for name, at in by_name.items():
                if name not in record[section]:
                    raise AnnotationError(f"{where}: field 'times.{section}': {name!r} is not in the line's {section!r}")
                if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
                    raise AnnotationError(f"{where}: field 'times.{section}.{name}': expected a time in seconds, got {at!r}")
        transcript = record.get("transcript")
        if transcript is not None:
            if not isinstance(transcript, list) or not all(
                    isinstance(t, dict) and t.get("role") in ("supporter", "seeker") and isinstance(t.get("text"), str)
                    for t in transcript):
                raise AnnotationError(f"{where}: field 'transcript' must be a list of {{role: supporter|seeker, text}}")
        records.append((number, record))
    return records


class LabelRows(NamedTuple):
    """What a label file holds for a store: rows of ``annotations`` and of ``safety_annotations``."""

    labels: list[tuple[str, str, str, int, float]]
    """``(episode_key, annotator, dimension, label, at)``"""
    safety: list[tuple[str, str, str, bool, float]]
    """``(episode_key, annotator, safety item, answer, at)``"""


def import_labels(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
                  language: str | None = None) -> int:
    """Read a ``.jsonl`` label file or an ESC-Eval ``.json`` score file into the store; returns labels and safety answers written.

    Every line is checked before anything is written (``label_rows``); both tables are written in one transaction.
    """
    rows = label_rows(store, path, annotator=annotator, supporter=supporter, language=language)
    return sum(safety_store.add_with_annotations(store, rows.labels, rows.safety))


def label_rows(store: Store, path: Path, *, annotator: str | None = None, supporter: str | None = None,
               language: str | None = None) -> LabelRows:
    """The annotation and safety-answer rows a label file holds for ``store`` (which may be read-only), every line checked.

    A ``.jsonl`` line's safety answers are checked as the page checks them (``check_safety_answer``):
    an item the dialogue does not have, a value other than true or false, or any item on a dialogue
    the safety judge did not take is an ``AnnotationError`` naming the file, line and field.
    A ``.json`` score file is matched to
    the store's episodes by supporter and language (from the file name, ``score_MODEL_LANG.json``,
    unless given) and card index; its labels are stored as ``annotator`` (default: the file's
    stem). Labels -1 in a score file are skipped. An episode the store lacks is an error.
    """
    path = Path(path)
    known = {e.key: e for e in store.episodes(status="done", with_turns=True)}
    rows: list[tuple[str, str, str, int, float]] = []
    answers: list[tuple[str, str, str, bool, float]] = []
    now = time.time()
    if path.suffix == ".jsonl":
        records = read_label_lines(path)
        items = SafetyItems(store) if any(record["safety"] for _, record in records) else None
        for number, record in records:
            where, episode = f"{path}: line {number}", record["episode_key"]
            if episode not in known:
                raise AnnotationError(f"{where}: episode {episode!r} is not a finished episode of {store.path}")
            who = check_name(annotator) if annotator else record["annotator"]
            at = float(record["at"]) if isinstance(record.get("at"), (int, float)) else now
            times = record["times"]
            rows += [(episode, who, dim, label, float(times.get("labels", {}).get(dim, at))) for dim, label in record["labels"].items()]
            for item, value in record["safety"].items():
                try:
                    answer = check_safety_answer(items.of(episode) if items else (), item, value)
                except AnnotationError as exc:
                    raise AnnotationError(f"{where}: field 'safety.{item}': {exc}") from None
                answers.append((episode, who, item, answer, float(times.get("safety", {}).get(item, at))))
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
    return LabelRows(rows, answers)
