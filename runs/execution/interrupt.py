"""What Ctrl-C and SIGTERM do to a run: once, stop admitting and give the active episodes a grace period; twice, end now.

This is run policy, not a display's: a display only hooks in (``on_stopping`` to show that the
run is winding down, ``on_quit`` to give the terminal back before the process leaves).

Example::

    with InterruptPolicy(runner, on_stopping=lambda: print("stopping")) as policy:
        result = await runner.run()
    status = "stopped" if policy.stopping else "finished"
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, Protocol

from esc_eval.runs.execution.result import STOPPED

GRACE_SECONDS = 5.0
"""How long episodes (and scorings) in flight at the first signal may go on before they are cancelled and left for
``--resume``: long enough for a turn or two on a served model, short enough that ``docker stop`` (10 s) and systemd
never need SIGKILL."""

QUIT_SECONDS = 5.0
"""After a second signal, how long the runner may take to mark its row ``interrupted`` and checkpoint the store before
the process leaves regardless (a stuck write must not keep it)."""

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Both take the same path: ``timeout``, ``kill``, systemd and a container stop send SIGTERM, a terminal sends SIGINT."""


class Stoppable(Protocol):
    """A runner that can stop taking new episodes while its active ones go on."""

    def stop_admitting(self) -> None: ...


class InterruptPolicy:
    """The signal policy of one run, the event loop's SIGINT and SIGTERM handlers inside a ``with`` block.

    First signal: ``runner.stop_admitting()``, then ``on_stopping()``; the active episodes get ``grace`` seconds, then
    ``runner.cancel_active()`` cancels them (they stay ``running`` in the store: ``--resume`` plays them again) and the
    run ends with its row ``stopped``. Second signal: ``runner.quit_now()`` cancels everything at once and the row is
    marked ``interrupted``; should the runner not have returned within ``QUIT_SECONDS``, ``on_quit()`` runs and the
    process leaves with ``STOPPED`` through ``exit`` (``os._exit``). Runners without ``cancel_active``/``quit_now`` (the
    Ray driver) only stop admitting, and a second signal leaves at once.

    Where no handler can be installed (not the main thread, no signals on this platform) the block runs without one
    and ``installed`` is false.
    """

    def __init__(self, runner: Stoppable, *, on_stopping: Callable[[], None] | None = None,
                 on_quit: Callable[[], None] | None = None, exit: Callable[[int], NoReturn] = os._exit,
                 grace: float = GRACE_SECONDS):
        self.runner, self.on_stopping, self.on_quit, self._exit = runner, on_stopping, on_quit, exit
        self.grace = grace
        self.presses = 0
        self.installed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def stopping(self) -> bool:
        """Whether a signal came: the run stopped admitting episodes."""
        return self.presses > 0

    def press(self) -> None:
        """One signal (the handler)."""
        self.presses += 1
        if self.presses == 1:
            self.runner.stop_admitting()
            if self.on_stopping is not None:
                self.on_stopping()
            cancel = getattr(self.runner, "cancel_active", None)
            if cancel is not None and self._loop is not None:
                self._timers.append(self._loop.call_later(self.grace, cancel))
            return
        quit_now = getattr(self.runner, "quit_now", None)
        if quit_now is not None and self._loop is not None and self.presses == 2:
            quit_now()
            self._timers.append(self._loop.call_later(QUIT_SECONDS, self._leave))
            return
        self._leave()

    def _leave(self) -> None:
        if self.on_quit is not None:
            self.on_quit()
        sys.stdout.flush()
        print("esc-eval: interrupted; finished episodes are in the store, continue with --resume", file=sys.stderr, flush=True)
        self._exit(STOPPED)

    def __enter__(self) -> InterruptPolicy:
        self._loop = asyncio.get_running_loop()
        try:
            for sig in SIGNALS:
                self._loop.add_signal_handler(sig, self.press)
            self.installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            self.installed = False
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        if self.installed and self._loop is not None:
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)
            self.installed = False
