"""Run the real ``esc-eval`` command as a subprocess while fake servers serve on the test's loop."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from esc_eval.testing.model_server import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def esc_eval(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Completed:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esc_eval.runs.cli", *args,
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


def write_config(path: Path, *, seeker_url: str, supporters: dict[str, str], cards: Path | None = None,
                 protocol: str = "default", extra: str = "", rounds: int = 5,
                 language: str | None = None, limit: int | None = None) -> Path:
    lines = ["[run]", 'name = "test"', f"rounds = {rounds}", "concurrency = 8", ""]
    if cards is not None:
        lines += ["[cards]", f'path = "{cards}"'] + ([f'language = "{language}"'] if language else [])
        lines += ([f"limit = {limit}"] if limit else []) + [""]
    lines += ["[seeker]", f'base_url = "{seeker_url}"', 'model = "esc-role"', f'protocol = "{protocol}"', "max_tokens = 512", ""]
    for name, url in supporters.items():
        lines += ["[[supporters]]", f'name = "{name}"', f'base_url = "{url}"', f'model = "{name}-model"', ""]
    path.write_text("\n".join(lines) + extra, encoding="utf-8")
    return path


def served_address(command: str, *args: str) -> Iterator[str]:
    """Run ``esc-eval COMMAND ARGS --port P`` (a local web server) and yield the address it prints, token included.

    The server is stopped when the generator closes.
    """
    process = subprocess.Popen([sys.executable, "-m", "esc_eval.runs.cli", command, *args, "--port", str(free_port())],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line)
        assert found, line + (process.stdout.read() if process.poll() is not None else "")  # type: ignore[union-attr]
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)
