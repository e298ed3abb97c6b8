"""The response cache file: its key, its format marker, refusing files that are not caches, and sharing between processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from esc_eval.agents.messages import ChatMessage, SamplingParams
from esc_eval.runs.store import Store, StoreError
from esc_eval.runs.store.cache import FORMAT, CachedReply, CacheError, ResponseCache, request_key

MESSAGES: list[ChatMessage] = [{"role": "system", "content": "You listen."}, {"role": "user", "content": "I lost my job. 我很难过"}]
GREEDY = SamplingParams(max_tokens=64, temperature=0.0)


def reply(text: str) -> CachedReply:
    return CachedReply(text, "served-model", 12, 3, "reported")


def test_the_key_covers_model_adapter_messages_and_every_sampling_parameter() -> None:
    base = request_key("m", None, MESSAGES, GREEDY)
    assert base == request_key("m", None, [ChatMessage(role=m["role"], content=m["content"]) for m in MESSAGES], SamplingParams(64, 0))
    variants = [
        request_key("other", None, MESSAGES, GREEDY),
        request_key("m", "fluency_en", MESSAGES, GREEDY),
        request_key("m", None, MESSAGES[:1], GREEDY),
        request_key("m", None, [MESSAGES[0], ChatMessage(role="user", content="I lost my job.")], GREEDY),
        request_key("m", None, [MESSAGES[0], ChatMessage(role="assistant", content=MESSAGES[1]["content"])], GREEDY),
        request_key("m", None, MESSAGES, SamplingParams(65, 0.0)),
        request_key("m", None, MESSAGES, SamplingParams(64, 0.7, seed=1)),
        request_key("m", None, MESSAGES, SamplingParams(64, 0.7, seed=2)),
        request_key("m", None, MESSAGES, SamplingParams(64, 0.7, top_p=0.9, seed=1)),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_a_new_cache_is_marked_and_keeps_the_first_reply_for_a_key(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "cache.sqlite"  # folders are made
    cache = ResponseCache.open(path, writable=True)
    key = request_key("m", None, MESSAGES, GREEDY)
    assert cache.get(key) is None
    cache.put_many([(key, reply("first"))])
    cache.put_many([(key, reply("second")), ("other", reply("x"))])
    assert cache.get(key) == reply("first") and len(cache) == 2
    cache.close()
    with sqlite3.connect(path) as conn:
        assert dict(conn.execute("SELECT key, value FROM cache_meta")) == {"format": FORMAT, "version": "1"}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader = ResponseCache.open(path, writable=False)
    assert reader.get(key) == reply("first")
    with pytest.raises(CacheError, match="reading only"):
        reader.put_many([("k", reply("y"))])
    reader.close()


def _one_line(exc: pytest.ExceptionInfo[CacheError], path: Path, why: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and why in message, message
    assert isinstance(exc.value, StoreError)  # bad input: esc-eval exits 2 with it


@pytest.mark.parametrize("writable", [True, False])
def test_corrupt_and_foreign_files_are_refused_with_one_line_and_left_as_they_were(tmp_path: Path, writable: bool) -> None:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.close()
    store = tmp_path / "run.sqlite"
    Store.create(store).close_sync()
    half = tmp_path / "half.sqlite"
    cache = ResponseCache.open(tmp_path / "good.sqlite", writable=True)
    cache.put_many((f"k{i}", reply("x" * 3000)) for i in range(200))
    cache.close()
    half.write_bytes((tmp_path / "good.sqlite").read_bytes()[:200_000])
    newer = tmp_path / "newer.sqlite"
    ResponseCache.open(newer, writable=True).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE cache_meta SET value = '99' WHERE key = 'version'")
    conn.close()
    cases = {corrupt: "file is not a database", foreign: "another SQLite file: tables notes", store: "not an esc-eval response cache",
             half: "malformed", newer: "version 99 is newer"}
    for path, why in cases.items():
        before = path.read_bytes()
        with pytest.raises(CacheError) as exc:
            ResponseCache.open(path, writable=writable)
        _one_line(exc, path, why)
        assert path.read_bytes() == before and not path.with_name(path.name + "-wal").exists()
    with pytest.raises(CacheError) as exc:
        ResponseCache.open(tmp_path, writable=writable)
    _one_line(exc, tmp_path, "is a directory")


def test_reading_needs_an_existing_cache(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    with pytest.raises(CacheError) as exc:
        ResponseCache.open(missing, writable=False)
    _one_line(exc, missing, "no such response cache file")
    assert not missing.exists()


WRITER = """
import sys
from esc_eval.runs.store.cache import CachedReply, ResponseCache
path, name, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cache = ResponseCache.open(path, writable=True)
print("ready", flush=True)
sys.stdin.readline()
for i in range(start, stop, 5):
    cache.put_many((f"k{j}", CachedReply(f"{name} {j}", "m", j, 1, "reported")) for j in range(i, min(i + 5, stop)))
    assert cache.get(f"k{i}") is not None
cache.close()
"""


def test_two_processes_writing_one_cache_at_once_lose_nothing(tmp_path: Path) -> None:
    """Each writes 1,500 replies in 300 transactions at the same moment, 500 keys in common: every key is stored once."""
    path = tmp_path / "shared" / "cache.sqlite"
    ranges = {"a": (0, 1500), "b": (1000, 2500)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(lo), str(hi)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for name, (lo, hi) in ranges.items()]
    for proc in procs:  # both have the file open (one created it; the other found it being made)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    cache = ResponseCache.open(path, writable=False)
    assert len(cache) == 2500
    for j in range(2500):
        found = cache.get(f"k{j}")
        assert found is not None and found.prompt_tokens == j
        owners = [name for name, (lo, hi) in ranges.items() if lo <= j < hi]
        assert found.text in {f"{name} {j}" for name in owners}
    cache.close()


def test_a_reader_sees_what_a_writer_commits_later_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = ResponseCache.open(path, writable=True)
    first.put_many([("a", reply("1"))])
    first.close()  # no writer now: the file alone, no -wal beside it
    before = path.read_bytes()
    reader = ResponseCache.open(path, writable=False)
    assert reader.get("a") == reply("1") and reader.get("b") is None
    reader.close()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["cache.sqlite"]

    reader = ResponseCache.open(path, writable=False)
    writer = ResponseCache.open(path, writable=True)  # another run, filling the cache this run reads
    writer.put_many([("b", reply("2"))])
    assert reader.get("b") == reply("2")
    writer.close()
    reader.close()
