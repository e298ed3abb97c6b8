"""The engines benchmark's parts: CPU accounting of a process tree, one run of the plan, skipped engines, summary, plot.

No engine is started here and no timing is asserted (figures depend on the machine): a scripted
backend stands in for the model, and the vLLM venv is pointed at a folder that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.engines import ROW_KEYS, engines, merged, run_plan, summary, table, tree_cpu_seconds
from esc_eval.agents.backends.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]
BURN = "import sys, time\nwhile time.process_time() < {seconds}: pass\nprint('burnt', flush=True)\nsys.stdin.read()\n"


def test_tree_cpu_counts_a_busy_child_alive_and_after_it_is_reaped() -> None:
    before = tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=0.6)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "burnt"  # type: ignore[union-attr]
        alive = tree_cpu_seconds() - before
    finally:
        child.communicate("", timeout=30)
    reaped = tree_cpu_seconds() - before
    assert alive >= 0.55  # the child's own CPU, read from /proc while it runs (in clock ticks: 10 ms)
    assert reaped >= 0.55  # now in this process's cutime/cstime


def test_tree_cpu_ignores_processes_outside_the_tree() -> None:
    ready = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=0.8)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready.stdout.readline()  # type: ignore[union-attr]
    other = ready.pid  # a busy process outside the tree measured below: a grandchild would be inside, so measure from a sibling
    try:
        sibling = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            assert tree_cpu_seconds(other) >= 0.75
            assert tree_cpu_seconds(sibling.pid) < 0.75  # the sibling's tree does not hold the busy process
        finally:
            sibling.communicate(b"", timeout=30)
    finally:
        ready.communicate("", timeout=30)


def test_one_run_of_the_plan_reports_its_figures_and_leaves_the_engine_open() -> None:
    class Counting(ScriptedBackend):
        closed = False
        prefilled_tokens = 5  # a counter of the backend's own, already running before the plan

        async def complete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.prefilled_tokens += 3
            return await super().complete(*args, **kwargs)

        async def aclose(self) -> None:
            self.closed = True

    backend = Counting(delay=0.02)  # 0.34 s at least: wall_s (2 decimals) is precise enough to check tokens_per_s
    row = asyncio.run(run_plan(backend, 2, 17, 1, 8))  # 17 episodes: the 15 built-in cards repeat
    assert row["episodes_done"] == 17 and row["episodes_failed"] == 0
    assert row["completion_tokens"] == backend.stats.completion_tokens > 0  # seeker and supporter lines of every episode
    assert len(backend.requests) == 17 * 2
    assert row["tokens_per_s"] == pytest.approx(row["completion_tokens"] / row["wall_s"], rel=0.05)
    assert 0 <= row["cpu_used"] and row["cpu_s"] >= 0 and {"load_before", "load_after"} <= row.keys()
    assert not backend.closed  # the runner's close is the end of the clock, not of the engine
    assert row["prefilled_tokens"] == 3 * 17 * 2 and "reused_tokens" not in row  # the run's share of the counters it has
    again = asyncio.run(run_plan(backend, 2, 2, 1, 8))
    assert again["completion_tokens"] == backend.stats.completion_tokens - row["completion_tokens"]


def test_a_missing_vllm_venv_is_skipped_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ESC_EVAL_VLLM_VENV", str(tmp_path / "no-venv"))
    logged: list[str] = []
    rows = engines(quick=True, only=["vllm", "vllm-server"], repeats=3, log=logged.append)
    *measured, last = rows
    assert [(r["engine"], r["c"]) for r in measured] == [("vllm", 2), ("vllm", 4), ("vllm-server", 2), ("vllm-server", 4)]
    for row in measured:
        assert "scripts/vllm-env.sh" in row["skipped"] and "tokens_per_s" not in row
        assert set(ROW_KEYS) - {"tokens_per_s", "cpu_used"} <= row.keys()
    assert last == {"scenario": "engines-summary", "targets": {}, "fastest": {"2": None, "4": None}, "tokens_per_s": {}}
    assert sum("vllm: skipped" in line for line in logged) == 1  # a skipped engine is not looked for again in later passes


def test_passes_alternate_the_engines_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.engines as module

    ran: list[str] = []

    def fake_run(engine, model, plan, vllm_dtype, log, *, named=False):  # type: ignore[no-untyped-def]
        ran.append(engine.name)
        return [{"scenario": "engines", "engine": engine.name, "label": engine.name, "c": c, "tokens_per_s": 10.0 + len(ran),
                 "cpu_used": 0.5} for c in plan["concurrency"]]

    monkeypatch.setattr(module, "run_engine", fake_run)
    monkeypatch.setattr("esc_eval.agents.backends.embedded.embedded_model_dir", lambda: Path("/nowhere"))
    rows = engines(quick=True, only=["vllm", "vllm-server"], repeats=3, vllm_dtype="float32", log=lambda line: None)
    assert ran == ["vllm", "vllm-server", "vllm-server", "vllm", "vllm", "vllm-server"]
    by = {(r["engine"], r["c"]): r for r in rows[:-1]}
    assert sorted(by[("vllm", 2)]["runs_tokens_per_s"]) == [11.0, 14.0, 15.0] and by[("vllm", 2)]["tokens_per_s"] == 14.0
    with pytest.raises(SystemExit, match="unknown engine"):
        engines(quick=True, only=["vlm"])


def row(engine: str, c: int, speed: float) -> dict[str, object]:
    return {"scenario": "engines", "engine": engine, "label": engine, "c": c, "episodes": 16, "rounds": 2, "max_tokens": 48,
            "tokens_per_s": speed, "runs_tokens_per_s": [speed - 1, speed, speed + 2], "cpu_used": 0.9,
            "load_before": 0.5, "load_after": 0.7}


def test_summary_decides_the_in_process_target_at_each_concurrency_and_names_the_fastest() -> None:
    rows = [row("vllm", 8, 100.0), row("vllm-server", 8, 90.0), row("vllm", 16, 150.0), row("vllm-server", 16, 160.0),
            row("transformers-float32", 8, 40.0), {"scenario": "engines", "engine": "transformers-serve", "label": "t", "c": 16, "skipped": "x"}]
    result = summary(rows)
    assert result["targets"] == {"vllm>=vllm-server@C=8": True, "vllm>=vllm-server@C=16": False,
                                 "transformers-float32_cpu>=90%@C=8": True, "transformers>=0.8*vllm@C=8": False}
    slow_cpu = summary([row("vllm", 8, 100.0), {**row("transformers-float32", 8, 80.0), "cpu_used": 0.85},
                        row("transformers-bfloat16", 8, 70.0)])
    assert slow_cpu["targets"] == {"transformers-float32_cpu>=90%@C=8": False, "transformers>=0.8*vllm@C=8": True}
    assert result["fastest"] == {"8": "vllm", "16": "vllm-server"}
    text = table(rows)
    assert "| vllm | 100.0 (99.0–102.0) | 150.0 (149.0–152.0) | 90%, 90% |" in text
    assert text.splitlines()[-1].startswith("| t | – | skipped |")


def test_the_command_prints_json_lines_a_table_and_a_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESC_EVAL_VLLM_VENV": str(tmp_path / "no-venv")}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks", "engines", "--quick", "--engines", "vllm", "--plot", str(tmp_path / "e.png")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["scenario"] for line in lines] == ["engines", "engines", "engines-summary"]
    assert all("machine" in line and "cpu_isa" in line["machine"] for line in lines)
    assert "| engine | C = 2 tok/s | C = 4 tok/s |" in out.stderr
    assert (tmp_path / "e.png").stat().st_size > 1000
    assert time.perf_counter() - start < 120


def test_bfloat16_transformers_runs_only_when_named_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import esc_eval.agents.backends.vllm_engine as vllm_engine
    from benchmarks.engines import ENGINES, unavailable

    bf16 = next(e for e in ENGINES if e.name == "transformers-bfloat16")
    monkeypatch.setattr(vllm_engine, "cpu_has_native_bf16", lambda: False)
    assert "no native bfloat16" in (unavailable(bf16) or "")
    assert unavailable(bf16, named=True) is None
    monkeypatch.setattr(vllm_engine, "cpu_has_native_bf16", lambda: True)
    assert unavailable(bf16) is None


def test_passes_merge_into_the_median_run_of_each_engine_and_concurrency() -> None:
    def run(engine: str, c: int, speed: float, cpu: float) -> dict[str, object]:
        return {"scenario": "engines", "engine": engine, "label": engine, "c": c, "tokens_per_s": speed, "cpu_used": cpu, "wall_s": 100 / speed}

    failed = {"scenario": "engines", "engine": "vllm", "label": "vllm", "c": 8, "error": "child exited"}
    skipped = {"scenario": "engines", "engine": "transformers-serve", "label": "t", "c": 8, "skipped": "x"}
    passes = [[run("vllm", 8, 50.0, 0.9), run("transformers-float32", 8, 70.0, 0.8), skipped],
              [failed, run("transformers-float32", 8, 60.0, 0.7)],
              [run("vllm", 8, 40.0, 0.95), run("transformers-float32", 8, 65.0, 0.85)]]
    rows = {(r["engine"], r["c"]): r for r in merged(passes)}

    ours = rows[("transformers-float32", 8)]
    assert ours["tokens_per_s"] == 65.0 and ours["wall_s"] == 100 / 65.0 and ours["cpu_used"] == 0.85  # the median run, whole
    assert sorted(ours["runs_tokens_per_s"]) == [60.0, 65.0, 70.0] and ours["repeats"] == 3 and "failed_runs" not in ours
    theirs = rows[("vllm", 8)]
    assert theirs["tokens_per_s"] == 45.0 and theirs["repeats"] == 2 and theirs["failed_runs"] == 1  # an even count: the mean of the two
    assert rows[("transformers-serve", 8)] == skipped
