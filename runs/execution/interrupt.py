"""What Ctrl-C does to a run: once, admit no more episodes and let the active ones finish; twice, quit now.

This is run policy, not a display's: a display only hooks in (``on_stopping`` to show that the
run is winding down, ``on_quit`` to give the terminal back before the process leaves).

Example::

    with InterruptPolicy(runner, on_stopping=lambda: print("stopping")) as ctrl_c:
        result = await runner.run()
    status = "stopped" if ctrl_c.stopping else "finished"
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, Protocol

INTERRUPTED = 130
"""The exit status after a second Ctrl-C (128 + SIGINT, as a shell reports it)."""


class Stoppable(Protocol):
    """A runner that can stop taking new episodes while its active ones go on."""

    def stop_admitting(self) -> None: ...


class InterruptPolicy:
    """The Ctrl-C policy of one run, the event loop's SIGINT handler inside a ``with`` block.

    First press: ``runner.stop_admitting()``, then ``on_stopping()``; the run then ends
    normally once its active episodes (and their scoring) are done. Second press:
    ``on_quit()``, a hint on stderr, and the process leaves at once with ``INTERRUPTED``
    through ``exit`` (``os._exit``: nothing may wait on a stuck request); the store keeps
    every committed turn and ``esc-eval run --resume`` continues the run.

    Where no SIGINT handler can be installed (not the main thread, no signals on this
    platform) the block runs without one and ``installed`` is false.
    """

    def __init__(self, runner: Stoppable, *, on_stopping: Callable[[], None] | None = None,
                 on_quit: Callable[[], None] | None = None, exit: Callable[[int], NoReturn] = os._exit):
        self.runner, self.on_stopping, self.on_quit, self._exit = runner, on_stopping, on_quit, exit
        self.presses = 0
        self.installed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stopping(self) -> bool:
        """Whether Ctrl-C was pressed: the run stopped admitting episodes."""
        return self.presses > 0

    def press(self) -> None:
        """One Ctrl-C (the signal handler)."""
        self.presses += 1
        if self.presses == 1:
            self.runner.stop_admitting()
            if self.on_stopping is not None:
                self.on_stopping()
            return
        if self.on_quit is not None:
            self.on_quit()
        sys.stdout.flush()
        print("esc-eval: interrupted; finished episodes are in the store, continue with --resume", file=sys.stderr, flush=True)
        self._exit(INTERRUPTED)

    def __enter__(self) -> InterruptPolicy:
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_signal_handler(signal.SIGINT, self.press)
            self.installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            self.installed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed and self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self.installed = False
