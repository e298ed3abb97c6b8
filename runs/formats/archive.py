"""Our JSONL export, a lossless archive of a store: ``esc-eval export --format jsonl`` writes it, ``import`` reads it.

Format 3 (``format_version`` on every line) is written generically over the store's schema, so
a table added later travels without a new format:

* the first line, ``{"format_version": 3, "store": {...}}``, holds the store's ``meta`` (config,
  fingerprint, personas, plugins, versions, seed, ...; not ``schema.PRIVATE_META``: the
  annotation server's secret and the schema version), the schema version it was written from,
  and under ``tables`` every row of each store-level table (``runs``, ``events``, ...) and any
  row of an episode table whose episode the store lacks;
* then one line per episode: every column of ``episodes`` (``ordinal`` included) and, under
  each episode table's name (``turns``, ``scores``, ``annotations``, ...), its rows in that table
  without ``episode_key``. A turn's ``state`` (the seeker's hidden state) is an object.

Readers of episode lines (``esc-eval judge``, ``seeker train``) skip the store line. Format 2
(episode lines only: columns but ``ordinal``, turns and scores) is still read.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from esc_eval.roles.jsonl import read_jsonl
from esc_eval.runs.formats.exchange import ResultFileError, write_text
from esc_eval.runs.store import EpisodeRows, Store, schema

JSONL_FORMAT_VERSION = 3
"""``format_version`` of every line of a JSONL export. 1 (no field): labels only, cannot be imported.
2: every column of the episode but ``ordinal``, its turns and its scores. 3: the whole store (above)."""

STORE_LINE = "store"
"""The field that marks the store line of a format-3 export."""

FINISHED = ("done", "failed")
"""Statuses an import into a store with episodes takes; ``planned`` and ``running`` ones travel only into an empty store."""

OWN_HISTORY = ("runs",)
"""Store-level tables about the store itself (the invocations that ran it): they restore an empty
store; an import into another store records them in its ``imports`` meta instead."""

_TYPES: dict[str, tuple[type, ...]] = {"INTEGER": (int,), "REAL": (int, float), "TEXT": (str,)}
_OBJECTS = {("turns", "state")}
"""Columns holding JSON text in the store and an object in the file."""
_ALLOWED = {("episodes", "status"): ("planned", "running", "done", "failed"), ("turns", "role"): ("seeker", "supporter"),
            ("scores", "status"): ("ok", "failed")}
_RANGES: dict[tuple[str, str], tuple[int, int, str]] = {
    ("scores", "label"): (-1, 4, "a label 0..4, -1 or null"), ("annotations", "label"): (0, 4, "a label 0..4")}


def _store_tables() -> tuple[str, ...]:
    """Tables outside ``meta``, ``episodes`` and the episode tables: they travel whole in the store line."""
    return tuple(t for t in schema.tables() if t not in ("meta", "episodes", *schema.episode_tables()))


def export_jsonl(store: Store, out: Path) -> list[Path]:
    """Write ``out/episodes.jsonl``: the store line, then one line per episode (planned ones too), in plan order."""
    owned: dict[str, dict[str, list[dict[str, Any]]]] = {table: defaultdict(list) for table in schema.episode_tables()}
    for table in schema.episode_tables():
        for row in store.table_rows(table):
            key = row.pop("episode_key")
            if (table, "state") in _OBJECTS and row.get("state"):
                row["state"] = json.loads(row["state"])
            owned[table][key].append(row)
    episodes = sorted(store.table_rows("episodes"), key=lambda e: (e["ordinal"], e["key"]))
    keys = {e["key"] for e in episodes}
    tables = {t: store.table_rows(t) for t in _store_tables()}
    for table, by_key in owned.items():  # rows about an episode the store lacks: kept all the same
        orphans = [{"episode_key": key, **row} for key, rows in by_key.items() if key not in keys for row in rows]
        if orphans:
            tables[table] = orphans
    meta = {k: v for k, v in store.meta_items().items() if k not in schema.PRIVATE_META}
    header = {"format_version": JSONL_FORMAT_VERSION,
              STORE_LINE: {"schema_version": store.meta("schema_version"), "meta": meta, "tables": tables}}
    lines = [json.dumps(header, ensure_ascii=False)]
    for e in episodes:
        record = {"format_version": JSONL_FORMAT_VERSION, **e}
        for table, by_key in owned.items():
            record[table] = by_key.get(e["key"], [])
        lines.append(json.dumps(record, ensure_ascii=False))
    return [write_text(out / "episodes.jsonl", "\n".join(lines) + "\n")]


class ArchiveError(ResultFileError):
    """A JSONL export cannot be imported; the message names the file, the line and the field."""


@dataclass(frozen=True)
class JsonlExport:
    """What a JSONL export holds, as store rows."""

    path: Path
    version: int
    episodes: list[EpisodeRows]
    """Finished (``done``/``failed``) episodes."""
    unfinished: list[EpisodeRows]
    """``planned``/``running`` episodes of a store exported mid-run."""
    meta: dict[str, Any] | None = None
    """The store's meta (format 3), or ``None`` (format 2)."""
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Store-level table -> its rows (format 3)."""

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the run the export came from (``None``: format 2, or a store made by importing)."""
        return (self.meta or {}).get("fingerprint")


