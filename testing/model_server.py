"""Start a real OpenAI-compatible server (``transformers serve``) on a local model folder.

For tests and benchmarks that need a real model behind HTTP. Needs the extra
``transformers[serving]`` (FastAPI, uvicorn).

What ``transformers serve FOLDER`` (5.23) accepts, measured by hand:

- ``model`` must be omitted, null, or exactly the FOLDER string given on the command
  line (this helper passes the resolved absolute path and returns it as
  ``model_name``); anything else, even with a trailing slash, is HTTP 400
  "Server is pinned to ...". Replies name the model as ``"{FOLDER}@main"``.
- Fields outside OpenAI's chat-completion schema are HTTP 422 "Unexpected fields in
  the request" (e.g. ``top_k``); the extras it adds are ``seed``,
  ``generation_config`` and ``chat_template_kwargs``. ``seed``, ``temperature``,
  ``top_p`` (also as null), ``max_completion_tokens``, ``stop``, ``stream``,
  ``frequency_penalty`` are accepted; ``n``, ``user``, ``presence_penalty``,
  ``logprobs``, ``response_format``... are accepted and ignored with a warning.
- ``temperature > 0`` does not switch sampling on: it only sets the temperature of
  the folder's generation config, whose ``do_sample`` is unset for the embedded
  model, so the answer stays greedy. ``max_tokens`` defaults to 1024 when omitted.
- ``GET /v1/models`` answers HTTP 500 when the Hugging Face hub cache folder does
  not exist (it lists that cache), so readiness is polled on ``GET /health``; the
  pinned model is loaded before the server starts listening.

Example:
    async with start_transformers_serve(embedded_model_dir()) as (base_url, model_name, process):
        backend = OpenAIHTTPBackend(base_url, model_name)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass
class ServedModel:
    """A running server; unpacks as ``(base_url, model_name, process)``."""

    base_url: str
    """``http://127.0.0.1:{port}/v1``, ready for ``OpenAIHTTPBackend``."""
    model_name: str
    """The exact ``model`` field the server accepts: the folder's absolute path."""
    process: asyncio.subprocess.Process
    startup_seconds: float
    log_path: Path

    def __iter__(self) -> Iterator[object]:
        return iter((self.base_url, self.model_name, self.process))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(folder: Path, port: int, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line, run with this interpreter so the same transformers is used."""
    return [
        sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
        "--host", "127.0.0.1", "--port", str(port), *extra_args,
    ]


@asynccontextmanager
async def start_transformers_serve(
    folder: Path,
    *,
    timeout: float = 120.0,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> AsyncIterator[ServedModel]:
    """Run ``transformers serve FOLDER`` on a free port for the duration of the block.

    Args:
        folder: a transformers model folder (e.g. ``embedded_model_dir()``).
        timeout: seconds to wait until ``GET /health`` answers 200.
        extra_args: more CLI flags, e.g. ``["--continuous-batching"]``.
        env: extra environment variables for the server process.

    Yields:
        ``ServedModel`` (unpacks as ``base_url, model_name, process``).

    Raises:
        ServerStartError: the process exited early or was not ready within ``timeout``.
    """
    folder = Path(folder).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ServerStartError(f"{folder}: not a transformers model folder (no config.json)")
    process_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # never download: the folder is all it needs
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_file = tempfile.NamedTemporaryFile(prefix="transformers-serve-", suffix=".log", delete=False)
    log_path = Path(log_file.name)
    port = free_port()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *serve_command(folder, port, extra_args),
        stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=process_env,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    log_file.close()
    served = ServedModel(f"http://127.0.0.1:{port}/v1", str(folder), process, 0.0, log_path)
    try:
        await _wait_ready(served, f"http://127.0.0.1:{port}/health", timeout)
        served.startup_seconds = time.perf_counter() - started
        yield served
    finally:
        await _stop(process)
    log_path.unlink(missing_ok=True)


async def _wait_ready(served: ServedModel, health_url: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while True:
            if served.process.returncode is not None:
                raise ServerStartError(f"transformers serve exited with {served.process.returncode}:\n{served.log_tail()}")
            try:
                async with session.get(health_url) as response:
                    if response.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.perf_counter() > deadline:
                raise ServerStartError(f"transformers serve not ready after {timeout:.0f} s:\n{served.log_tail()}")
            await asyncio.sleep(0.25)


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL if the test process dies without stopping it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


async def _stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM this one process, then SIGKILL it if it lingers.

    uvicorn's graceful shutdown waits for requests in flight, and a generation whose
    client went away keeps running, so SIGTERM alone can take minutes.
    """
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()
