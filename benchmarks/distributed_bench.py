"""Episodes per second with the ray executor (1 and 2 local workers) against the one-process runner.

A fake OpenAI server (``benchmarks/_server.py``) runs in a child process on 127.0.0.1; the seeker,
one supporter and the judge (7 dimensions) all talk to it. Each executor runs the same plan into a
fresh store; one JSON line per run:

    executor, workers, episodes, seconds, episodes_per_s, requests_per_s,
    driver_cpu_s            CPU seconds of this process during the run (the driver: planning, store
                            writer, applying batches; for ``local``, the whole run),
    driver_cpu_ms_per_episode,
    apply_s, records        ray only: time the driver spent applying workers' batches, and their records.

plus one line with Ray's start-up time. The local Ray cluster listens on 127.0.0.1 only.

    python -m benchmarks.distributed_bench --episodes 2000 --rounds 2 --workers 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray binds to 127.0.0.1 only

ROOT = Path(__file__).resolve().parents[1]
DIMENSIONS = 7


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks._server", "--delay", str(delay)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def write_config(workdir: Path, base_url: str, episodes: int, rounds: int, concurrency: int, connections: int) -> Path:
    from esc_eval.testing.scenarios import write_cards, write_run_config

    endpoint = {"base_url": base_url, "max_connections": connections, "timeout": 60.0}
    return write_run_config(
        workdir / "bench.toml",
        run={"name": "distributed-bench", "rounds": rounds, "concurrency": concurrency},
        cards={"path": str(write_cards(workdir / "cards.jsonl", episodes)), "language": "en"},
        seeker={**endpoint, "model": "esc-role"},
        supporters=[{"name": "s", **endpoint, "model": "s-model"}],
        judge={**endpoint, "model": "judge"},
    )


async def run_once(config_path: Path, store_path: Path, workers: int | None) -> dict[str, object]:
    from esc_eval.runs.config import load_config
    from esc_eval.runs.distributed import DistributedRunner
    from esc_eval.runs.execution.runner import Runner, RunPlan
    from esc_eval.runs.store import Store

    plan = RunPlan.prepare(load_config(config_path))
    store = Store.create(store_path, config=plan.config.to_dict(), fingerprint=plan.fingerprint())
    runner: Runner | DistributedRunner = (Runner(plan, store) if workers is None
                                           else DistributedRunner(plan, store, workers=workers))
    cpu, wall = time.process_time(), time.perf_counter()
    result = await runner.run()
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    episodes = result.progress.done + result.progress.failed
    requests = result.progress.turns - episodes + result.progress.judge_done  # the opener is not a request
    line: dict[str, object] = {
        "executor": "local" if workers is None else "ray", "workers": workers or 0, "episodes": episodes,
        "failed": result.progress.failed, "seconds": round(seconds, 2), "episodes_per_s": round(episodes / seconds, 1),
        "requests_per_s": round(requests / seconds, 1), "driver_cpu_s": round(cpu, 2),
        "driver_cpu_ms_per_episode": round(cpu / episodes * 1000, 3),
    }
    if isinstance(runner, DistributedRunner):
        line.update(apply_s=round(runner.driver_seconds, 3), records=runner.records)
    return line


def run_loop(main: Any, loop: str) -> Any:
    """The driver's event loop: uvloop when asked and installed (as ``esc-eval run`` picks it), else asyncio."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.02, help="server answer delay, seconds")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--connections", type=int, default=128, help="max_connections per endpoint (split among workers)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts to run (none: local only)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the driver's event loop")
    parser.add_argument("--no-local", action="store_true", help="skip the one-process baseline")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    server, base_url = start_server(args.delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            config = write_config(workdir, base_url, args.episodes, args.rounds, args.concurrency, args.connections)
            common = {"rounds": args.rounds, "delay": args.delay, "concurrency": args.concurrency, "loop": args.loop,
                      "connections": args.connections, "cpus": os.cpu_count()}
            if not args.no_local:
                print(json.dumps({**run_loop(run_once(config, workdir / "local.sqlite", None), args.loop), **common}), flush=True)
            if not args.workers:
                return
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=max(os.cpu_count() or 1, max(args.workers)), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            print(json.dumps({"ray_init_s": round(time.perf_counter() - started, 2), "ray": ray.__version__}), flush=True)
            try:
                for workers in args.workers:
                    line = run_loop(run_once(config, workdir / f"ray{workers}.sqlite", workers), args.loop)
                    print(json.dumps({**line, **common}), flush=True)
            finally:
                ray.shutdown()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
