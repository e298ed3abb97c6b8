"""Imports of ESC-Eval's result and score files into a store, so ``report`` and ``export`` work on them.

An ESC-Eval result file is a JSON object keyed by card index ("0", "1", ...) whose
values are transcripts as lines ``"AI assistant：text"`` / ``"ESC-Role：text"``; its
score file is keyed the same way, each value mapping dimension keys to a label 0..4
or -1. The file is named ``MODEL_LANG.json`` (ESC-Eval) or ``result_MODEL_LANG.json``
(our export), which gives the supporter and language unless they are passed.

Each card becomes one finished episode (persona ``default``, repeat 0), so
``export_esc_eval`` writes the same files back. The cards themselves are not in
these files: ``card_id`` is the index and category and source are ``"unknown"``.

Example::

    store = Store.open("imported.sqlite", create=True)
    import_esc_eval(store, Path("result_llama3_en.json"), Path("score_llama3_en.json"))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.profiles import DIMENSIONS
from roles.jsonl import json_error
from runs.exchange import parse_lines
from runs.store import ImportedEpisode, PlannedEpisode, Store

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
                                        "(expected MODEL_LANG.json or result_MODEL_LANG.json; or pass them)")
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
    """Deterministic key of an imported episode: importing the same file again replaces it."""
    return f"{supporter}/default/{language}-{card_index:05d}/imported/r0"


def _next_ordinal(store: Store) -> int:
    return int(store.rows("SELECT COALESCE(MAX(ordinal), -1) + 1 AS next FROM episodes")[0]["next"])


def _episodes(result_path: Path, score_path: Path | None, supporter: str, language: str, first_ordinal: int) -> list[ImportedEpisode]:
    """Read and check both files completely before anything is written."""
    transcripts = read_result_file(result_path)
    scores = read_score_file(score_path) if score_path is not None else {}
    for key in scores:
        if key not in transcripts:
            raise ResultFileError(score_path or "", f"has no transcript in {result_path}", key=key)
    at = time.time()
    reason = f"imported from {Path(result_path).name}"
    episodes = []
    for ordinal, key in enumerate(sorted(transcripts, key=int), start=first_ordinal):
        index = int(key)
        planned = PlannedEpisode(
            key=episode_key(supporter, language, index), ordinal=ordinal, card_index=index, card_id=key,
            language=language, category=UNKNOWN, source=UNKNOWN, supporter=supporter, persona="default", repeat=0, seed=0,
        )
        labels = tuple(scores.get(key, {}).items())
        episodes.append(ImportedEpisode(planned, tuple(transcripts[key]), labels, reason=reason, at=at))
    return episodes


def import_esc_eval(store: Store, result_path: Path, score_path: Path | None = None, *,
                    supporter: str | None = None, language: str | None = None) -> ImportSummary:
    """Import one ESC-Eval result file (and its score file) as finished episodes, in one transaction.

    Args:
        store: a writable store whose writer is not running.
        result_path: ``result_{supporter}_{lang}.json`` or ``MODEL_LANG.json``.
        score_path: the matching score file, or ``None`` for transcripts only.
        supporter / language: override what the file name says.

    Returns:
        An ``ImportSummary`` with the number of episodes and scores written.

    Raises:
        ResultFileError: a file is unreadable or malformed (nothing is written).
        StoreError: the store is read-only or being written by a run.
    """
    result_path = Path(result_path)
    score_path = Path(score_path) if score_path is not None else None
    supporter, language = supporter_and_language(result_path, supporter, language)
    episodes = _episodes(result_path, score_path, supporter, language, _next_ordinal(store))
    written = store.import_episodes(episodes)
    return ImportSummary(result_path, score_path, supporter, language, written, sum(len(e.scores) for e in episodes))


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


def import_command(store_path: Path, results: list[Path], scores: list[Path]) -> str:
    """``esc-eval import STORE RESULT... [--scores SCORE...]``: returns the text to print.

    Creates the store when it does not exist. Every file is read and checked
    before the store is opened, so bad input writes nothing.
    """
    if not results:
        raise ResultFileError(store_path, "no result files given")
    pairs = pair_files(results, scores)
    plans = []
    for result_path, score_path in pairs:
        supporter, language = supporter_and_language(result_path)
        _episodes(result_path, score_path, supporter, language, 0)  # check; re-read below with real ordinals
        plans.append((result_path, score_path, supporter, language))
    store_path = Path(store_path)
    created = not store_path.exists()
    if created:
        store_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(store_path, create=created)
    lines = []
    try:
        if created:
            store.set_meta(created_at=time.time(), origin="esc-eval import")
        imports = list(store.meta("imports", []))
        for result_path, score_path, supporter, language in plans:
            summary = import_esc_eval(store, result_path, score_path, supporter=supporter, language=language)
            imports.append({"result": str(result_path), "score": str(score_path) if score_path else None,
                            "supporter": supporter, "language": language, "episodes": summary.episodes, "at": time.time()})
            lines.append(f"{result_path}: {summary.episodes} episodes, {summary.scores} scores "
                         f"(supporter {supporter}, language {language})" + (f" with {score_path}" if score_path else ""))
        store.set_meta(imports=imports)
    finally:
        store.close_sync()
    lines.append(f"store: {store_path}{' (created)' if created else ''}")
    return "\n".join(lines)
