"""Smoke test of ``python -m benchmarks``: the overhead scenario at a tiny size runs and reports its figures.

No timing is asserted: figures depend on the machine; only the shape of the JSON line and
that esc-eval finished every episode are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_overhead_scenario_prints_one_json_line_with_its_figures() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "overhead", "--n", "20", "--c", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in ("scenario", "n", "c", "esc_eval", "bare", "ratio_wall", "ratio_cpu",
                "rss_kb_per_active_episode", "completed", "targets", "machine"):
        assert key in result, key
    assert result["c"] == 10 and result["n"] == 20
    esc, bare = result["esc_eval"], result["bare"]
    for figures in (esc, bare):
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "calls", "episodes_done"):
            assert key in figures, key
    assert esc["episodes_done"] == esc["episodes"] == 20
    assert esc["episodes_failed"] == 0
    assert esc["calls"] == bare["calls"] == 20 * (2 * 5 + 7)
    assert esc["judge_scores"] == 20 * 7
    assert result["completed"] is True
