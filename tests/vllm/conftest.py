"""Fixtures for the vLLM tests: vLLM's CPU build in its own virtualenv, LoRA adapters, a server.

The venv (``scripts/vllm-env.sh``; ``$ESC_EVAL_VLLM_VENV`` or ``~/.cache/esc-eval/vllm-venv``)
is created on first use, which downloads ~3.5 GB and takes minutes; later sessions reuse it.
``ESC_EVAL_SKIP_VLLM=1`` skips these tests instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_TIMEOUT = 40 * 60

CPU_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "0-1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def _cpu_bind() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    contiguous = cpus == list(range(cpus[0], cpus[-1] + 1))
    return f"{cpus[0]}-{cpus[-1]}" if contiguous else ",".join(map(str, cpus))


def vllm_env(**extra: str) -> dict[str, str]:
    """The environment a vLLM process gets on this CPU-only machine (the repo on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(CPU_ENV)
    env["VLLM_CPU_OMP_THREADS_BIND"] = _cpu_bind()
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The vLLM venv's interpreter, creating the venv when it is missing."""
    if os.environ.get("ESC_EVAL_SKIP_VLLM") == "1":
        pytest.skip("ESC_EVAL_SKIP_VLLM=1")
    start = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts" / "vllm-env.sh")], capture_output=True, text=True,
                          timeout=VENV_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"scripts/vllm-env.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    python = done.stdout.strip().splitlines()[-1]
    seconds = time.monotonic() - start
    if seconds > 5:
        print(f"\nvLLM venv created in {seconds:.0f}s: {python}", file=sys.stderr)
    return python


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors folder (made in the main env)."""
    from esc_eval.agents.backends.transformers_local import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def adapters(vllm_python: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two random (non-zero) LoRA adapters made with peft inside the vLLM venv."""
    out = tmp_path_factory.mktemp("lora")
    names = ["fluency_en", "empathic_en"]
    done = subprocess.run([vllm_python, str(HERE / "make_adapters.py"), str(model_dir), str(out), *names],
                          capture_output=True, text=True, env=vllm_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: str(out / name) for name in names}


class Served:
    def __init__(self, base_url: str, model: str, process: subprocess.Popen[str], startup: float, log: Path):
        self.base_url, self.model, self.process, self.startup_seconds, self.log = base_url, model, process, startup, log


@pytest.fixture(scope="session")
def vllm_server(vllm_python: str, model_dir: Path, adapters: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``esc-eval serve`` on a judge-only config: one vLLM server with both adapters on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    lora = ", ".join(f'{name} = "{path}"' for name, path in adapters.items())
    config = tmp / "serve.toml"
    config.write_text(f'[judge]\nbase_url = "http://127.0.0.1:{port}/v1"\nmodel = "{model_dir}"\nlora = {{{lora}}}\n',
                      encoding="utf-8")
    command = [sys.executable, "-m", "esc_eval.runs.cli", "serve", str(config), "--python", vllm_python, "--cpu",
               "--log-dir", str(tmp / "logs"), "--timeout", "600",
               "--vllm-args", "--dtype bfloat16 --max-model-len 4096 --max-num-seqs 32"]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=vllm_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "all servers ready" in line:
                break
        else:
            pytest.fail("esc-eval serve ended before its servers were ready:\n" + "".join(lines)[-3000:])
        served = Served(f"http://127.0.0.1:{port}/v1", str(model_dir), process, time.monotonic() - start, tmp / "logs" / f"vllm-{port}.log")
        served.output = lines  # type: ignore[attr-defined]
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(__import__("signal").SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
