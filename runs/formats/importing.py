"""Imports into a store, so ``report`` and ``export`` work on them: ESC-Eval's result and score
files, and our own JSONL export (``esc-eval export --format jsonl``, ``archive``), which gives the store back.

An ESC-Eval result file is a JSON object keyed by card index ("0", "1", ...) whose
values are transcripts as lines ``"AI assistant：text"`` / ``"ESC-Role：text"``; its
score file is keyed the same way, each value mapping dimension keys to a label 0..4
or -1. The file is named ``MODEL_LANG.json`` (ESC-Eval) or ``result_MODEL_LANG.json``
(our export), which gives the supporter and language unless they are passed;
``result_MODEL+PERSONA_LANG.json`` (our export of a non-default persona) gives the persona too.

Each card becomes one finished episode (repeat 0), so ``export_esc_eval`` writes the same
files back. The cards themselves are not in these files: ``card_id`` is the index and
category and source are ``"unknown"``.

Imports never merge silently. An episode whose key the store holds is skipped (and counted)
when the file says the same about it, and refused, naming the key, when it says something
else; a store holding a run (it has a fingerprint) takes only an export of that same run
unless ``merge`` (see ``import_command``). So importing a file twice, or into the store it
came from, duplicates nothing, and two runs never mix unnoticed.

Example::

    with Store.open("imported.sqlite", create=True) as store:
        import_esc_eval(store, Path("result_llama3_en.json"), Path("score_llama3_en.json"))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from esc_eval.agents.judge.profiles import DIMENSIONS, LABELS, NO_LABEL
from esc_eval.roles.jsonl import json_error
from esc_eval.runs.formats.archive import OWN_HISTORY, JsonlExport, read_jsonl_export
from esc_eval.runs.formats.exchange import PERSONA_SEPARATOR, ResultFileError, parse_lines
from esc_eval.runs.garbage import no_collections
from esc_eval.runs.store import EpisodeRows, ImportedEpisode, PlannedEpisode, Store, schema
from esc_eval.runs.store.records import episode_key

UNKNOWN = "unknown"
LANGUAGE_ALIASES = {"english": "en", "chinese": "zh"}
_PREFIXES = ("result_", "score_")


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
    """Episodes the store held already (same key, same content), left as they were."""
    persona: str = "default"


def file_stem(path: Path) -> str:
    """``result_llama_en.json`` / ``score_llama_en.json`` / ``llama_en.json`` -> ``llama_en``."""
    stem = path.stem
    for prefix in _PREFIXES:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix):]
    return stem


class Names(NamedTuple):
    """Whom a result file is for."""

    supporter: str
    persona: str
    language: str


def file_names(path: Path, supporter: str | None = None, language: str | None = None) -> Names:
    """The supporter, persona and language a result file is for: given, or from its name.

    ``[result_]MODEL[+PERSONA]_LANG.json``: the language after the last ``_``, the persona after
    ``+`` (``default`` without one). A given ``supporter`` takes the whole name's place.
    """
    persona = "default"
    if supporter is None or language is None:
        name, sep, lang = file_stem(path).rpartition("_")
        if not sep or not name or not lang:
            raise ResultFileError(path, "cannot tell supporter and language from the file name "
                                        "(expected MODEL_LANG.json or result_MODEL_LANG.json, or give --supporter and --language)")
        if supporter is None and PERSONA_SEPARATOR in name:
            name, _, persona = name.partition(PERSONA_SEPARATOR)
            if not name or not persona or PERSONA_SEPARATOR in persona:
                raise ResultFileError(path, f"expected one {PERSONA_SEPARATOR!r} between supporter and persona "
                                            "(result_MODEL+PERSONA_LANG.json), or give --supporter")
        supporter = name if supporter is None else supporter
        language = lang if language is None else language
    if not supporter or not language:
        raise ResultFileError(path, "supporter and language must be non-empty")
    return Names(supporter, persona, LANGUAGE_ALIASES.get(language.lower(), language))


def supporter_and_language(path: Path, supporter: str | None = None, language: str | None = None) -> tuple[str, str]:
    """The supporter and language a result file is for (``file_names`` without the persona)."""
    names = file_names(path, supporter, language)
    return names.supporter, names.language


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
            if isinstance(label, bool) or not isinstance(label, int) or (label not in LABELS and label != NO_LABEL):
                raise ResultFileError(path, f"dimension {dim!r}: expected a label 0..4 or -1, got {label!r}", key=key)
        out[key] = dict(labels)
    return out


def esc_eval_episodes(result_path: Path, score_path: Path | None, supporter: str, language: str,
                      persona: str = "default") -> list[ImportedEpisode]:
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
            key=episode_key(supporter, persona, f"{language}-{index:05d}", "imported", 0), ordinal=0, card_index=index, card_id=key,
            language=language, category=UNKNOWN, source=UNKNOWN, supporter=supporter, persona=persona, repeat=0, seed=0,
        )
        labels = tuple(scores.get(key, {}).items())
        episodes.append(ImportedEpisode(planned, tuple(transcripts[key]), labels, reason=reason, at=at))
    return episodes


ESC_EVAL_CONTENT = {"turns": ("idx", "role", "text"), "scores": ("dimension", "round", "sample", "label")}
"""What an ESC-Eval file says about an episode: importing one compares only these (the rest records the import)."""
ADDED_LATER = ("annotations",)
"""Episode tables whose rows a store gains over time (human labels): an import adds the rows the store
lacks and compares only the rows both have."""


def esc_eval_content(score_path: Path | None) -> dict[str, tuple[str, ...]]:
    """What a result file (and its score file, when given) states: without one it says nothing about scores."""
    return ESC_EVAL_CONTENT if score_path is not None else {"turns": ESC_EVAL_CONTENT["turns"]}


def difference(have: EpisodeRows, new: EpisodeRows, content: dict[str, tuple[str, ...]] | None = None) -> str | None:
    """How ``new`` differs from the episode a store holds under its key, or ``None``: the same.

    ``content``: table -> the columns a file states (ESC-Eval files); ``None``: every column
    the file gives but ``ordinal`` (the importing store numbers episodes).
    """
    if content is None:
        for column, value in new.episode.items():
            if column != "ordinal" and have.episode.get(column) != value:
                return f"{column} {have.episode.get(column)!r:.40} in the store, {value!r:.40} in the file"
    held = have.tables()
    for table, rows in new.tables().items():
        if content is None and list(rows) == list(held.get(table, ())):
            continue  # the usual case, at C speed: the same rows, in the same (primary-key) order
        key = tuple(c for c in schema.primary_key(table) if c != "episode_key")
        mine = {tuple(r.get(c, 0) for c in key): r for r in held.get(table, ())}
        if table in ADDED_LATER:
            for row in rows:
                old = mine.get(tuple(row.get(c, 0) for c in key))
                if old is not None and any(old.get(c) != v for c, v in row.items()):
                    return f"{table} {', '.join(str(row.get(c)) for c in key)}: {old!r:.60} in the store, {row!r:.60} in the file"
            continue
        if content is not None and table not in content:
            continue
        if len(rows) != len(mine):
            return f"{len(mine)} {table} in the store, {len(rows)} in the file"
        for row in rows:
            old = mine.get(tuple(row.get(c, 0) for c in key))
            columns = content[table] if content is not None else tuple(row)
            if old is None or any(old.get(c, 0) != row.get(c, 0) for c in columns):
                where = ", ".join(f"{c} {row.get(c, 0)}" for c in key)
                return f"{table} differ at {where}"
    return None


def conflict(path: Path, key: str, where: Path | str, how: str) -> ResultFileError:
    return ResultFileError(path, f"episode {key!r} is in {where} already with different content ({how}); "
                                 "nothing imported: import into a new store, or remove one of them")


def import_new(store: Store, episodes: list[EpisodeRows], path: Path, content: dict[str, tuple[str, ...]] | None = None,
               ) -> tuple[list[EpisodeRows], int]:
    """Write the episodes whose keys the store lacks, in one transaction; returns them and how many it had (the same).

    Raises ``ResultFileError`` naming the key, before writing anything, when the store holds an
    episode under one of the keys with different content.
    """
    held = store.episode_rows(e.episode["key"] for e in episodes)
    for rows in episodes:
        have = held.get(rows.episode["key"])
        how = difference(have, rows, content) if have is not None else None
        if how is not None:
            raise conflict(path, rows.episode["key"], store.path, how)
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
        ResultFileError: a file is unreadable or malformed, or the store holds one of its episodes with
            different content (nothing is written).
        StoreError: the store is read-only or being written by a run.
    """
    result_path = Path(result_path)
    score_path = Path(score_path) if score_path is not None else None
    names = file_names(result_path, supporter, language)
    episodes = [e.rows() for e in esc_eval_episodes(result_path, score_path, names.supporter, names.language, names.persona)]
    new, skipped = import_new(store, episodes, result_path, esc_eval_content(score_path))
    return ImportSummary(result_path, score_path, names.supporter, names.language, len(new), sum(len(e.scores) for e in new), skipped,
                         names.persona)


