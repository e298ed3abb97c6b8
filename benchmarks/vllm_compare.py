"""In-process vLLM engine vs the same model behind vLLM's OpenAI HTTP server: episodes per minute.

Runs the real runner (seeker + one supporter on the same model, no judge) twice on the
same plan: once through ``VLLMEngineBackend`` (one in-process engine, no HTTP), once
through ``OpenAIHTTPBackend`` against ``python -m vllm.entrypoints.openai.api_server``
started with the same engine settings. Engine start-up is excluded from both figures.

Run it with the vLLM venv's python (``scripts/vllm-env.sh``) from the repo root::

    VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 \\
    PYTHONPATH=. ~/.cache/esc-eval/vllm-venv/bin/python benchmarks/vllm_compare.py --episodes 32 --concurrency 16

``--model`` defaults to the embedded SmolLM2-135M-Instruct folder (made by the main env's
``esc-eval demo`` or tests: ``~/.cache/esc-eval/models/smollm2-135m-instruct``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ENGINE_ARGS = {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 32, "enable_chunked_prefill": False}


def _config(model: str, backend: str, base_url: str | None, args: argparse.Namespace):
    from runs.config import parse_config

    endpoint = {"backend": backend, "model": model, "max_tokens": args.max_tokens, "temperature": 0.7, "top_p": 0.95,
                "max_connections": args.concurrency * 2}
    if base_url:
        endpoint["base_url"] = base_url
    raw = {"run": {"name": f"bench-{backend}", "rounds": args.rounds, "concurrency": args.concurrency, "seed": 0},
           "cards": {"limit": args.episodes, "language": "en"},
           "seeker": dict(endpoint), "supporters": [{"name": "smollm", **endpoint}]}
    return parse_config(raw, f"<{backend}>")


async def _run(config, backend) -> dict:
    from runs.execution.runner import Runner, RunPlan
    from runs.store import Store

    plan = RunPlan.prepare(config)
    plan.cards = (plan.cards * (config.cards.limit // max(1, len(plan.cards)) + 1))[: config.cards.limit]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp) / "bench.sqlite", config=config.to_dict(), fingerprint=plan.fingerprint())
        runner = Runner(plan, store, backends={"seeker": backend, "smollm": backend})
        start = time.perf_counter()
        result = await runner.run()
        elapsed = time.perf_counter() - start
    progress = result.progress
    return {"episodes": len(plan.cards), "seconds": round(elapsed, 1),
            "episodes_per_minute": round(len(plan.cards) * 60 / elapsed, 1),
            "completion_tokens": backend.stats.completion_tokens,
            "tokens_per_second": round(backend.stats.completion_tokens / elapsed, 1),
            "failed": getattr(progress, "failed", None)}


async def bench_engine(model: str, args: argparse.Namespace) -> dict:
    from agents.backends.vllm_engine import VLLMEngineBackend

    backend = VLLMEngineBackend(model, name="engine", engine_options=ENGINE_ARGS)
    start = time.perf_counter()
    await backend.start()
    startup = time.perf_counter() - start
    try:
        figures = await _run(_config(model, "vllm", None, args), backend)
    finally:
        await backend.aclose()
    return {"mode": "in-process vllm_engine", "startup_seconds": round(startup, 1), **figures}


async def bench_http(model: str, args: argparse.Namespace) -> dict:
    from agents.backends.openai_http import OpenAIHTTPBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--enforce-eager", "--dtype", ENGINE_ARGS["dtype"],
           "--max-model-len", str(ENGINE_ARGS["max_model_len"]), "--max-num-seqs", str(ENGINE_ARGS["max_num_seqs"]),
           "--no-enable-chunked-prefill", "--disable-uvicorn-access-log"]
    log = open(Path(tempfile.gettempdir()) / f"vllm-bench-{port}.log", "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    start = time.perf_counter()
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"vLLM server exited ({process.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(base_url + "/models", timeout=2):
                    break
            except OSError:
                await asyncio.sleep(0.5)
        startup = time.perf_counter() - start
        backend = OpenAIHTTPBackend(base_url, model, max_connections=args.concurrency * 2, name="http")
        try:
            figures = await _run(_config(model, "openai", base_url, args), backend)
        finally:
            await backend.aclose()
    finally:
        os.killpg(process.pid, 15)
        process.wait(60)
        log.close()
    return {"mode": "vLLM OpenAI server over HTTP", "startup_seconds": round(startup, 1), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: the embedded SmolLM2 folder)")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--only", choices=("engine", "http"))
    args = parser.parse_args()
    model = args.model or str(Path.home() / ".cache" / "esc-eval" / "models" / "smollm2-135m-instruct")
    os.environ.setdefault("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    results = []
    if args.only in (None, "engine"):
        results.append(asyncio.run(bench_engine(model, args)))
        print(json.dumps(results[-1]), flush=True)
    if args.only in (None, "http"):
        results.append(asyncio.run(bench_http(model, args)))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{args.episodes} episodes, {args.rounds} rounds, max_tokens {args.max_tokens}, concurrency {args.concurrency}")
    print(f"{'mode':32} {'episodes/min':>13} {'tokens/s':>9} {'seconds':>8} {'startup s':>10}")
    for r in results:
        print(f"{r['mode']:32} {r['episodes_per_minute']:>13} {r['tokens_per_second']:>9} {r['seconds']:>8} {r['startup_seconds']:>10}")


if __name__ == "__main__":  # vLLM's engine core is a spawned process that re-imports __main__
    main()
