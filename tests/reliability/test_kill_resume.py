"""SIGKILL at random points, resume, repeat: the store ends with every episode exactly once.

And a changed config is refused on resume, unless ``--allow-config-change`` says so, in
which case the change is on record in the store.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval
from esc_eval.testing.scenarios import DIMENSIONS, ChainResponder, run_kill_scenario, write_run_config

EPISODES, ROUNDS = 30, 3


async def test_sigkill_three_times_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    r = await run_kill_scenario(tmp_path, episodes=EPISODES, rounds=ROUNDS, kills=3)
    assert r.killed_mid_run == 3, "every kill must land while the run is still going"
    assert r.answered_before_final < EPISODES * 2 * ROUNDS
    assert r.final.returncode == 0, r.final.stderr

    a = r.audit
    assert a.ok, (a.lost, a.duplicates, a.problems[:5])
    assert (a.done, a.failed, a.planned) == (EPISODES, 0, EPISODES)
    assert a.attempts > EPISODES, "the kills interrupted episodes, which were restarted"
    assert a.score_status == {"ok": EPISODES * DIMENSIONS}
    s = Store.open(r.store, readonly=True)  # opens: not corrupt, schema intact
    try:
        assert s.counts() == {"done": EPISODES}
        assert len(s.turns()) == EPISODES * (1 + 2 * ROUNDS)
        assert len(s.scores()) == EPISODES * DIMENSIONS
        said = Counter(t.text for t in s.turns() if t.idx > 0)
        dupes = [(text, n) for text, n in said.items() if n > 1]
        assert not dupes, dupes[:3]
    finally:
        s.close_sync()


async def test_resume_with_a_changed_config_is_refused_unless_allowed(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    server = await fake_server(responder=ChainResponder())

    def config(supporters: list[str], name: str) -> Path:
        return write_run_config(
            tmp_path / name,
            run={"name": "change", "rounds": 1, "concurrency": 4},
            cards={"language": "en", "limit": 3},
            seeker={"base_url": server.base_url, "model": "esc-role", "temperature": 0.7},
            supporters=[{"name": n, "base_url": server.base_url, "model": f"{n}-model", "temperature": 0.7} for n in supporters],
        )

    original, changed = config(["a"], "a.toml"), config(["a", "b"], "ab.toml")
    store = tmp_path / "run.sqlite"
    assert (await esc_eval("run", str(original), "--store", str(store), "--no-monitor")).returncode == 0
    s = Store.open(store, readonly=True)
    old_fp = s.meta("fingerprint")
    s.close_sync()
    before = store.read_bytes()

    refused = await esc_eval("run", str(changed), "--store", str(store), "--no-monitor", "--resume")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(changed) in lines[0] and "--allow-config-change" in lines[0], refused.stderr
    assert store.read_bytes() == before, "a refused resume writes nothing"

    no_resume = await esc_eval("run", str(changed), "--store", str(store), "--no-monitor", "--allow-config-change")
    assert no_resume.returncode == 2 and "--resume" in no_resume.stderr

    requests = len(server.requests)
    allowed = await esc_eval("run", str(changed), "--store", str(store), "--no-monitor", "--resume", "--allow-config-change")
    assert allowed.returncode == 0, allowed.stderr
    assert len(server.requests) - requests == 3 * 2, "only the new supporter's episodes run"

    s = Store.open(store, readonly=True)
    try:
        new_fp = s.meta("fingerprint")
        assert new_fp != old_fp
        events = s.events("config-change")
        assert [(e.kind, e.detail) for e in events] == [("config-change", f"old={old_fp} new={new_fp}")]
        history = s.meta("config_history")
        assert [h["fingerprint"] for h in history] == [old_fp, new_fp]
        assert [x["name"] for x in history[0]["config"]["supporters"]] == ["a"]
        assert [x["name"] for x in s.meta("config")["supporters"]] == ["a", "b"]
        assert {(e.supporter, e.status, e.attempts) for e in s.episodes()} == {("a", "done", 1), ("b", "done", 1)}
    finally:
        s.close_sync()

    # the store now records the changed config: resuming with it needs no flag, and runs nothing
    again = await esc_eval("run", str(changed), "--store", str(store), "--no-monitor", "--resume")
    assert again.returncode == 0 and len(server.requests) - requests == 6
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT COUNT(*) FROM events WHERE kind='config-change'").fetchone()[0] == 1
    conn.close()