def _describe(types: tuple[type, ...]) -> str:
    """``(int, float, NoneType)`` -> ``"a number or null"``."""
    kind = "a number" if float in types else "an integer" if int in types else "text"
    return kind + (" or null" if type(None) in types else "")


class _Field(NamedTuple):
    """How a file's field is checked as a column."""

    name: str
    required: bool
    types: tuple[type, ...]
    is_object: bool
    allowed: tuple[str, ...] | None
    bounds: tuple[int, int, str] | None


@functools.cache
def _fields(table: str, columns: tuple[schema.Column, ...], refused: tuple[str, ...]) -> tuple[tuple[_Field, ...], frozenset[str]]:
    """The checks of ``table``'s columns (those not ``refused``), and every column name; cached per schema."""
    fields = tuple(_Field(c.name, (c.notnull or c.key > 0) and c.default is None,
                          _TYPES[c.type] + (() if c.notnull or c.key else (type(None),)), (table, c.name) in _OBJECTS,
                          _ALLOWED.get((table, c.name)), _RANGES.get((table, c.name)))
                   for c in columns if c.name not in refused)
    return fields, frozenset(c.name for c in columns)


def _row(fail: Callable[[str], ArchiveError], value: Any, where: str, table: str, *, nested: bool, version: int) -> dict[str, Any]:
    """``value`` checked as a row of ``table`` against the schema: required columns, types, known values."""
    if not isinstance(value, dict):
        raise fail(f"field '{where.rstrip('.') or table}': expected an object, got {type(value).__name__}")
    refused = _refused(table, nested, version)
    fields, known = _fields(table, schema.table_columns(table), refused)
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in value:
            if f.required:
                raise fail(f"field '{where}{f.name}' is missing")
            continue
        item = value[f.name]
        if f.is_object:
            if item is not None and not isinstance(item, dict):
                raise fail(f"field '{where}{f.name}': expected an object, got {type(item).__name__}")
            out[f.name] = json.dumps(item, ensure_ascii=False) if item else None  # as the store's writer encodes it
            continue
        if item.__class__ is bool or not isinstance(item, f.types):
            raise fail(f"field '{where}{f.name}': expected {_describe(f.types)}, got {item!r:.60}")
        if f.allowed is not None and item not in f.allowed:
            raise fail(f"field '{where}{f.name}': expected {', '.join(f.allowed[:-1])} or {f.allowed[-1]}, got {item!r:.60}")
        if f.bounds is not None and isinstance(item, int) and not f.bounds[0] <= item <= f.bounds[1]:
            raise fail(f"field '{where}{f.name}': expected {f.bounds[2]}, got {item!r}")
        out[f.name] = item
    if len(out) != len(value):
        for name in value:
            if name in refused:
                raise fail(f"field '{where}{name}': not part of the format (the importing store sets it)")
            if name not in known:
                raise fail(f"field '{where}{name}': unknown to this esc-eval's store (table {table}); upgrade esc-eval")
    return out


def _refused(table: str, nested: bool, version: int) -> tuple[str, ...]:
    """Columns a file must not give: ``episode_key`` inside an episode line, ``ordinal`` before format 3."""
    return (("episode_key",) if nested else ()) + (("ordinal",) if version < 3 and table == "episodes" else ())