# -- the command ------------------------------------------------------------------------------------


def pair_files(results: list[Path], scores: list[Path], *, force: bool = False) -> list[tuple[Path, Path | None]]:
    """Match each score file to the result file with the same ``MODEL_LANG`` (one of each: paired as given).

    A pair given as one of each whose names tell different supporters or languages is refused
    unless ``force``: ``score_beta_en.json`` does not hold ``result_alpha_en.json``'s labels.
    """
    if len(results) == 1 and len(scores) == 1:
        result, score = Path(results[0]), Path(scores[0])
        said = [file_stem(p).rpartition("_") for p in (result, score)]
        if not force and all(sep and name and lang for name, sep, lang in said) and said[0] != said[1]:
            raise ResultFileError(score, f"is named for {said[1][0]} ({said[1][2]}), not {said[0][0]} ({said[0][2]}) like {result}; "
                                         "pass --force if it does hold that file's scores")
        return [(result, score)]
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


@dataclass
class _Source:
    """One file of an import, read and checked: its episodes and what it says about the run it came from."""

    path: Path
    episodes: list[EpisodeRows]
    content: dict[str, tuple[str, ...]] | None
    export: JsonlExport | None = None
    names: Names | None = None
    score_path: Path | None = None
    adopt: bool = False
    """An archive restoring an empty store: its unfinished episodes, meta and history come too."""

    @property
    def fingerprint(self) -> str | None:
        return self.export.fingerprint if self.export is not None else None


