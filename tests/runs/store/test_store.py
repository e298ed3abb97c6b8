"""Store schemas 2 (judge samples), 3 (the seeker of each episode) and 4 (usage per request): new stores, and
older stores opened read-only and migrated on a writable open."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from esc_eval.runs.store import FINAL_ROUND, SCHEMA_VERSION, PlannedEpisode, Store
from esc_eval.runs.store.schema import SCHEMA

_SEEKER_COLUMN = ",\n    seeker TEXT NOT NULL DEFAULT ''"
_USAGE_COLUMNS = ("    prompt_tokens INTEGER,\n    completion_tokens INTEGER,\n", "    usage TEXT NOT NULL DEFAULT 'reported',\n",
                  "    cached INTEGER NOT NULL DEFAULT 0,\n")
_SCHEMA = SCHEMA.replace(_SEEKER_COLUMN, "")
for _column in _USAGE_COLUMNS:
    _SCHEMA = _SCHEMA.replace(_column, "")
"""The tables before schema 3 (no ``episodes.seeker``) and 4 (no usage columns)."""

_SCORES_V1 = """CREATE TABLE IF NOT EXISTS scores (
    episode_key TEXT NOT NULL,
    dimension TEXT NOT NULL,
    round INTEGER NOT NULL,
    label INTEGER,
    raw TEXT,
    model TEXT,
    latency REAL,
    status TEXT NOT NULL,
    error TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (episode_key, dimension, round)
);"""


def _old_store(path: Path) -> Path:
    """A store as esc-eval wrote it before judge samples: schema 1, no ``sample`` column."""
    start = _SCHEMA.index("CREATE TABLE IF NOT EXISTS scores")
    end = _SCHEMA.index(");", start) + 2
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA[:start] + _SCORES_V1 + _SCHEMA[end:] + "INSERT INTO meta VALUES ('schema_version', '1');")
    conn.execute("INSERT INTO episodes (key, ordinal, card_index, card_id, language, category, source, supporter, persona,"
                 " repeat, seed, status) VALUES ('e0', 0, 0, 'c0', 'en', 'work', 'ESConv', 'a', 'default', 0, 0, 'done')")
    conn.executemany("INSERT INTO scores VALUES ('e0', ?, ?, ?, NULL, 'judge', 0.1, 'ok', NULL, 1.0)",
                     [("fluency", FINAL_ROUND, 3), ("empathic", FINAL_ROUND, 2), ("fluency", 1, 1)])
    conn.commit()
    conn.close()
    return path


def _columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute("PRAGMA table_info(scores)")]
    finally:
        conn.close()


def test_old_store_reads_read_only_without_changing(tmp_path: Path) -> None:
    path = _old_store(tmp_path / "old.sqlite")
    before = path.read_bytes()
    store = Store.open(path, readonly=True)
    try:
        rows = [tuple(r) for r in store.final_scores()]
    finally:
        store.close_sync()
    assert sorted(rows) == [("e0", "empathic", 2, "ok", 0), ("e0", "fluency", 3, "ok", 0)]
    assert path.read_bytes() == before and "sample" not in _columns(path)


def test_old_store_migrates_on_writable_open_and_takes_samples(tmp_path: Path) -> None:
    path = _old_store(tmp_path / "old.sqlite")
    store = Store.open(path)
    assert store.meta("schema_version") == SCHEMA_VERSION == 4
    assert _columns(path)[-5:] == ["sample", "prompt_tokens", "completion_tokens", "usage", "cached"]
    assert [e.seeker for e in store.episodes()] == [""]
    assert sorted(tuple(r) for r in store.final_scores()) == [("e0", "empathic", 2, "ok", 0), ("e0", "fluency", 3, "ok", 0)]
    assert len([s for s in store.scores() if s.round == 1]) == 1        # per-round scores kept too

    async def more() -> None:
        await store.start_writer()
        store.add_score("e0", "fluency", 4, None, "judge", 0.1, sample=1)   # a second label: a new row, not a replacement
        store.add_score("e0", "fluency", 2, None, "judge", 0.1, sample=1)   # the same sample again: replaces
        await store.close()

    asyncio.run(more())
    again = Store.open(path, readonly=True)
    try:
        assert [tuple(r) for r in again.final_scores() if r.dimension == "fluency"] == [
            ("e0", "fluency", 3, "ok", 0), ("e0", "fluency", 2, "ok", 1)]
    finally:
        again.close_sync()
    Store.open(path).close_sync()                                            # a second writable open: nothing to migrate


def test_new_store_keys_scores_by_sample(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "new.sqlite", create=True)
    store.plan([PlannedEpisode("e0", 0, 0, "c0", "en", "work", "ESConv", "a", "default", 0, 0)])
    store.close_sync()
    conn = sqlite3.connect(tmp_path / "new.sqlite")
    pk = [r[1] for r in sorted(conn.execute("PRAGMA table_info(scores)"), key=lambda r: r[5]) if r[5]]
    conn.close()
    assert pk == ["episode_key", "dimension", "round", "sample"]


def test_a_failed_migration_leaves_the_old_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from esc_eval.runs.store import StoreError
    from esc_eval.runs.store import schema as store_module

    path = _old_store(tmp_path / "old.sqlite")
    monkeypatch.setitem(store_module.MIGRATIONS, 2, store_module.MIGRATIONS[2] + "SELECT no_such_function();")
    with pytest.raises(StoreError, match="no_such_function"):
        Store.open(path)
    assert "sample" not in _columns(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    assert conn.execute("SELECT COUNT(*) FROM scores").fetchone() == (3,)
    conn.close()


def test_typed_reads_of_an_old_store_read_only(tmp_path: Path) -> None:
    path = _old_store(tmp_path / "old.sqlite")
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:
        scores = store.scores()
        (episode,) = store.episodes(status="done")
    assert [(s.dimension, s.round, s.label, s.sample) for s in scores] == [
        ("empathic", FINAL_ROUND, 2, 0), ("fluency", FINAL_ROUND, 3, 0), ("fluency", 1, 1, 0)]
    assert (episode.key, episode.card_id, episode.supporter, episode.status) == ("e0", "c0", "a", "done")
    assert path.read_bytes() == before


def test_store_closes_when_the_with_block_ends_even_on_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with pytest.raises(RuntimeError), Store.open(path, create=True) as store:
        store.set_meta(name="x")
        raise RuntimeError("boom")
    with pytest.raises(sqlite3.ProgrammingError):  # closed: the connection refuses work
        store.meta("name")
    assert not path.with_name(path.name + "-wal").exists()  # closed as a writer closes: one self-contained file
    with Store.open(path, readonly=True) as again:
        assert again.meta("name") == "x"


def _schema_2_store(path: Path) -> Path:
    """A store as esc-eval wrote it before ``[[seekers]]``: schema 2, no ``episodes.seeker``."""
    assert _SEEKER_COLUMN in SCHEMA
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA + "INSERT INTO meta VALUES ('schema_version', '2');")
    conn.execute("INSERT INTO episodes (key, ordinal, card_index, card_id, language, category, source, supporter, persona,"
                 " repeat, seed, status) VALUES ('e0', 0, 0, 'c0', 'en', 'work', 'ESConv', 'a', 'default', 0, 0, 'done')")
    conn.commit()
    conn.close()
    return path


def test_schema_2_store_reads_without_a_seeker_and_migrates_to_4(tmp_path: Path) -> None:
    path = _schema_2_store(tmp_path / "v2.sqlite")
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:
        assert [e.seeker for e in store.episodes()] == [""] and store.episode("e0").seeker == ""
        assert store.seekers() == [""]
    assert path.read_bytes() == before, "a read-only open changed the file"
    store = Store.open(path)
    try:
        assert store.meta("schema_version") == 4
        store.plan([PlannedEpisode("e1", 1, 1, "c1", "en", "work", "ESConv", "a", "default", 0, 0, "sim-b")])
        assert [(e.key, e.seeker) for e in store.episodes()] == [("e0", ""), ("e1", "sim-b")]
        assert store.seekers() == ["", "sim-b"]
    finally:
        store.close_sync()


def test_schema_3_store_with_safety_rows_gains_usage_columns(tmp_path: Path) -> None:
    """Schema 4: turns and scores by migration; the additive safety table gets its new columns on the writable open."""
    path = _schema_2_store(tmp_path / "v3.sqlite")
    conn = sqlite3.connect(path)
    conn.executescript("ALTER TABLE episodes ADD COLUMN seeker TEXT NOT NULL DEFAULT '';"
                       "UPDATE meta SET value='3' WHERE key='schema_version';"
                       "INSERT INTO turns VALUES ('e0', 0, 'seeker', 'hello', 5, 2, 0.1, 1.0, NULL);"
                       "INSERT INTO safety (episode_key, sample, kind, status, at) VALUES ('e0', 0, 'control', 'ok', 1.0);")
    conn.commit()
    conn.close()
    Store.open(path).close_sync()
    conn = sqlite3.connect(path)
    try:
        for table, added in (("turns", ["usage", "cached"]), ("scores", ["prompt_tokens", "completion_tokens", "usage", "cached"]),
                             ("safety", ["prompt_tokens", "completion_tokens", "usage", "cached"])):
            assert [r[1] for r in conn.execute(f"PRAGMA table_info({table})")][-len(added):] == added, table
        assert conn.execute("SELECT usage, cached FROM turns").fetchall() == [("reported", 0)]
        assert conn.execute("SELECT prompt_tokens, usage, cached FROM safety").fetchall() == [(None, "reported", 0)]
    finally:
        conn.close()


def test_a_schema_3_store_read_only_gives_turn_and_score_records_with_unknown_usage(tmp_path: Path) -> None:
    """Records expose the usage columns; a store older than schema 4 reads as reported turns and unknown (None) judge tokens."""
    path = _schema_2_store(tmp_path / "v3.sqlite")
    conn = sqlite3.connect(path)
    conn.executescript("ALTER TABLE episodes ADD COLUMN seeker TEXT NOT NULL DEFAULT '';"
                       "UPDATE meta SET value='3' WHERE key='schema_version';"
                       "INSERT INTO turns VALUES ('e0', 0, 'seeker', 'hello', 5, 2, 0.1, 1.0, NULL);"
                       "INSERT INTO scores VALUES ('e0', 'fluency', -1, 3, 'Score: 3', 'j', 0.2, 'ok', NULL, 1.0, 0);")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with Store.open(path, readonly=True) as store:
        [turn], [score] = store.turns(), store.scores()
        assert (turn.prompt_tokens, turn.completion_tokens, turn.usage, turn.cached) == (5, 2, "reported", 0)
        assert (score.label, score.prompt_tokens, score.completion_tokens, score.usage, score.cached) == (3, None, None, "reported", 0)
    assert path.read_bytes() == before
    store = Store.open(path)  # migrated: the same records, now from the columns
    try:
        [turn], [score] = store.turns(), store.scores()
        assert (turn.usage, score.prompt_tokens, score.usage) == ("reported", None, "reported")
    finally:
        store.close_sync()
