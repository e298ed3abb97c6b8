"""``python -m benchmarks [scenario ...] [--quick] [--plot PNG] [--n N --c C]``: one JSON line per scenario.

Scenarios: ``overhead-100``, ``overhead-1000``, ``overhead-5000`` (the fake server answers every request
after 20 ms: both clients are CPU-bound), ``loaded-100``, ``loaded-1000``, ``loaded-5000`` (it answers
like a loaded model server, ~1,000 requests/s at any concurrency: C ms, +-50 %), ``overhead`` (with
``--n``/``--c``/``--delay``/``--jitter``), ``saturation``, ``local`` (float32, the backend's default),
``local-bfloat16``, ``local-lora`` (the demo's seeker adapter on both sides; not in the default set); none given
runs the default set. ``engines`` (not in that default: it starts five engines, one
at a time) runs every local engine on the same plan at C = 8 and 16 (``benchmarks.engines``): one line per
(engine, C), then an ``engines-summary`` line, and the table on stderr; ``--engines``/``--repeats`` choose.
``statistics-scale`` times ``import``, ``report``, ``report --compare`` and the viewer's first leaderboard over
the paper's full study as a designed store (14 supporters × 2,801 cards, ``benchmarks.statistics_scale``).
``seeker-realism`` times ``seeker eval --reference`` on 1,000 simulated dialogues against ESConv's dev split
(``benchmarks.realism_scale``; target under 60 s on 2 cores).
``--quick`` shrinks every scenario (fewer episodes; for a smoke run, not for figures).
``--plot PNG`` also measures the overhead at a grid of N and C and draws cost against them; with
``engines`` it draws tokens/s and CPU used per engine instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from typing import Any

from benchmarks.overhead import overhead

PRESETS = {"overhead-100": (100, 500), "overhead-1000": (1000, 3000), "overhead-5000": (5000, 10000)}
"""Scenario -> (C, N): N is a few times C, so most of the run is at full concurrency."""
QUICK = {"overhead-100": (100, 200), "overhead-1000": (1000, 1000), "overhead-5000": (5000, 5000)}
for _name, _sizes in [*PRESETS.items()]:
    PRESETS[_name.replace("overhead", "loaded")] = _sizes
    QUICK[_name.replace("overhead", "loaded")] = QUICK[_name]
LOADED_RATE = 1000.0
"""Requests/s the ``loaded-*`` server completes: its delay is C / LOADED_RATE seconds (Little's law)."""
LOADED_JITTER = 0.5
DEFAULT = [*PRESETS, "saturation", "local", "local-bfloat16", "statistics-scale"]


def machine() -> dict[str, Any]:
    from esc_eval.agents.backends.vllm_engine import cpu_flags

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        flags = cpu_flags() or set()
        info["cpu_isa"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]  # bfloat16 is native only with the last two
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
        info["load_avg_1m"] = os.getloadavg()[0]
    except (OSError, StopIteration):
        pass
    return info


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "overhead":
        return overhead(args.n, args.c, delay=args.delay, jitter=args.jitter)
    if name in PRESETS:
        c, n = (QUICK if args.quick else PRESETS)[name]
        if name.startswith("loaded"):
            return overhead(n, c, delay=c / LOADED_RATE, jitter=LOADED_JITTER, scenario=name)
        return overhead(n, c, delay=args.delay, jitter=args.jitter)
    if name == "statistics-scale":
        from benchmarks.statistics_scale import paper_study

        return paper_study(quick=args.quick)
    if name == "seeker-realism":
        from benchmarks.realism_scale import realism_scale

        return realism_scale(200 if args.quick else 1000)
    from benchmarks import models

    if name == "saturation":
        kwargs = {"episodes": 8, "c": 8, "rounds": 1} if args.quick else {}
        return asyncio.run(models.saturation(**kwargs))
    if name in ("local", "local-bfloat16", "local-lora"):
        kwargs: dict[str, Any] = {"rounds": 1, "max_tokens": 24} if args.quick else {}
        if name == "local-bfloat16":
            kwargs["dtype"] = "bfloat16"
        if name == "local-lora":
            kwargs["seeker_adapter"] = True
        return asyncio.run(models.local(**kwargs))
    raise SystemExit(f"unknown scenario {name!r} (known: overhead, {', '.join(DEFAULT)}, seeker-realism)")


def run_engines(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The engines scenario's rows, its summary, and its table on stderr (stdout stays JSON lines)."""
    from benchmarks.engines import cores, engines, table

    rows = engines(quick=args.quick, repeats=args.repeats, only=[e for e in args.engines.split(",") if e], vllm_dtype=args.vllm_dtype)
    load = os.getloadavg()[0]
    print(f"\n{table(rows[:-1])}\n(tok/s = completion tokens / wall s, the median of --repeats runs (min–max); CPU used = the "
          f"engine's processes' CPU s / wall s / {cores()} cores; load average now {load:.1f})\n", file=sys.stderr, flush=True)
    return rows


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets that this scenario's figures decide."""
    name = result.get("scenario", "")
    if name in ("overhead-1000", "loaded-1000"):
        return {"ratio_wall<=1.10": result["ratio_wall"] <= 1.10, "ratio_cpu<=2.0": result["ratio_cpu"] <= 2.0,
                "rss<=50KB/episode": result["rss_kb_per_active_episode"] <= 50}
    if name in ("overhead-5000", "loaded-5000"):
        return {"completed": result["completed"], "ratio_wall<=1.25": result["ratio_wall"] <= 1.25,
                "rss<=50KB/episode": result["rss_kb_per_active_episode"] <= 50}
    if name.startswith(("overhead", "loaded")):
        return {"rss<=50KB/episode": result["rss_kb_per_active_episode"] <= 50}
    if name == "seeker-realism":
        return {"wall<60s": result["wall_s"] < result["target_s"]}
    if name == "saturation":
        return {"tokens/s>=90%_of_raw": (result.get("ratio_tokens_per_s") or 0) >= 0.9}
    if name.startswith("local"):
        return {"speedup>=4x": (result.get("speedup_tokens_per_s") or 0) >= 4,
                "speedup_with_load>=3x": (result.get("speedup_with_load") or 0) >= 3}
    return result.get("targets", {})  # engines-summary decides its own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"default: {' '.join(DEFAULT)}")
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke, not figures)")
    parser.add_argument("--n", type=int, default=20, help="episodes for the 'overhead' scenario")
    parser.add_argument("--c", type=int, default=10, help="concurrency for the 'overhead' scenario")
    parser.add_argument("--delay", type=float, default=0.02, help="fake server's answer delay in seconds (default 0.02)")
    parser.add_argument("--jitter", type=float, default=0.0, help="each delay scaled by a uniform factor in [1-J, 1+J] (default 0)")
    parser.add_argument("--plot", metavar="PNG", help="also measure overhead over a grid of N and C and plot it to PNG")
    parser.add_argument("--out", metavar="JSONL", help="also append the JSON lines to this file")
    parser.add_argument("--engines", metavar="LIST", default="", help="engines scenario: only these (comma-separated names)")
    parser.add_argument("--repeats", type=int, default=1, help="engines scenario: passes; every engine runs once per pass, the line has the median")
    parser.add_argument("--vllm-dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="engines scenario: the vLLM engines' dtype (auto: bfloat16 where the CPU has it natively, else float32)")
    args = parser.parse_args(argv)
    info = machine()
    results = []
    for name in args.scenarios or DEFAULT:
        try:
            found = run_engines(args) if name == "engines" else [run_scenario(name, args)]
        except Exception as exc:  # one broken scenario must not hide the others' figures
            found = [{"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}]
        for result in found:
            result["targets"] = targets(result) if "error" not in result else {}
            result["machine"] = info
            results.append(result)
            line = json.dumps(result)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    engine_rows = [r for r in results if r.get("scenario") == "engines"]
    if args.plot and engine_rows:
        from benchmarks.plot import draw_engines

        draw_engines(args.plot, engine_rows, machine=info)
    elif args.plot:
        from benchmarks.plot import sweep_and_plot

        for line in sweep_and_plot(args.plot, results, quick=args.quick, delay=args.delay):
            line["machine"] = info
            print(json.dumps(line), flush=True)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
