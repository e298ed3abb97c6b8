"""The paper's full study as a designed store: import, report, ``report --compare`` and the viewer's first leaderboard, timed.

ESC-Eval's study is 14 supporters × 2,801 cards (39,214 dialogues), each scored on 7 dimensions.
The store is built the way a user would bring such a study in: a JSONL export with exact labels
(``esc_eval.testing.designed``) read by ``esc-eval import``. Labels are card difficulty (shared by
every supporter) + the supporter's quality + noise, rounded and clipped to 0..4, seeded. Each step
runs in its own process (the command a user types, or the viewer's summary call), so its wall time
includes Python's start and the imports: the time a user waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SUPPORTERS = 14
CARDS = 2801
TARGETS = {"import_s": 30.0, "report_s": 30.0, "compare_s": 30.0, "viewer_first_leaderboard_s": 5.0}
_VIEWER = ("import sys, time; from pathlib import Path; from esc_eval.runs.store import Store; "
           "from esc_eval.runs.viewer import data; path = Path(sys.argv[1]); store = Store.open(path, readonly=True); "
           "start = time.perf_counter(); data.summary([(path, store)], wait=False); first = time.perf_counter() - start; "
           "pending = data._PENDING.get(str(path)); pending and pending[2].result(); full = time.perf_counter() - start; "
           "start = time.perf_counter(); data.summary([(path, store)], wait=False); "
           "print(first, full, time.perf_counter() - start)")
"""What the live viewer's first /api/summary costs (leaderboards first), until its comparisons and costs are ready (a worker
thread builds them), and a second /api/summary of the unchanged store (built once per store version)."""


def design(supporters: int, cards: int, seed: int = 0) -> list[Any]:
    """One episode per (supporter, card): label = round(2 + difficulty + quality + noise), clipped to 0..4, all 7 dimensions."""
    import numpy as np

    from esc_eval.agents.judge.profiles import DIMENSIONS
    from esc_eval.testing.designed import DesignedEpisode

    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.7, size=cards)
    quality = np.linspace(-0.6, 0.6, supporters)
    labels = np.clip(np.round(2 + difficulty[None, :, None] + quality[:, None, None]
                              + rng.normal(0, 0.6, size=(supporters, cards, len(DIMENSIONS)))), 0, 4).astype(int)
    return [DesignedEpisode(f"model-{s:02d}", c, {d: [int(labels[s, c, i])] for i, d in enumerate(DIMENSIONS)},
                            language="en" if c < 1708 else "zh")
            for s in range(supporters) for c in range(cards)]


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:5])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def paper_study(*, quick: bool = False) -> dict[str, Any]:
    """Times of import, report, report --compare and the viewer's first summary over a designed 14 × 2,801 store."""
    from esc_eval.testing.designed import write_design

    cards = 300 if quick else CARDS
    with tempfile.TemporaryDirectory() as tmp:
        source = write_design(Path(tmp) / "study.jsonl", design(SUPPORTERS, cards))
        store = Path(tmp) / "study.sqlite"
        cli = [sys.executable, "-m", "esc_eval.runs.cli"]
        result: dict[str, Any] = {"scenario": "statistics-scale", "supporters": SUPPORTERS, "cards": cards,
                                  "episodes": SUPPORTERS * cards, "tests": SUPPORTERS * (SUPPORTERS - 1) // 2 * 7}
        result["import_s"] = round(_timed([*cli, "import", str(store), str(source)]), 2)
        result["load_avg_1m_before"] = round(os.getloadavg()[0], 2)
        result["report_s"] = round(_timed([*cli, "report", str(store), "--format", "json"]), 2)
        result["compare_s"] = round(_timed([*cli, "report", str(store), "--format", "json", "--compare"]), 2)
        done = subprocess.run([sys.executable, "-c", _VIEWER, str(store)], capture_output=True, text=True, check=True)
        first, full, second = (float(x) for x in done.stdout.strip().splitlines()[-1].split())
        result["viewer_first_leaderboard_s"], result["viewer_comparisons_s"] = round(first, 2), round(full, 2)
        result["viewer_second_summary_s"] = round(second, 3)
    result["targets"] = {f"{name}<={limit:g}": result[name] <= limit for name, limit in TARGETS.items()}
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(paper_study(quick="--quick" in sys.argv)))
