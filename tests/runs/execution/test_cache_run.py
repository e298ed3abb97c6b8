"""A run with a response cache (issue 34 item 6): a warm-cache rerun into a new store sends no chat request and
stores the same transcripts, labels and raw judge replies, marked cached; ``read`` mode adds nothing; a file that is
not a cache is refused (exit 2, one line, nothing written). ``--cache``, ``[run] cache`` and ``esc_eval.run_async(cache=)``."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from esc_eval.api import run_async
from esc_eval.runs.store import Store
from esc_eval.runs.store.cache import ResponseCache
from esc_eval.testing.cli import esc_eval, write_config

JUDGE = '\n[judge]\nbase_url = "{url}"\nmodel = "judge-model"\ntemperature = 0.5\nsamples = 2\n\n[judge.models]\noverall = "overall-model"\n'


def answer(body: dict[str, Any]) -> str:
    """A reply fixed by everything that decides a real one (model, messages, decoding, seed), as a cacheable request's is."""
    digest = zlib.crc32(json.dumps([body["model"], body["messages"], body.get("temperature"), body.get("seed")]).encode())
    if body["model"] in ("judge-model", "overall-model"):
        return f"Score: {digest % 5} ({digest})"
    return f"I hear you, line {digest % 9973}."


def config(tmp_path: Path, url: str, *, run: str = "", supporters: tuple[str, ...] = ("alpha", "beta")) -> Path:
    """Seeker at the server's default temperature (sampled: seeded), ``alpha`` sampled at 0.7 (seeded), ``beta`` greedy."""
    path = write_config(tmp_path / "run.toml", seeker_url=url, supporters=dict.fromkeys(supporters, url), rounds=2,
                        extra='\n[cards]\nlimit = 3\nlanguage = "en"\n' + JUDGE.format(url=url))
    text = path.read_text().replace('model = "alpha-model"', 'model = "alpha-model"\ntemperature = 0.7')
    text = text.replace('model = "beta-model"', 'model = "beta-model"\ntemperature = 0')
    path.write_text(text.replace('name = "test"', f'name = "test"\n{run}'))
    return path


def results(path: Path) -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[Any, ...]], set[int], set[int]]:
    """Transcripts (role, text, tokens) by episode, judge scores (label, raw, tokens), and the cached flags of turns and scores."""
    with Store.open(path, readonly=True) as store:
        turns = store.turns()
        scores = store.scores()
        assert {e.status for e in store.episodes()} == {"done"}
    transcripts: dict[str, list[tuple[Any, ...]]] = {}
    for t in turns:
        transcripts.setdefault(t.episode_key, []).append((t.idx, t.role, t.text, t.prompt_tokens, t.completion_tokens, t.usage))
    labels = sorted((s.episode_key, s.dimension, s.round, s.sample, s.label, s.raw, s.status, s.prompt_tokens, s.completion_tokens)
                    for s in scores)
    return transcripts, labels, {t.cached for t in turns if t.idx > 0}, {s.cached for s in scores}