def _origin(fingerprint: str | None) -> str:
    return f"run {fingerprint}" if fingerprint else "no run fingerprint (an ESC-Eval file, a format-2 export or an imported store)"


def _check(store_path: Path, sources: list[_Source], merge: bool) -> None:
    """Refuse, before anything is written, an import that would mix runs or change an episode the store holds."""
    held: dict[str, EpisodeRows] = {}
    fingerprint, empty = None, True
    if store_path.exists():
        with Store.open(store_path, readonly=True) as store:  # read-only: a refusal leaves the file byte-identical
            fingerprint, empty = store.meta("fingerprint"), not store.counts()
            held = store.episode_rows(e.episode["key"] for source in sources for e in source.episodes + _unfinished(source))
    where: dict[str, Path | str] = dict.fromkeys(held, store_path)
    for source in sources:
        if fingerprint is not None and source.fingerprint != fingerprint and not merge:
            raise ResultFileError(source.path, f"has {_origin(source.fingerprint)}, but {store_path} holds run {fingerprint}: "
                                               "importing it would mix two runs; import into a new store, or pass --merge")
        source.adopt = source.export is not None and source.export.meta is not None and fingerprint is None and empty
        for rows in source.episodes + _unfinished(source):
            key = rows.episode["key"]
            have = held.get(key)
            how = difference(have, rows, source.content) if have is not None else None
            if how is not None:
                raise conflict(source.path, key, where[key], how)
            held.setdefault(key, rows)
            where.setdefault(key, source.path)
        if source.adopt:
            fingerprint = source.fingerprint
        empty = empty and not source.episodes and not _unfinished(source)


def _unfinished(source: _Source) -> list[EpisodeRows]:
    return source.export.unfinished if source.export is not None and source.adopt else []


