"""Framework overhead: esc-eval's full runner beside a bare asyncio + aiohttp client.

Both clients make the same requests to the same fake OpenAI server (a separate process,
answering after ``delay`` seconds): per episode 5 rounds (seeker line + supporter line,
each one request carrying the history so far), then 7 judge requests in the background,
with at most ``c`` episodes in flight and at most ``c`` judge requests in flight. Each
client runs in a fresh child process (``python -m benchmarks.overhead child ...``) so
its CPU seconds and peak RSS are its own; the server's CPU is reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROUNDS = 5
JUDGE_CALLS = 7
CARDS = 15  # built-in English cards; N is reached with repeats
MAX_TOKENS = 64
DIALOGUE = "\x00dialogue\x00"


# -- the two clients (run in a child process) -------------------------------------------------


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:
        return "asyncio"


def _run(coro: Any) -> Any:
    if _loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _grid(n: int) -> tuple[int, int]:
    """(cards, repeats) with cards x repeats = n when some card count up to CARDS divides n (else slightly more)."""
    for limit in range(min(CARDS, n), 0, -1):
        if n % limit == 0 and (limit >= 5 or n <= CARDS):
            return limit, n // limit
    return min(CARDS, n), math.ceil(n / min(CARDS, n))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's own peak (VmHWM): ru_maxrss would carry a parent's peak across fork+exec."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _config(n: int, c: int, url: str) -> Any:
    """The run both clients imitate: built-in cards and protocol, default persona and judge profile."""
    from esc_eval.runs.config import parse_config

    limit, repeats = _grid(n)
    endpoint = {"base_url": url, "max_connections": c, "max_tokens": MAX_TOKENS}
    return parse_config({
        "run": {"rounds": ROUNDS, "concurrency": c, "repeats": repeats, "seed": 0},
        "cards": {"language": "en", "limit": limit},
        "seeker": {**endpoint, "model": "seeker"},
        "supporters": [{**endpoint, "name": "sup", "model": "sup"}],
        "judge": {**endpoint, "model": "judge"},
    })


def prompt_kit(n: int, c: int, url: str) -> dict[str, Any]:
    """The texts esc-eval's requests carry, so the bare client sends bodies of the same size.

    Seeker system prompts per card, the supporter's system prompt and opener, and per judge
    dimension its system message and user prompt with ``DIALOGUE`` where the dialogue goes.
    """
    from esc_eval.runs.execution.plan import RunPlan

    plan = RunPlan.prepare(_config(n, c, url))
    assert plan.profile is not None
    marker = [("seeker", DIALOGUE)]
    judge = []
    for key in plan.profile.keys:
        messages = [dict(m) for m in plan.profile.messages(key, "en", marker)]
        for m in messages:
            m["content"] = m["content"].replace(plan.profile.format_dialogue(marker), DIALOGUE)
        judge.append(messages)
    return {
        "seeker": [plan.protocol.seeker_prompt(card) for card in plan.cards],
        "supporter": plan.protocol.supporter_prompt("en"),
        "opener": plan.protocol.opener("en"),
        "seeker_prefix": plan.profile.seeker_prefix, "supporter_prefix": plan.profile.supporter_prefix,
        "join": plan.profile.join, "judge": judge,
    }


async def esc_eval_client(n: int, c: int, url: str, store_dir: str) -> dict[str, Any]:
    """The full ``Runner``: runtime, environment, store writer, judge observer, OpenAI backends."""
    from esc_eval.runs.execution.runner import Runner, RunPlan
    from esc_eval.runs.store import Store

    config = _config(n, c, url)
    plan = RunPlan.prepare(config)
    store = Store.create(Path(store_dir) / "bench.sqlite", config=config.to_dict())
    runner = Runner(plan, store)
    import esc_eval.agents.backends.openai_http  # noqa: F401  (a fixed cost, not a per-episode one: as the bare client's import)
    rss0, cpu0, t0 = _rss_mb(), time.process_time(), time.perf_counter()
    result = await runner.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    calls = sum(b.stats.requests for b in runner.pool.all())
    faults = sum(sum(b.stats.faults.values()) for b in runner.pool.all())
    p = result.progress
    return {
        "episodes": p.to_run, "episodes_done": p.done, "episodes_failed": p.failed, "calls": calls, "faults": faults,
        "judge_scores": p.judge_done, "wall_s": wall, "cpu_s": cpu, "rss_start_mb": rss0, "peak_rss_mb": _peak_rss_mb(),
    }


async def bare_client(n: int, c: int, url: str, kit: dict[str, Any]) -> dict[str, Any]:
    """The same request pattern, carrying the same texts (``kit``), with nothing but asyncio, aiohttp and json."""
    import aiohttp

    limit, repeats = _grid(n)
    n = limit * repeats
    prefixes = (kit["supporter_prefix"], kit["seeker_prefix"])  # lines alternate supporter, seeker from the opener
    calls = 0

    async def call(session: aiohttp.ClientSession, model: str, messages: list[dict[str, str]]) -> str:
        nonlocal calls
        body = json.dumps({"model": model, "messages": messages, "max_tokens": MAX_TOKENS}).encode()
        async with session.post(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}) as response:
            data = json.loads(await response.read())
        calls += 1
        return data["choices"][0]["message"]["content"]

    rss0, cpu0, t0 = _rss_mb(), time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        slots, judge_slots = asyncio.Semaphore(c), asyncio.Semaphore(c)
        tasks: set[asyncio.Task[Any]] = set()
        done = 0

        async def judge_one(messages: list[dict[str, str]], dialogue: str) -> str:
            async with judge_slots:
                return await call(session, "judge", [{"role": m["role"], "content": m["content"].replace(DIALOGUE, dialogue)} for m in messages])

        async def judge(lines: list[str]) -> None:
            dialogue = kit["join"].join(prefixes[i % 2] + t for i, t in enumerate(lines))
            await asyncio.gather(*(judge_one(messages, dialogue) for messages in kit["judge"]))

        async def episode(ordinal: int) -> None:
            nonlocal done
            try:
                lines = [kit["opener"]]
                system = kit["seeker"][ordinal % limit]
                for _ in range(ROUNDS):
                    seeker = [{"role": "system", "content": system}] + [
                        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(lines)]
                    lines.append(await call(session, "seeker", seeker))
                    supporter = [{"role": "system", "content": kit["supporter"]}] + [
                        {"role": "assistant" if i % 2 == 0 else "user", "content": t} for i, t in enumerate(lines[1:])]
                    lines.append(await call(session, "sup", supporter))
                done += 1
            finally:
                slots.release()
            task = asyncio.create_task(judge(lines))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for ordinal in range(n):
            await slots.acquire()
            task = asyncio.create_task(episode(ordinal))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"episodes": n, "episodes_done": done, "calls": calls, "wall_s": wall, "cpu_s": cpu,
            "rss_start_mb": rss0, "peak_rss_mb": _peak_rss_mb()}


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.overhead child")
    parser.add_argument("mode", choices=["esc-eval", "bare"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--c", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--kit", help="the bare client's texts (JSON from prompt_kit)")
    args = parser.parse_args(argv)
    if args.mode == "bare":
        kit = json.loads(Path(args.kit).read_text()) if args.kit else prompt_kit(args.n, args.c, args.url)
        figures = _run(bare_client(args.n, args.c, args.url, kit))
    else:
        with tempfile.TemporaryDirectory(prefix="esc-eval-bench-") as tmp:
            figures = _run(esc_eval_client(args.n, args.c, args.url, tmp))
    figures["loop"] = _loop_name()
    print(json.dumps(figures), flush=True)


# -- the orchestration (parent process) ---------------------------------------------------------


@contextmanager
def fake_server(delay: float, jitter: float = 0.0) -> Iterator[tuple[str, int]]:
    """The fake OpenAI server in its own process; yields ``(base_url, pid)``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server", "--delay", str(delay), "--jitter", str(jitter)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_root(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1", process.pid
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(mode: str, n: int, c: int, url: str, server_pid: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="esc-eval-kit-") as kit:
        json.dump(prompt_kit(n, c, url), kit)
        kit.flush()
        server_cpu0 = _cpu_of(server_pid)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.overhead", "child", mode, "--n", str(n), "--c", str(c), "--url", url, "--kit", kit.name],
            capture_output=True, text=True, cwd=_root(), env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        server_cpu = _cpu_of(server_pid) - server_cpu0
    if out.returncode != 0:
        raise RuntimeError(f"{mode} client failed ({out.returncode}):\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["server_cpu_s"] = round(server_cpu, 3)
    return figures


def overhead(n: int, c: int, *, delay: float = 0.02, jitter: float = 0.0, scenario: str | None = None) -> dict[str, Any]:
    """One scenario: the bare client, then esc-eval, against one fresh server; one JSON-able dict."""
    with fake_server(delay, jitter) as (url, pid):
        _client("bare", min(n, 300), min(c, 100), url, pid)  # warm the server (and the page cache) once
        bare = _client("bare", n, c, url, pid)
        esc = _client("esc-eval", n, c, url, pid)
    active = min(c, esc["episodes"])
    growth_mb = esc["peak_rss_mb"] - esc["rss_start_mb"]
    bare_growth_mb = bare["peak_rss_mb"] - bare["rss_start_mb"]
    for figures in (esc, bare):
        for key in ("wall_s", "cpu_s", "rss_start_mb", "peak_rss_mb"):
            figures[key] = round(figures[key], 3)
    return {
        "scenario": scenario or f"overhead-{c}",
        "n": esc["episodes"], "c": c, "rounds": ROUNDS, "judge_calls": JUDGE_CALLS, "delay_ms": delay * 1000, "jitter": jitter,
        "esc_eval": esc, "bare": bare,
        "ratio_wall": round(esc["wall_s"] / bare["wall_s"], 3),
        "ratio_cpu": round(esc["cpu_s"] / bare["cpu_s"], 3),
        "esc_eval_cpu_ms_per_call": round(esc["cpu_s"] / max(1, esc["calls"]) * 1000, 3),
        "bare_cpu_ms_per_call": round(bare["cpu_s"] / max(1, bare["calls"]) * 1000, 3),
        "rss_kb_per_active_episode": round(growth_mb * 1024 / active, 1),
        "bare_rss_kb_per_active_episode": round(bare_growth_mb * 1024 / active, 1),
        "rss_kb_per_active_episode_above_bare": round((growth_mb - bare_growth_mb) * 1024 / active, 1),
        "completed": esc["episodes_done"] == esc["episodes"] and bare["episodes_done"] == bare["episodes"],
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child(sys.argv[2:])
    else:
        print(json.dumps(overhead(int(sys.argv[1]), int(sys.argv[2]))))