def _all_pass(rows: list[Any], table: str, *, nested: bool, version: int) -> bool:
    """Whether every one of ``rows`` passes ``_row``'s checks, tested column by column at C speed.

    ``False``: some row fails, and ``_row`` over the lines in file order then names the first
    failure. ``True``: the rows are valid as they are once ``_encode`` has encoded their object columns.
    """
    fields, _ = _fields(table, schema.table_columns(table), _refused(table, nested, version))
    names = frozenset(f.name for f in fields)
    required = frozenset(f.name for f in fields if f.required)
    if set(map(type, rows)) - {dict}:
        return False
    shapes = set(map(tuple, rows))                   # the rows' column lists: one or a few
    if not all(required <= set(shape) <= names for shape in shapes):
        return False
    for f in fields:
        having = sum(f.name in shape for shape in shapes)
        values = (list(map(itemgetter(f.name), rows)) if having == len(shapes)
                  else [row[f.name] for row in rows if f.name in row] if having else [])
        found = set(map(type, values))
        if not found <= ({dict, type(None)} if f.is_object else set(f.types)):
            return False
        if f.allowed is not None and not set(values) <= set(f.allowed):
            return False
        if f.bounds is not None and int in found:
            numbers = [v for v in values if v.__class__ is int]
            if not f.bounds[0] <= min(numbers) <= max(numbers) <= f.bounds[1]:
                return False
    return True


def _encode(rows: list[dict[str, Any]], table: str) -> None:
    """Object columns of rows that passed ``_all_pass``, encoded in place as ``_row`` encodes them (after every check:
    a failing line must reach ``_row`` as the file has it)."""
    for column in (c.name for c in schema.table_columns(table) if (table, c.name) in _OBJECTS):
        for row in rows:
            if column in row:
                row[column] = json.dumps(row[column], ensure_ascii=False) if row[column] else None


def _unique_keys(table: str, owners: list[int], rows: list[dict[str, Any]]) -> bool:
    """Whether no two of ``rows`` (of the episodes ``owners``, one per row) have the same primary key in their episode."""
    key = tuple(c for c in schema.primary_key(table) if c != "episode_key")
    values = (zip(*(map(itemgetter(c), rows) for c in key)) if key and all(set(key) <= set(shape) for shape in set(map(tuple, rows)))
              else (tuple(row.get(c, 0) for c in key) for row in rows))
    return len(set(zip(owners, values))) == len(rows)


def _episodes(records: list[tuple[int, dict[str, Any]]], version: int) -> list[EpisodeRows] | None:
    """The episode lines as store rows, checked set-wise (``_all_pass``, ``_unique_keys``); ``None`` when a check fails."""
    tables = schema.episode_tables() if version >= 3 else ("turns", "scores")
    drop = frozenset(("format_version", *tables))
    episodes = [{k: v for k, v in record.items() if k not in drop} for _, record in records]
    if not _all_pass(episodes, "episodes", nested=False, version=version) or not all(e["key"] for e in episodes):
        return None
    order = [f.name for f in _fields("episodes", schema.table_columns("episodes"), _refused("episodes", False, version))[0]]
    owned: dict[str, list[tuple[dict[str, Any], ...]]] = {}
    for table in tables:
        lists = [record.get(table, []) for _, record in records]  # a table added after the file was written: no rows
        if not all(rows.__class__ is list for rows in lists):
            return None
        flat = [row for rows in lists for row in rows]
        owners = list(itertools.chain.from_iterable(map(itertools.repeat, range(len(lists)), map(len, lists))))
        if not _all_pass(flat, table, nested=True, version=version) or not _unique_keys(table, owners, flat):
            return None
        owned[table] = [tuple(rows) for rows in lists]
    _encode(episodes, "episodes")
    for table, lists in owned.items():
        _encode([row for rows in lists for row in rows], table)
    out = []
    for i, episode in enumerate(episodes):
        rest = {table: owned[table][i] for table in tables if table not in ("turns", "scores")}
        out.append(EpisodeRows({name: episode[name] for name in order if name in episode}, owned["turns"][i], owned["scores"][i], rest))
    return out