@no_collections()     # ~40k episodes' rows read and checked at once: no cycles among them (docs/performance.md)
def import_command(store_path: Path, files: list[Path], scores: list[Path], *, supporter: str | None = None,
                   language: str | None = None, merge: bool = False, force: bool = False) -> str:
    """``esc-eval import STORE FILE... [--scores SCORE...] [--supporter S] [--language L] [--merge] [--force]``: the text to print.

    A ``.jsonl`` file is a JSONL export; any other is an ESC-Eval result file, paired with
    its score file and named by ``supporter``/``language`` when its name does not tell them.
    Creates the store when it does not exist. Every file is read and checked, and the store
    compared with them read-only, before the store is opened for writing: a refused import
    leaves the store byte-identical. Refused (``ResultFileError``): an episode the store (or
    an earlier file) holds with other content, even with ``merge``; into a store holding a
    run (its fingerprint), a file from another run or with no fingerprint, unless ``merge``;
    a score file named for another supporter or language, unless ``force``.

    An archive (format 3) imported into a store without episodes and fingerprint restores it:
    unfinished episodes, meta (config, fingerprint: ``--resume`` continues it), ``runs`` and
    ``events``. Into any other store it adds its finished episodes and their rows and its
    events; its meta and ``runs`` are recorded in the store's ``imports`` list.
    """
    if not files:
        raise ResultFileError(store_path, "no result files or JSONL exports given")
    files = [Path(f) for f in files]
    results = [f for f in files if f.suffix != ".jsonl"]
    exports = {f: read_jsonl_export(f) for f in files if f.suffix == ".jsonl"}
    if exports and not results and (supporter or language or scores):
        raise ResultFileError(next(iter(exports)), "a JSONL export names each episode's supporter and language and holds its "
                                                   "scores: --supporter, --language and --scores are for ESC-Eval result files")
    plans: dict[Path, _Source] = {path: _Source(path, export.episodes, None, export) for path, export in exports.items()}
    named: dict[tuple[str, str, str], Path] = {}
    for result_path, score_path in pair_files(results, scores, force=force) if results else []:
        names = file_names(result_path, supporter, language)
        if names in named:
            raise ResultFileError(result_path, f"names the same supporter and language as {named[names]} ({names.supporter}, "
                                               f"{names.language})")
        named[names] = result_path
        episodes = [e.rows() for e in esc_eval_episodes(result_path, score_path, names.supporter, names.language, names.persona)]
        plans[result_path] = _Source(result_path, episodes, esc_eval_content(score_path), names=names, score_path=score_path)
    sources = [plans[path] for path in files]
    store_path = Path(store_path)
    _check(store_path, sources, merge)
    created = not store_path.exists()
    if created:
        store_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    with Store.open(store_path, create=created) as store:
        imports = list(store.meta("imports", []))
        for source in sources:
            lines.append(_import(store, source, imports))
        if created and store.meta("created_at") is None:
            imports_meta: dict[str, Any] = {"created_at": time.time(), "origin": "esc-eval import"}
        else:
            imports_meta = {}
        store.set_meta(imports=imports, **imports_meta)
    lines.append(f"store: {store_path}{' (created)' if created else ''}")
    return "\n".join(lines)


def _import(store: Store, source: _Source, imports: list[dict[str, Any]]) -> str:
    """Write one checked file; appends its record to ``imports`` and returns its summary line."""
    at = time.time()
    export = source.export
    if export is None:  # an ESC-Eval result file
        assert source.names is not None
        done = store.import_rows(source.episodes)
        written = set(done.new)
        new = [e for e in source.episodes if e.episode["key"] in written]
        skipped = len(source.episodes) - len(new)
        names = source.names
        imports.append({"result": str(source.path), "score": str(source.score_path) if source.score_path else None,
                        "supporter": names.supporter, "persona": names.persona, "language": names.language,
                        "episodes": len(new), "skipped": skipped, "at": at})
        return (f"{source.path}: {len(new)} episodes, {sum(len(e.scores) for e in new)} scores (supporter {names.supporter}"
                + (f", persona {names.persona}" if names.persona != "default" else "") + f", language {names.language})"
                + (f" with {source.score_path}" if source.score_path else "") + f"; skipped {skipped} already in the store")
    episodes = export.episodes + (export.unfinished if source.adopt else [])
    tables = dict(export.tables)
    history = {t: tables.pop(t) for t in OWN_HISTORY if t in tables and not source.adopt}
    meta = None
    if source.adopt:
        meta = dict(export.meta or {})
        imports[:0] = meta.pop("imports", [])  # the archive's own history first
    done = store.import_rows(episodes, tables=tables, meta=meta)
    written = set(done.new)
    new = [e for e in episodes if e.episode["key"] in written]
    record: dict[str, Any] = {"jsonl": str(export.path), "format_version": export.version, "fingerprint": export.fingerprint,
                              "episodes": len(new), "skipped": len(episodes) - len(new), "at": at}
    if not source.adopt and export.meta is not None:
        record["meta"] = export.meta  # a merge keeps the store's config; the archive's stays on record
    record.update(history)
    imports.append(record)
    counts = {t: done.added.get(t, 0) for t in schema.episode_tables()}
    for e in new:   # one pass over the episodes' tables, not one per table
        for t, rows in e.tables().items():
            if t in counts:
                counts[t] += len(rows)
    statuses = [e.episode.get("status") for e in new]
    unfinished = len(new) - statuses.count("done") - statuses.count("failed")
    text = (f"{export.path}: {len(new)} episodes ({statuses.count('done')} done, {statuses.count('failed')} failed"
            + (f", {unfinished} unfinished" if unfinished else "") + "), "
            + ", ".join(f"{n} {t}" for t, n in counts.items() if n or t in ("turns", "scores"))
            + "".join(f", {n} {t}" for t, n in done.store_rows.items() if n)
            + f"; skipped {len(episodes) - len(new)} already in the store")
    if export.unfinished and not source.adopt:
        text += f"; {len(export.unfinished)} unfinished (planned or running) not imported"
    if source.adopt and export.fingerprint:
        text += "; the store takes the run's config and fingerprint (`esc-eval run CONFIG --store STORE --resume` continues it)"
    return text
