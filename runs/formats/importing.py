"""Imports into a store, so ``report`` and ``export`` work on them: ESC-Eval's result and score
files, and our own JSONL export (``esc-eval export --format jsonl``), which gives the store back.

An ESC-Eval result file is a JSON object keyed by card index ("0", "1", ...) whose
values are transcripts as lines ``"AI assistant：text"`` / ``"ESC-Role：text"``; its
score file is keyed the same way, each value mapping dimension keys to a label 0..4
or -1. The file is named ``MODEL_LANG.json`` (ESC-Eval) or ``result_MODEL_LANG.json``
(our export), which gives the supporter and language unless they are passed.

Each card becomes one finished episode (persona ``default``, repeat 0), so
``export_esc_eval`` writes the same files back. The cards themselves are not in
these files: ``card_id`` is the index and category and source are ``"unknown"``.

A JSONL export carries every column of each episode, its turns and its scores, under the
episode's own key, so importing it into an empty store rebuilds the store it came from.

Imports are idempotent by episode key: an episode the store holds already is skipped and
counted, so importing a file twice, or into the store it came from, duplicates nothing.

Example::

    with Store.open("imported.sqlite", create=True) as store:
        import_esc_eval(store, Path("result_llama3_en.json"), Path("score_llama3_en.json"))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.profiles import DIMENSIONS
from esc_eval.roles.jsonl import json_error, read_jsonl
from esc_eval.runs.formats.exchange import JSONL_FORMAT_VERSION, parse_lines
from esc_eval.runs.store import EpisodeRows, ImportedEpisode, PlannedEpisode, Store, columns

UNKNOWN = "unknown"
LANGUAGE_ALIASES = {"english": "en", "chinese": "zh"}
_PREFIXES = ("result_", "score_")


class ResultFileError(ValueError):
    """An ESC-Eval result or score file cannot be imported; the message names the file and the key."""

    def __init__(self, path: Path | str, message: str, *, key: str | None = None):
        where = str(path) if key is None else f"{path}: key {key!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.key = str(path), key


@dataclass(frozen=True)
class ImportSummary:
    """What one ``import_esc_eval`` call wrote."""

    result_path: Path
    score_path: Path | None
    supporter: str
    language: str
    episodes: int
    scores: int
    skipped: int = 0
    """Episodes the store held already (same key), left as they were."""


def file_stem(path: Path) -> str:
    """``result_llama_en.json`` / ``score_llama_en.json`` / ``llama_en.json`` -> ``llama_en``."""
    stem = path.stem
    for prefix in _PREFIXES:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix):]
    return stem


def supporter_and_language(path: Path, supporter: str | None = None, language: str | None = None) -> tuple[str, str]:
    """The supporter and language a result file is for: given, or from the name's last ``_`` split."""
    if supporter is None or language is None:
        name, sep, lang = file_stem(path).rpartition("_")
        if not sep or not name or not lang:
            raise ResultFileError(path, "cannot tell supporter and language from the file name "
                                        "(expected MODEL_LANG.json or result_MODEL_LANG.json, or give --supporter and --language)")
        supporter = name if supporter is None else supporter
        language = lang if language is None else language
    if not supporter or not language:
        raise ResultFileError(path, "supporter and language must be non-empty")
    return supporter, LANGUAGE_ALIASES.get(language.lower(), language)


