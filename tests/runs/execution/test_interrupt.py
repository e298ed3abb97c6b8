"""Signal policy of a run: the first SIGINT/SIGTERM stops admitting and cancels after the grace period, the second quits; exit 3."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import NoReturn

import pytest

from esc_eval.runs.execution.interrupt import InterruptPolicy
from esc_eval.runs.execution.result import STOPPED


class Runner:
    def __init__(self) -> None:
        self.admitting = True

    def stop_admitting(self) -> None:
        self.admitting = False


class Quit(Exception):
    pass


def refuse_exit(status: int) -> NoReturn:
    raise Quit(status)


def test_first_press_stops_admitting_and_the_second_quits_with_3(capsys: pytest.CaptureFixture[str]) -> None:
    runner, calls = Runner(), []
    policy = InterruptPolicy(runner, on_stopping=lambda: calls.append("stopping"), on_quit=lambda: calls.append("quit"),
                             exit=refuse_exit)
    policy.press()
    assert not runner.admitting and policy.stopping and calls == ["stopping"]
    assert capsys.readouterr().err == ""
    with pytest.raises(Quit) as quit:
        policy.press()
    assert quit.value.args == (STOPPED,) and STOPPED == 3
    assert calls == ["stopping", "quit"]  # the display gave the terminal back before the process leaves
    assert "continue with --resume" in capsys.readouterr().err


async def test_sigint_presses_only_inside_the_block() -> None:
    runner = Runner()
    with InterruptPolicy(runner, exit=refuse_exit) as policy:
        assert policy.installed
        os.kill(os.getpid(), signal.SIGINT)  # the loop's handler, not KeyboardInterrupt
        for _ in range(100):
            if policy.presses:
                break
            await asyncio.sleep(0.01)
    assert policy.presses == 1 and not runner.admitting and not policy.installed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


class CancellingRunner(Runner):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def cancel_active(self) -> None:
        self.calls.append("cancel")

    def quit_now(self) -> None:
        self.calls.append("quit")


async def test_sigterm_is_a_first_press_whose_grace_period_ends_in_cancel() -> None:
    runner = CancellingRunner()
    with InterruptPolicy(runner, exit=refuse_exit, grace=0.2) as policy:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if policy.presses:
                break
            await asyncio.sleep(0.01)
        assert policy.presses == 1 and not runner.admitting and runner.calls == []
        await asyncio.sleep(0.4)
        assert runner.calls == ["cancel"]  # the grace period is over
        policy.press()
        assert runner.calls == ["cancel", "quit"]  # the second signal asks the runner to end now, not the process
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_without_signals_the_block_still_runs() -> None:
    found: list[bool] = []

    async def in_a_thread() -> None:
        with InterruptPolicy(Runner(), exit=refuse_exit) as policy:
            found.append(policy.installed)

    thread = threading.Thread(target=lambda: asyncio.run(in_a_thread()))
    thread.start()
    thread.join(10)
    assert found == [False]