def _and(names: tuple[str, ...]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _episode(fail: Callable[[str], ArchiveError], record: dict[str, Any], version: int) -> EpisodeRows:
    """One episode line as store rows."""
    tables = schema.episode_tables() if version >= 3 else ("turns", "scores")
    episode = _row(fail, {k: v for k, v in record.items() if k not in ("format_version", *tables)}, "", "episodes",
                   nested=False, version=version)
    if not episode["key"]:
        raise fail("field 'key': must not be empty")
    owned: dict[str, tuple[dict[str, Any], ...]] = {}
    for table in tables:
        rows = record.get(table, [])  # a table added after the file was written: no rows
        if not isinstance(rows, list):
            raise fail(f"field '{table}': expected a list, got {type(rows).__name__}")
        checked = tuple(_row(fail, row, f"{table}[{i}].", table, nested=True, version=version) for i, row in enumerate(rows))
        key = tuple(c for c in schema.primary_key(table) if c != "episode_key")
        if len({tuple(row.get(c, 0) for c in key) for row in checked}) != len(checked):
            raise fail(f"field '{table}': two {table} have the same {_and(key)}")
        owned[table] = checked
    turns, scores = owned.pop("turns"), owned.pop("scores")
    return EpisodeRows(episode, turns, scores, owned)


def _store(fail: Callable[[str], ArchiveError], value: Any) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The store line's meta and store-level rows."""
    if not isinstance(value, dict) or not isinstance(value.get("meta"), dict) or not isinstance(value.get("tables"), dict):
        raise fail(f"field '{STORE_LINE}': expected an object with 'meta' and 'tables' objects")
    meta = {k: v for k, v in value["meta"].items() if k not in schema.PRIVATE_META}
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, rows in value["tables"].items():
        if table not in schema.tables() or table in ("meta", "episodes"):
            raise fail(f"field 'store.tables.{table}': unknown to this esc-eval's store; upgrade esc-eval")
        if not isinstance(rows, list):
            raise fail(f"field 'store.tables.{table}': expected a list, got {type(rows).__name__}")
        tables[table] = [_row(fail, row, f"store.tables.{table}[{i}].", table, nested=False, version=3) for i, row in enumerate(rows)]
    return meta, tables


def _line_by_line(path: Path, records: list[tuple[int, dict[str, Any]]], version: int) -> list[EpisodeRows]:
    """The episode lines checked one at a time, in file order: the first bad field, or a key given twice, raises."""
    out: list[EpisodeRows] = []
    lines: dict[str, int] = {}
    for number, record in records:
        def fail(message: str, number: int = number) -> ArchiveError:
            return ArchiveError(path, f"line {number}: {message}")

        rows = _episode(fail, record, version)
        key = rows.episode["key"]
        if key in lines:
            raise fail(f"episode {key!r} is on line {lines[key]} already")
        lines[key] = number
        out.append(rows)
    return out


def read_jsonl_export(path: Path) -> JsonlExport:
    """Every line of an ``esc-eval export --format jsonl`` file, checked; raises ``ArchiveError`` naming line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchiveError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ArchiveError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ArchiveError(path, f"cannot read: {exc.strerror or exc}") from None
    records: list[tuple[int, dict[str, Any]]] = []   # episode lines, checked together below
    versions: set[int] = set()
    store: tuple[dict[str, Any], dict[str, list[dict[str, Any]]]] | None = None
    try:
        for number, record in read_jsonl(text, None, lambda message: ArchiveError(path, message)):
            def fail(message: str, number: int = number) -> ArchiveError:
                return ArchiveError(path, f"line {number}: {message}")

            version = record.get("format_version")
            if version is None:
                raise fail("no 'format_version': not an esc-eval JSONL export, or one from before format 2, which lacks the "
                           "judges' raw replies and failures and cannot be imported; export the store again")
            if isinstance(version, bool) or not isinstance(version, int) or version < 2:
                raise fail(f"field 'format_version': expected {JSONL_FORMAT_VERSION}, got {version!r}")
            if version > JSONL_FORMAT_VERSION:
                raise fail(f"format_version {version} is newer than this esc-eval reads ({JSONL_FORMAT_VERSION}); upgrade esc-eval")
            if versions and version not in versions:
                raise fail(f"format_version {version} in a file of format {min(versions)}")
            versions.add(version)
            if STORE_LINE in record:
                if version < 3 or store is not None:
                    raise fail(f"field '{STORE_LINE}': " + ("a second store line" if store is not None else "not part of format 2"))
                store = _store(fail, record[STORE_LINE])
                continue
            records.append((number, record))
    except ArchiveError:
        _line_by_line(path, records, min(versions, default=JSONL_FORMAT_VERSION))  # an earlier line's error comes first
        raise
    if not records and store is None:
        raise ArchiveError(path, "holds no episodes")
    version = versions.pop()
    checked = _episodes(records, version) if records else []
    if checked is None:   # some line fails: the checks line by line name the first failure
        checked = _line_by_line(path, records, version)
    lines: dict[str, int] = {}
    finished: list[EpisodeRows] = []
    unfinished: list[EpisodeRows] = []
    for (number, _), rows in zip(records, checked):
        key = rows.episode["key"]
        if key in lines:
            raise ArchiveError(path, f"line {number}: episode {key!r} is on line {lines[key]} already")
        lines[key] = number
        (finished if rows.episode.get("status", "planned") in FINISHED else unfinished).append(rows)
    if version >= 3 and store is None:
        raise ArchiveError(path, f"a format-{version} export without its '{STORE_LINE}' line (cut short?)")
    meta, tables = store if store is not None else (None, {})
    return JsonlExport(path, version, finished, unfinished, meta, tables)