def _load_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ResultFileError(path, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(path, json_error(exc)) from None
    except OSError as exc:
        raise ResultFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ResultFileError(path, f"must be a JSON object keyed by card index, got {type(data).__name__}")
    for key in data:
        if not (key.isascii() and key.isdigit() and str(int(key)) == key):
            raise ResultFileError(path, "is not a card index (\"0\", \"1\", ...)", key=key)
    return data


def read_result_file(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Card index -> transcript ``[(role, text), ...]``; raises ``ResultFileError`` naming file and key."""
    out = {}
    for key, lines in _load_object(path).items():
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise ResultFileError(path, "must be a list of lines (strings)", key=key)
        if not lines:
            raise ResultFileError(path, "transcript is empty", key=key)
        try:
            out[key] = parse_lines(lines)
        except ValueError as exc:
            raise ResultFileError(path, str(exc), key=key) from None
    return out


def read_score_file(path: Path) -> dict[str, dict[str, int]]:
    """Card index -> {dimension: label 0..4 or -1}; raises ``ResultFileError`` naming file and key."""
    out = {}
    for key, labels in _load_object(path).items():
        if not isinstance(labels, dict):
            raise ResultFileError(path, f"must be an object of dimension labels, got {type(labels).__name__}", key=key)
        for dim, label in labels.items():
            if dim not in DIMENSIONS:
                raise ResultFileError(path, f"unknown dimension {dim!r} (known: {', '.join(DIMENSIONS)})", key=key)
            if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label <= 4:
                raise ResultFileError(path, f"dimension {dim!r}: expected a label 0..4 or -1, got {label!r}", key=key)
        out[key] = dict(labels)
    return out


def episode_key(supporter: str, language: str, card_index: int) -> str:
    """Deterministic key of an imported episode: importing the same file again skips it."""
    return f"{supporter}/default/{language}-{card_index:05d}/imported/r0"


def esc_eval_episodes(result_path: Path, score_path: Path | None, supporter: str, language: str) -> list[ImportedEpisode]:
    """Read and check both files completely before anything is written."""
    transcripts = read_result_file(result_path)
    scores = read_score_file(score_path) if score_path is not None else {}
    for key in scores:
        if key not in transcripts:
            raise ResultFileError(score_path or "", f"has no transcript in {result_path}", key=key)
    at = time.time()
    reason = f"imported from {Path(result_path).name}"
    episodes = []
    for key in sorted(transcripts, key=int):
        index = int(key)
        planned = PlannedEpisode(  # ordinal: the store numbers imported episodes
            key=episode_key(supporter, language, index), ordinal=0, card_index=index, card_id=key,
            language=language, category=UNKNOWN, source=UNKNOWN, supporter=supporter, persona="default", repeat=0, seed=0,
        )
        labels = tuple(scores.get(key, {}).items())
        episodes.append(ImportedEpisode(planned, tuple(transcripts[key]), labels, reason=reason, at=at))
    return episodes


def import_new(store: Store, episodes: list[EpisodeRows]) -> tuple[list[EpisodeRows], int]:
    """Write the episodes whose keys the store lacks, in one transaction; returns them and how many were skipped."""
    written = set(store.import_episodes(episodes))
    new = [e for e in episodes if e.episode["key"] in written]
    return new, len(episodes) - len(new)


def import_esc_eval(store: Store, result_path: Path, score_path: Path | None = None, *,
                    supporter: str | None = None, language: str | None = None) -> ImportSummary:
    """Import one ESC-Eval result file (and its score file) as finished episodes, in one transaction.

    Args:
        store: a writable store whose writer is not running.
        result_path: ``result_{supporter}_{lang}.json`` or ``MODEL_LANG.json``.
        score_path: the matching score file, or ``None`` for transcripts only.
        supporter / language: override what the file name says.

    Returns:
        An ``ImportSummary`` with the number of episodes and scores written, and of episodes
        skipped because the store held them already.

    Raises:
        ResultFileError: a file is unreadable or malformed (nothing is written).
        StoreError: the store is read-only or being written by a run.
    """
    result_path = Path(result_path)
    score_path = Path(score_path) if score_path is not None else None
    supporter, language = supporter_and_language(result_path, supporter, language)
    episodes = [e.rows() for e in esc_eval_episodes(result_path, score_path, supporter, language)]
    new, skipped = import_new(store, episodes)
    return ImportSummary(result_path, score_path, supporter, language, len(new), sum(len(e.scores) for e in new), skipped)


# -- our JSONL export -------------------------------------------------------------------------------

_NUMBER = (int, float)
_EPISODE_FIELDS: dict[str, tuple[type, ...]] = {
    "key": (str,), "card_index": (int,), "card_id": (str,), "language": (str,), "category": (str,), "source": (str,),
    "supporter": (str,), "persona": (str,), "repeat": (int,), "seed": (int,), "status": (str,), "outcome": (str, type(None)),
    "reason": (str, type(None)), "attempts": (int,), "started_at": (*_NUMBER, type(None)), "ended_at": (*_NUMBER, type(None)),
}
_TURN_FIELDS: dict[str, tuple[type, ...]] = {
    "idx": (int,), "role": (str,), "text": (str,), "prompt_tokens": (int,), "completion_tokens": (int,), "latency": _NUMBER, "at": _NUMBER,
}
_SCORE_FIELDS: dict[str, tuple[type, ...]] = {
    "dimension": (str,), "round": (int,), "label": (int, type(None)), "raw": (str, type(None)), "model": (str, type(None)),
    "latency": (*_NUMBER, type(None)), "status": (str,), "error": (str, type(None)), "at": _NUMBER,
}
"""The fields a line of a JSONL export (format 2) must have; other fields must be columns of the store."""
_SCALAR = (str, int, float, type(None))
FINISHED = ("done", "failed")
"""Statuses an import takes; ``planned`` and ``running`` episodes of a store exported mid-run are counted, not imported."""


@dataclass(frozen=True)
class JsonlExport:
    """What a JSONL export holds: its finished episodes as store rows, and how many lines were unfinished."""

    path: Path
    episodes: list[EpisodeRows]
    unfinished: int


def _describe(types: tuple[type, ...]) -> str:
    """``(int, float, NoneType)`` -> ``"a number or null"``."""
    kind = "a number" if float in types else "an integer" if int in types else "text"
    return kind + (" or null" if type(None) in types else "")


def _fields(path: Path, number: int, value: Any, where: str, required: dict[str, tuple[type, ...]], table: str,
            skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` checked as a row of ``table``: ``required`` fields of their types, any other field a column of it."""
    def fail(message: str) -> ResultFileError:
        return ResultFileError(path, f"line {number}: {message}")

    if not isinstance(value, dict):
        raise fail(f"field '{where.rstrip('.')}': expected an object, got {type(value).__name__}")
    for name, types in required.items():
        if name not in value:
            raise fail(f"field '{where}{name}' is missing")
        if isinstance(value[name], bool) or not isinstance(value[name], types):
            raise fail(f"field '{where}{name}': expected {_describe(types)}, got {value[name]!r:.60}")
    for name, item in value.items():
        if name in required or name in skip:
            continue
        if name in ("episode_key", "ordinal"):
            raise fail(f"field '{where}{name}': not part of the format (the importing store sets it)")
        if name not in columns(table):
            raise fail(f"field '{where}{name}': unknown to this esc-eval's store (table {table}); upgrade esc-eval")
        if isinstance(item, bool) or not isinstance(item, _SCALAR):
            raise fail(f"field '{where}{name}': expected text, a number or null, got {type(item).__name__}")
    return {name: item for name, item in value.items() if name not in skip}


def _jsonl_episode(path: Path, number: int, record: dict[str, Any]) -> EpisodeRows:
    """One line of a JSONL export as store rows; raises ``ResultFileError`` naming the line and the field."""
    def fail(message: str) -> ResultFileError:
        return ResultFileError(path, f"line {number}: {message}")

    version = record.get("format_version")
    if version is None:
        raise fail("no 'format_version': not an esc-eval JSONL export, or one from before format 2, which lacks the "
                   "judges' raw replies and failures and cannot be imported; export the store again")
    if isinstance(version, bool) or not isinstance(version, int) or version < 2:
        raise fail(f"field 'format_version': expected {JSONL_FORMAT_VERSION}, got {version!r}")
    if version > JSONL_FORMAT_VERSION:
        raise fail(f"format_version {version} is newer than this esc-eval reads ({JSONL_FORMAT_VERSION}); upgrade esc-eval")
    episode = _fields(path, number, record, "", _EPISODE_FIELDS, "episodes", skip=("format_version", "turns", "scores"))
    if not episode["key"]:
        raise fail("field 'key': must not be empty")
    if episode["status"] not in ("planned", "running", *FINISHED):
        raise fail(f"field 'status': expected planned, running, done or failed, got {episode['status']!r}")
    for name in ("turns", "scores"):
        if not isinstance(record.get(name), list):
            raise fail(f"field '{name}': expected a list, got {type(record.get(name)).__name__}")
    turns = []
    for i, value in enumerate(record["turns"]):
        turn = _fields(path, number, value, f"turns[{i}].", _TURN_FIELDS, "turns", skip=("state",))
        if turn["role"] not in ("seeker", "supporter"):
            raise fail(f"field 'turns[{i}].role': expected seeker or supporter, got {turn['role']!r}")
        state = value.get("state")
        if state is not None and not isinstance(state, dict):
            raise fail(f"field 'turns[{i}].state': expected an object, got {type(state).__name__}")
        turn["state"] = json.dumps(state, ensure_ascii=False) if state else None  # as the store's writer encodes it
        turns.append(turn)
    if len({t["idx"] for t in turns}) != len(turns):
        raise fail("field 'turns': two turns have the same idx")
    scores = []
    for i, value in enumerate(record["scores"]):
        score = _fields(path, number, value, f"scores[{i}].", _SCORE_FIELDS, "scores")
        if score["status"] not in ("ok", "failed"):
            raise fail(f"field 'scores[{i}].status': expected ok or failed, got {score['status']!r}")
        if score["label"] is not None and not -1 <= score["label"] <= 4:
            raise fail(f"field 'scores[{i}].label': expected a label 0..4, -1 or null, got {score['label']!r}")
        scores.append(score)
    if len({(s["dimension"], s["round"]) for s in scores}) != len(scores):
        raise fail("field 'scores': two scores have the same dimension and round")
    return EpisodeRows(episode, tuple(turns), tuple(scores))


def read_jsonl_export(path: Path) -> JsonlExport:
    """Every line of an ``esc-eval export --format jsonl`` file, checked; raises ``ResultFileError`` naming line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ResultFileError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ResultFileError(path, f"cannot read: {exc.strerror or exc}") from None
    episodes: list[EpisodeRows] = []
    lines: dict[str, int] = {}
    unfinished = 0
    for number, record in read_jsonl(text, None, lambda message: ResultFileError(path, message)):
        rows = _jsonl_episode(path, number, record)
        key = rows.episode["key"]
        if key in lines:
            raise ResultFileError(path, f"line {number}: episode {key!r} is on line {lines[key]} already")
        lines[key] = number
        if rows.episode["status"] in FINISHED:
            episodes.append(rows)
        else:
            unfinished += 1
    if not lines:
        raise ResultFileError(path, "holds no episodes")
    return JsonlExport(path, episodes, unfinished)


# -- the command ------------------------------------------------------------------------------------


def pair_files(results: list[Path], scores: list[Path]) -> list[tuple[Path, Path | None]]:
    """Match each score file to the result file with the same ``MODEL_LANG`` (one of each: paired as given)."""
    if len(results) == 1 and len(scores) == 1:
        return [(Path(results[0]), Path(scores[0]))]
    by_stem: dict[str, Path] = {}
    for path in map(Path, results):
        stem = file_stem(path)
        if stem in by_stem:
            raise ResultFileError(path, f"names the same supporter and language as {by_stem[stem]}")
        by_stem[stem] = path
    paired: dict[str, Path] = {}
    for path in map(Path, scores):
        stem = file_stem(path)
        if stem not in by_stem:
            raise ResultFileError(path, f"matches no result file (expected one named result_{stem}.json or {stem}.json)")
        if stem in paired:
            raise ResultFileError(path, f"is a second score file for {by_stem[stem]} (first: {paired[stem]})")
        paired[stem] = path
    return [(path, paired.get(stem)) for stem, path in by_stem.items()]


def import_command(store_path: Path, files: list[Path], scores: list[Path], *,
                   supporter: str | None = None, language: str | None = None) -> str:
    """``esc-eval import STORE FILE... [--scores SCORE...] [--supporter S] [--language L]``: returns the text to print.

    A ``.jsonl`` file is a JSONL export; any other is an ESC-Eval result file, paired with
    its score file and named by ``supporter``/``language`` when its name does not tell them.
    Creates the store when it does not exist. Every file is read and checked before the
    store is opened, so bad input writes nothing.
    """
    if not files:
        raise ResultFileError(store_path, "no result files or JSONL exports given")
    files = [Path(f) for f in files]
    results = [f for f in files if f.suffix != ".jsonl"]
    exports = {f: read_jsonl_export(f) for f in files if f.suffix == ".jsonl"}
    if exports and not results and (supporter or language or scores):
        raise ResultFileError(next(iter(exports)), "a JSONL export names each episode's supporter and language and holds its "
                                                   "scores: --supporter, --language and --scores are for ESC-Eval result files")
    plans: dict[Path, tuple[Path | None, str, str, list[EpisodeRows]]] = {}
    named: dict[tuple[str, str], Path] = {}
    for result_path, score_path in pair_files(results, scores) if results else []:
        who = supporter_and_language(result_path, supporter, language)
        if who in named:
            raise ResultFileError(result_path, f"names the same supporter and language as {named[who]} ({who[0]}, {who[1]})")
        named[who] = result_path
        plans[result_path] = (score_path, *who, [e.rows() for e in esc_eval_episodes(result_path, score_path, *who)])
    store_path = Path(store_path)
    created = not store_path.exists()
    if created:
        store_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    with Store.open(store_path, create=created) as store:
        if created:
            store.set_meta(created_at=time.time(), origin="esc-eval import")
        imports = list(store.meta("imports", []))
        for path in files:
            if path in exports:
                export = exports[path]
                new, skipped = import_new(store, export.episodes)
                failed = sum(e.episode["status"] == "failed" for e in new)
                imports.append({"jsonl": str(path), "episodes": len(new), "skipped": skipped, "at": time.time()})
                lines.append(f"{path}: {len(new)} episodes ({len(new) - failed} done, {failed} failed), "
                             f"{sum(len(e.turns) for e in new)} turns, {sum(len(e.scores) for e in new)} scores; "
                             f"skipped {skipped} already in the store"
                             + (f"; {export.unfinished} unfinished (planned or running) not imported" if export.unfinished else ""))
                continue
            score_path, who_supporter, who_language, episodes = plans[path]
            new, skipped = import_new(store, episodes)
            imports.append({"result": str(path), "score": str(score_path) if score_path else None, "supporter": who_supporter,
                            "language": who_language, "episodes": len(new), "skipped": skipped, "at": time.time()})
            lines.append(f"{path}: {len(new)} episodes, {sum(len(e.scores) for e in new)} scores "
                         f"(supporter {who_supporter}, language {who_language})" + (f" with {score_path}" if score_path else "")
                         + f"; skipped {skipped} already in the store")
        store.set_meta(imports=imports)
    lines.append(f"store: {store_path}{' (created)' if created else ''}")
    return "\n".join(lines)
