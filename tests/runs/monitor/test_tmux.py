"""`esc-eval run` and `esc-eval monitor` in a real terminal (tmux): the live dashboard, and two views of one run.

The run talks to a fake OpenAI server (0.2 s per reply) in a subprocess; tmux runs on its own
socket, so nothing of the user's tmux is touched, and is killed at the end. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from esc_eval.runs.store import Store
from esc_eval.testing.cli import ROOT, write_config

pytestmark = pytest.mark.tmux  # skips without tmux, fails under CI (conftest.py)

SERVER = """
import asyncio
from esc_eval.testing.fake_server import FakeOpenAIServer

def reply(body):
    if body.get("model") == "judge-model":
        return "Score: 3"
    return f"{body.get('model')} says something kind ({len(body.get('messages', []))} messages so far)"

async def main():
    server = await FakeOpenAIServer(responder=reply, delay=0.2, record=False).start()
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Tmux:
    """A private tmux server (own socket) with one 160x50 session."""

    def __init__(self, name: str):
        self.socket, self.session = name, name
        self.socket_path: str | None = None

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def start(self, window: str, command: str) -> None:
        self("new-session", "-d", "-s", self.session, "-x", "160", "-y", "50", "-n", window, command)
        self.socket_path = self("display-message", "-p", "#{socket_path}").strip()

    def open(self, window: str, command: str) -> None:
        self("new-window", "-d", "-t", f"{self.session}:", "-n", window, command)

    def screen(self, window: str) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", f"{self.session}:{window}")

    def keys(self, window: str, *keys: str) -> None:
        self("send-keys", "-t", f"{self.session}:{window}", *keys)

    def wait(self, window: str, check: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(window)
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f}s, window {window!r} shows no {what}:\n{screen}")
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if self.socket_path:  # tmux leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def server_url() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    terminal = Tmux(f"esc-eval-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield terminal
    finally:
        terminal.kill()


def config_for(tmp_path: Path, url: str, *, rounds: int, language: str | None) -> Path:
    cards = "[cards]\n" + (f'language = "{language}"\n' if language else "")
    judge = f'[judge]\nbase_url = "{url}"\nmodel = "judge-model"\n'
    return write_config(tmp_path / "run.toml", seeker_url=url, supporters={"alpha": url, "beta": url},
                        rounds=rounds, extra=f"\n{cards}\n{judge}")


def shell(*command: str) -> str:
    """A window command: ``esc-eval ...`` from the repo, then the pane stays open showing the exit status."""
    line = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "esc_eval.runs.cli", *command))
    script = f"trap true INT; cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} {line}; echo ESC-EVAL-EXIT=$?; sleep 600"
    return f"bash -c {shlex.quote(script)}"  # the trap keeps the pane's shell alive through Ctrl-C


def exit_status(screen: str) -> int | None:
    found = re.search(r"ESC-EVAL-EXIT=(\d+)", screen)
    return int(found.group(1)) if found else None


def leaderboard_rows(screen: str) -> list[str]:
    """The leaderboard's lines of the last frame on screen."""
    frame = screen[screen.rindex("Leaderboard"):]
    return [" ".join(line.split()) for line in frame.splitlines() if line.strip().startswith(("alpha", "beta"))]


def test_run_dashboard_and_monitor_show_the_same_run(tmp_path: Path, server_url: str, tmux: Tmux) -> None:
    store = tmp_path / "run.sqlite"
    config = config_for(tmp_path, server_url, rounds=3, language="en")  # 15 cards x 2 supporters, ~8 s
    tmux.start("run", shell("run", str(config), "--store", str(store)))

    running = tmux.wait("run", lambda s: "Endpoints" in s and "Leaderboard" in s or exit_status(s) is not None, 60, "dashboard")
    assert exit_status(running) is None, f"the run ended without showing the dashboard:\n{running}"
    assert re.search(r"episodes .*\d+/30", running), running
    for expected in ("active", "queued", "Turns", "Tokens out", "seeker", "p50", "p95", "Judge", str(store)):
        assert expected in running, expected
    assert "alpha" in running and "beta" in running

    tmux.open("monitor", shell("monitor", str(store)))
    watching = tmux.wait("monitor", lambda s: "Endpoints" in s or exit_status(s) is not None, 30, "monitor view")
    assert exit_status(watching) is None, watching
    assert str(store) in watching and "alpha" in watching and re.search(r"episodes .*\d+/30", watching)

    finished = tmux.wait("run", lambda s: exit_status(s) is not None, 120, "end of the run")
    assert exit_status(finished) == 0, finished
    assert "30/30" in finished and "finished" in finished
    assert "30 episodes finished, 0 failed" in finished

    watched = tmux.wait("monitor", lambda s: exit_status(s) is not None, 60, "monitor exit once the run finished")
    assert exit_status(watched) == 0, watched
    assert "30/30" in watched and "finished" in watched
    assert leaderboard_rows(watched) == leaderboard_rows(finished) != []
    assert all(row.split()[2:] == ["75.0"] * 7 for row in leaderboard_rows(watched))  # every judge reply is "Score: 3"

    once = subprocess.run([sys.executable, "-m", "esc_eval.runs.cli", "monitor", str(store), "--once"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert once.returncode == 0 and "\x1b" not in once.stdout and "30/30" in once.stdout


def test_ctrl_c_stops_admitting_then_quits(tmp_path: Path, server_url: str, tmux: Tmux) -> None:
    store = tmp_path / "run.sqlite"
    config = config_for(tmp_path, server_url, rounds=5, language=None)  # 30 cards x 2 supporters, ~20 s
    tmux.start("run", shell("run", str(config), "--store", str(store)))
    shown = tmux.wait("run", lambda s: "Endpoints" in s and re.search(r"done [1-9]", s) is not None
                      or exit_status(s) is not None, 60, "a finished episode")
    assert exit_status(shown) is None, f"the run ended without showing the dashboard:\n{shown}"

    tmux.keys("run", "C-c")
    stopping = tmux.wait("run", lambda s: "stopping" in s or exit_status(s) is not None, 10, "stopping state")
    assert exit_status(stopping) is None, stopping  # the first Ctrl-C lets active episodes finish

    tmux.keys("run", "C-c")
    quit_ = tmux.wait("run", lambda s: exit_status(s) is not None, 10, "exit after the second Ctrl-C")
    assert exit_status(quit_) == 3, quit_  # stopped before the plan was done
    assert "--resume" in quit_

    reader = Store.open(store, readonly=True)
    try:
        counts = reader.counts()
    finally:
        reader.close_sync()
    assert counts.get("done", 0) >= 1 and counts.get("planned", 0) >= 1, counts  # stopped early; resumable
    assert not Path(f"{store}-wal").exists()  # the second Ctrl-C still checkpointed the store