@pytest.mark.slow
async def test_a_warm_cache_rerun_sends_no_request_and_stores_the_same_results(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    cfg = config(tmp_path, server.base_url)
    cache = tmp_path / "cache.sqlite"
    first = await esc_eval("run", str(cfg), "--store", str(tmp_path / "first.sqlite"), "--no-monitor", "--cache", str(cache))
    assert first.returncode == 0, first.stderr
    sent = len(server.requests)
    sampled = [b for b in server.requests if b.get("temperature") != 0]
    assert sampled and all("seed" in b for b in sampled)  # every sampled request is seeded, so cacheable
    assert {b["model"] for b in sampled} == {"esc-role", "alpha-model", "judge-model", "overall-model"}
    greedy = [b for b in server.requests if b["model"] == "beta-model"]
    assert greedy and all(b["temperature"] == 0 and "seed" not in b for b in greedy)  # greedy requests as before
    assert {b["seed"] for b in server.requests if b["model"] == "judge-model"} == {0, 1}
    with_cache = ResponseCache.open(cache, writable=False)
    assert 0 < len(with_cache) <= sent
    with_cache.close()

    again = await run_async(cfg, tmp_path / "second.sqlite", cache=cache)  # the API keyword; a new store
    assert again.exit_code == 0, again.error
    assert len(server.requests) == sent  # not one chat completion more (the pre-flight's GET /models is not one)

    transcripts, labels, turn_cached, score_cached = results(tmp_path / "first.sqlite")
    transcripts2, labels2, turn_cached2, score_cached2 = results(tmp_path / "second.sqlite")
    assert len(transcripts) == 6 and all(len(lines) == 5 for lines in transcripts.values())
    assert len(labels) == 6 * 7 * 2 and {row[6] for row in labels} == {"ok"}
    assert transcripts2 == transcripts and labels2 == labels  # texts, labels, raw replies and the tokens they would have cost
    assert (turn_cached, score_cached) == ({0}, {0}) and (turn_cached2, score_cached2) == ({1}, {1})

    # [run] cache (relative to the config) in read mode, with a supporter the cache has never seen: its requests are sent,
    # everyone else's answered, and the file gains nothing
    before = cache.read_bytes()
    cfg = config(tmp_path, server.base_url, run='cache = "cache.sqlite"\ncache_mode = "read"', supporters=("alpha", "beta", "gamma"))
    third = await esc_eval("run", str(cfg), "--store", str(tmp_path / "third.sqlite"), "--no-monitor")
    assert third.returncode == 0, third.stderr
    asked_before = {json.dumps(b, sort_keys=True) for b in server.requests[:sent]}
    new = server.requests[sent:]
    assert new and not any(json.dumps(b, sort_keys=True) in asked_before for b in new)  # only what the cache could not answer
    assert "gamma-model" in {b["model"] for b in new} and not {"alpha-model", "beta-model"} & {b["model"] for b in new}
    assert cache.read_bytes() == before and not cache.with_name("cache.sqlite-wal").exists()
    with Store.open(tmp_path / "third.sqlite", readonly=True) as store:
        by_supporter = {e.key: e.supporter for e in store.episodes()}
        cached = {(by_supporter[t.episode_key], t.cached) for t in store.turns() if t.idx > 0}
    assert cached == {("alpha", 1), ("beta", 1), ("gamma", 0)}


async def test_files_that_are_not_caches_exit_2_with_one_line_and_nothing_written(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=answer)
    cfg = config(tmp_path, server.base_url)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    foreign = tmp_path / "foreign.sqlite"
    with Store.create(foreign):  # a run store is not a cache
        pass
    cases = {corrupt: ("--cache", str(corrupt)), foreign: ("--cache", str(foreign)),
             tmp_path / "missing.sqlite": ("--cache", str(tmp_path / "missing.sqlite"), "--cache-mode", "read")}
    for path, flags in cases.items():
        before = path.read_bytes() if path.exists() else None
        store = tmp_path / f"{path.stem}-run.sqlite"
        result = await esc_eval("run", str(cfg), "--store", str(store), "--no-monitor", *flags)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], result.stderr
        assert not store.exists() and (path.read_bytes() if path.exists() else None) == before
    no_file = await esc_eval("run", str(cfg), "--store", str(tmp_path / "none.sqlite"), "--no-monitor", "--cache-mode", "read")
    assert no_file.returncode == 2 and no_file.stderr.strip().splitlines() == [
        "esc-eval: error: --cache-mode read needs a cache file: --cache PATH or [run] cache"], no_file.stderr
    assert server.requests == [] and not (tmp_path / "none.sqlite").exists()


@pytest.mark.slow
async def test_two_runs_filling_one_cache_at_once_lose_nothing(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """Two ``esc-eval run`` processes at the same time, different supporters, one cache: each rerun afterwards sends nothing."""
    server = await fake_server(responder=answer, delay=0.01)
    cache = tmp_path / "cache.sqlite"
    configs = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        configs.append(config(folder, server.base_url, supporters=(f"{name}-a", f"{name}-b")))
    runs = await asyncio.gather(*(esc_eval("run", str(cfg), "--store", str(cfg.parent / "first.sqlite"), "--no-monitor",
                                           "--cache", str(cache)) for cfg in configs))
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    sent = len(server.requests)
    distinct = {json.dumps(b, sort_keys=True) for b in server.requests}
    stored = ResponseCache.open(cache, writable=False)
    assert len(stored) == len(distinct)
    stored.close()
    for cfg in configs:
        again = await esc_eval("run", str(cfg), "--store", str(cfg.parent / "again.sqlite"), "--no-monitor", "--cache", str(cache))
        assert again.returncode == 0, again.stderr
        assert results(cfg.parent / "again.sqlite")[:2] == results(cfg.parent / "first.sqlite")[:2]
    assert len(server.requests) == sent
