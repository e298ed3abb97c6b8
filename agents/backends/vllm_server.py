"""Launch vLLM OpenAI servers on 127.0.0.1: the server side of the ``openai`` backend (``esc-eval serve``).

A ``ServerPlan`` is plain data (model, port, LoRA adapters); which plans a config needs is
decided by the CLI (``esc_eval.runs.cli.serve.plan_servers``), so this module knows nothing of configs.
Each server is started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm``
console script fails on vLLM's CPU build) with the given interpreter. A plan with adapters
gets ``--enable-lora --lora-modules NAME=PATH ...``, so the judge's per-dimension model
names reach their adapters.

``serve`` waits until every server answers ``GET /v1/models``, prints one line per
server, and keeps them running until Ctrl-C (or SIGTERM), which stops them all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from esc_eval.agents.backends.vllm_engine import cpu_has_native_bf16

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM's ``--max-lora-rank`` accepts."""
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
}
"""Defaults for vLLM's CPU build (each kept if already set; the OMP binding is this process's CPUs); see docs/vllm.md."""


@dataclass
class ServerPlan:
    """One vLLM server: the model it loads, where it listens, the adapters it serves."""

    model: str
    port: int
    roles: list[str]
    lora: dict[str, str] = field(default_factory=dict)

    def command(self, python: str, *, cpu: bool = False, extra: Sequence[str] = ()) -> list[str]:
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", "127.0.0.1", "--port", str(self.port)]
        if self.lora:
            cmd += ["--enable-lora", "--lora-modules", *(f"{name}={path}" for name, path in self.lora.items()),
                    "--max-loras", str(len(self.lora)), "--max-lora-rank", str(max_lora_rank(self.lora.values()))]
        if cpu:  # vllm-cpu 0.32.0: no CUDA graphs; chunked prefill kills the engine on seeded requests
            if not cpu_has_native_bf16():  # vLLM would downcast to an emulated bfloat16 (a --dtype in extra wins)
                cmd += ["--dtype", "float32"]
            cmd += ["--enforce-eager", "--no-enable-chunked-prefill"]
        return cmd + list(extra)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def max_lora_rank(paths: Sequence[str] | object) -> int:
    """The smallest rank vLLM accepts that holds every local adapter's ``r`` (16 when unknown)."""
    ranks = []
    for path in paths:  # type: ignore[union-attr]
        try:
            ranks.append(int(json.loads((Path(path) / "adapter_config.json").read_text())["r"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    need = max(ranks, default=16)
    return next((r for r in LORA_RANKS if r >= need), need)


def cpu_bind() -> str:
    """This process's CPUs as vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` wants them (``0-1``, or ``0,2,5``)."""
    cpus = sorted(os.sched_getaffinity(0))
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}"
    return ",".join(map(str, cpus))


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll ``GET {base_url}/models`` until it answers 200; returns the seconds waited."""
    start = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"not ready after {timeout:.0f}s")
        time.sleep(0.5)


def serve(plans: Sequence[ServerPlan], *, python: str, cpu: bool, extra: Sequence[str], timeout: float, log_dir: Path,
          dry_run: bool = False, out: TextIO | None = None) -> int:
    """Start, wait for and keep the servers; returns the exit code (0 after Ctrl-C)."""
    out = out or sys.stdout
    if not plans:
        print("esc-eval serve: no openai endpoint on 127.0.0.1/localhost in this config: nothing to start", file=out)
        return 0
    env = dict(os.environ)
    if cpu:
        for key, value in {**CPU_ENV, "VLLM_CPU_OMP_THREADS_BIND": cpu_bind()}.items():
            env.setdefault(key, value)
    for plan in plans:
        print(f"# {', '.join(plan.roles)} -> {plan.base_url}", file=out)
        print(shlex.join(plan.command(python, cpu=cpu, extra=extra)), file=out, flush=True)
    if dry_run:
        return 0
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[tuple[ServerPlan, subprocess.Popen[bytes], Path]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for plan in plans:
            log_path = log_dir / f"vllm-{plan.port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(plan.command(python, cpu=cpu, extra=extra), env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            processes.append((plan, process, log_path))
        for plan, process, log_path in processes:
            try:
                waited = wait_ready(plan.base_url, process, timeout)
            except RuntimeError as exc:
                tail = log_path.read_text(errors="replace")[-2000:]
                print(f"esc-eval serve: {plan.base_url} ({plan.model}): {exc}; log {log_path}:\n{tail}", file=sys.stderr)
                return 1
            adapters = f" + adapters {', '.join(plan.lora)}" if plan.lora else ""
            print(f"ready in {waited:.0f}s: {plan.base_url} serving {plan.model}{adapters} (log {log_path})", file=out, flush=True)
        print("all servers ready; Ctrl-C stops them", file=out, flush=True)
        while True:
            for plan, process, log_path in processes:
                if process.poll() is not None:
                    print(f"esc-eval serve: {plan.base_url} exited with code {process.returncode}; log {log_path}", file=sys.stderr)
                    return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping servers", file=out, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_all([p for _, p, _ in processes])


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """SIGTERM each server's process group, then SIGKILL what is left after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
