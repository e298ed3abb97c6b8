"""The real embedded SmolLM2: the demo with no server, and a full episode through an HTTP server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esc_eval.agents.backends.transformers_local import embedded_model_dir
from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval, write_config
from esc_eval.testing.model_server import start_transformers_serve

pytestmark = [pytest.mark.model, pytest.mark.timeout(1500)]


async def test_demo_runs_on_the_embedded_model_and_exports(tmp_path: Path) -> None:
    store = tmp_path / "demo.sqlite"
    done = await esc_eval("demo", "--sessions", "4", "--store", str(store), timeout=1500)
    assert done.returncode in (0, 1), done.stderr
    assert f"store: {store}" in done.stdout and "episodes finished" in done.stdout
    # one line per model load from esc-eval, no library progress bars or warnings a user cannot act on
    # the seeker, the supporter and the judge share one loaded model (the seeker with its adapter), loaded once
    loaded = [line for line in done.stderr.splitlines() if line.startswith("esc-eval: local (") and ": loaded " in line]
    assert len(loaded) == 1 and "seeker" in loaded[0] and "smollm2-135m" in loaded[0], done.stderr
    for noise in ("Loading weights", "it/s]", "Warning", "warnings.warn"):
        assert noise not in done.stderr and noise not in done.stdout, (noise, done.stderr)
    db = Store.open(store, readonly=True)
    episodes = db.episodes()
    assert len(episodes) == 4 and {e.status for e in episodes} == {"done"}, [e.reason for e in episodes]
    for e in episodes:
        transcript = db.transcript(e.key)
        assert len(transcript) == 1 + 2 * 3 and all(text.strip() for _, text in transcript)
    scores = db.scores()
    assert len(scores) == 4 * 7 and all(s.status == "ok" and -1 <= s.label <= 4 for s in scores)
    db.close_sync()
    out = tmp_path / "export"
    exported = await esc_eval("export", str(store), "--format", "esc-eval", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    result = json.loads((out / "result_smollm2-135m_en.json").read_text(encoding="utf-8"))
    assert list(result) == ["0", "1", "2", "3"]
    assert all(len(lines) == 7 and lines[1].startswith("ESC-Role：") for lines in result.values())


async def test_full_episode_through_transformers_serve(tmp_path: Path, shared: Path) -> None:
    async with start_transformers_serve(embedded_model_dir()) as served:
        base_url, model_name, _ = served
        config = write_config(tmp_path / "run.toml", seeker_url=base_url, supporters={"smollm2": base_url},
                              cards=shared / "test_en.json", protocol=str(shared / "esc_role_protocol.json"), rounds=5, limit=1)
        text = config.read_text().replace('model = "esc-role"', f'model = "{model_name}"')
        config.write_text(text.replace('model = "smollm2-model"', f'model = "{model_name}"').replace("max_tokens = 512", "max_tokens = 24"))
        store = tmp_path / "run.sqlite"
        done = await esc_eval("run", str(config), "--store", str(store), "--no-monitor", timeout=900)
    assert done.returncode == 0, done.stderr
    db = Store.open(store, readonly=True)
    (episode,) = db.episodes()
    transcript = db.transcript(episode.key)
    assert episode.status == "done" and episode.outcome == "truncated"
    assert len(transcript) == 11 and all(text.strip() for _, text in transcript)
    tokens = sum(t.completion_tokens for t in db.turns())
    assert tokens > 0
    db.close_sync()
