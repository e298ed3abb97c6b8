"""``seeker eval --reference`` at the issue's scale: 1,000 simulated dialogues against ESConv's dev split, timed.

The store is built the way a run builds one (the runner, scripted seeker and supporter, 5 rounds on the
built-in English cards, repeated to 1,000 episodes); the seeker's lines are drawn, seeded, from a pool of
our own. The command runs in its own process (``esc-eval seeker eval STORE --reference ... --format json``),
so its wall time includes Python's start and the imports: the time a user waits. Target: under 60 s on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EPISODES = 1000
TARGET_S = 60.0
REFERENCE = Path(os.environ.get("ESC_EVAL_ESCONV") or Path(__file__).resolve().parents[2] / "shared" / "esconv") / "esconv_dev.json"
LINES = ["I don't know where to start, work has been crushing me.", "Maybe I'm overthinking it.", "But I already tried that.",
         "My sister says I should just get over it?", "yeah, that makes sense", "I feel so alone at night.",
         "Thank you, I feel a little better.", "we split up in the spring and i keep replaying it",
         "It's the money too, rent is due and I have nothing.", "I guess I'm scared it won't change."]


async def _build(path: Path, episodes: int) -> None:
    from esc_eval.agents.backends.scripted import ScriptedBackend
    from esc_eval.agents.messages import ChatMessage, SamplingParams
    from esc_eval.roles.loaders import builtin_cards
    from esc_eval.runs.config import parse_config
    from esc_eval.runs.execution.plan import RunPlan
    from esc_eval.runs.execution.runner import Runner
    from esc_eval.runs.store import Store

    cards = len(builtin_cards("en"))
    rng = random.Random(0)

    def seeker(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return " ".join(rng.sample(LINES, rng.randint(1, 2)))

    def supporter(messages: Sequence[ChatMessage], params: SamplingParams, model: str) -> str:
        return rng.choice(["That sounds hard.", "You could try talking to someone you trust.", "How long has it been like this?"])

    config = parse_config({"run": {"rounds": 5, "concurrency": 64, "repeats": -(-episodes // cards)},
                           "cards": {"language": "en"}, "seeker": {"base_url": "http://127.0.0.1:9/v1", "model": "scripted"},
                           "supporters": [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "a"}]})
    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint(), personas=plan.personas())
    await Runner(plan, store, backends={"seeker": ScriptedBackend(seeker), "a": ScriptedBackend(supporter)}).run()


def realism_scale(episodes: int = EPISODES) -> dict[str, Any]:
    """Wall time of ``seeker eval --reference`` over a store of ``episodes`` dialogues, with the figures it printed."""
    if not REFERENCE.is_file():
        raise SystemExit(f"ESConv's dev split not found at {REFERENCE} (set ESC_EVAL_ESCONV; docs/seeker.md)")
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "run.sqlite"
        asyncio.run(_build(store, episodes))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", "seeker", "eval", str(store), "--reference",
                               str(REFERENCE), "--format", "json"], capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seeker eval failed ({done.returncode}): {done.stderr[-2000:]}")
    (row,) = json.loads(done.stdout)
    realism = row["realism"]
    return {"scenario": "seeker-realism", "episodes": row["n_episodes"], "n_reference": realism["n_reference"],
            "wall_s": round(wall, 2), "target_s": TARGET_S, "auc": realism["auc"], "index": realism["index"],
            "load_average": round(os.getloadavg()[0], 1)}


if __name__ == "__main__":
    print(json.dumps(realism_scale(int(sys.argv[1]) if len(sys.argv) > 1 else EPISODES)))
