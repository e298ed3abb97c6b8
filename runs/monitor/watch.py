"""The refresh loops: ``watch`` a source, ``run_with_monitor`` (``esc-eval run``), ``monitor_command`` (``esc-eval monitor``).

What Ctrl-C does to a run is not decided here but in ``esc_eval.runs.execution.interrupt``; the view only
shows it. ``esc-eval monitor`` merely watches, so there Ctrl-C just ends the watching.

Example::

    source = LiveSource(runner.progress, lambda: [b.stats for b in runner.pool.all()])
    stop = asyncio.Event()
    view = asyncio.create_task(watch(source, live=sys.stdout.isatty(), interval=0.25, stop=stop))
    result = await runner.run()
    stop.set(); await view
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console

from esc_eval.runs.execution.interrupt import InterruptPolicy
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.monitor.render import Dashboard, PlainReporter, render
from esc_eval.runs.monitor.snapshot import Snapshot, Source
from esc_eval.runs.monitor.sources import LiveSource, StoreSource
from esc_eval.runs.store.live import StoreBusy

log = logging.getLogger(__name__)

def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout) is a terminal that can host the live dashboard; else plain lines."""
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except ValueError:  # closed
        return False


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def watch(source: Source, *, live: bool, interval: float, stop: asyncio.Event | None = None,
                exit_when_finished: bool = False, dashboard: Dashboard | None = None,
                out: TextIO | None = None) -> Snapshot:
    """Show ``source`` until ``stop`` is set (or, with ``exit_when_finished``, the run is over).

    ``live`` draws the dashboard, refreshed every ``interval`` seconds (0.25 gives rich's
    4 frames a second), and leaves its final frame on screen. Otherwise a ``PlainReporter``
    prints a line every ``interval`` seconds and the summary at the end. Returns the last snapshot.
    """
    stop = stop or asyncio.Event()
    if live:
        display = dashboard or Dashboard()
        with display:
            while True:  # a snapshot is taken after ``stop`` is set, so the last frame is final
                snapshot = await _snapshot(source, stop, interval)
                display.update(snapshot)
                if stop.is_set() or (exit_when_finished and snapshot.finished):
                    return snapshot
                await _pause(stop, interval)
    reporter = PlainReporter(out)
    while True:
        snapshot = await _snapshot(source, stop, interval)
        if stop.is_set() or (exit_when_finished and snapshot.finished):
            reporter.finish(snapshot)
            return snapshot
        reporter.update(snapshot)
        await _pause(stop, interval)


async def _snapshot(source: Source, stop: asyncio.Event, interval: float) -> Snapshot:
    """``source.snapshot()``, trying again next tick while the store is busy (a checkpoint, a lock)."""
    while True:
        try:
            return source.snapshot()
        except StoreBusy as exc:
            log.debug("monitor: store busy (%s); trying again", exc)
            await _pause(stop, interval)


class _Runner(Protocol):
    progress: RunProgress
    pool: Any

    def stop_admitting(self) -> None: ...

    async def run(self) -> Any: ...


async def run_with_monitor(runner: _Runner, *, live: bool, interval: float | None = None, title: str = "",
                           console: Console | None = None, out: TextIO | None = None) -> Any:
    """Run ``runner`` with its view (``esc-eval run``) and return ``runner.run()``'s result.

    Ctrl-C follows ``InterruptPolicy`` (``esc_eval.runs.execution.interrupt``): once, the run stops
    admitting episodes and the header says so; twice, the display gives the terminal back and
    the process leaves with status 130. ``interval`` defaults to 0.25 s live and 5 s for plain lines.
    """
    source = LiveSource(runner.progress, lambda: [backend.stats for backend in runner.pool.all()], title=title)
    dashboard = Dashboard(console) if live else None
    stop = asyncio.Event()
    view = asyncio.create_task(watch(source, live=live, interval=interval or (0.25 if live else 5.0), stop=stop,
                                     dashboard=dashboard, out=out), name="monitor")

    def stopping() -> None:
        source.state = f"stopping: finishing {runner.progress.active:,} active episodes (Ctrl-C again quits now)"
        if not live:
            print("esc-eval: stopping: no new episodes; active ones finish (Ctrl-C again quits now)", file=sys.stderr, flush=True)

    with InterruptPolicy(runner, on_stopping=stopping, on_quit=dashboard.stop if dashboard else None) as ctrl_c:
        try:
            result = await runner.run()
            source.state = "stopped" if ctrl_c.stopping else "finished"
        finally:
            stop.set()
            try:
                await view
            except Exception:  # the view failing must never cost the run its result
                log.exception("the run monitor failed; the run itself was not affected")
    return result


def monitor_command(store_path: str | Path, episode: str | None = None, once: bool = False,
                    interval: float | None = None, *, out: TextIO | None = None) -> int:
    """``esc-eval monitor STORE``: watch a run through its store until it finishes or Ctrl-C.

    ``once`` prints one frame and returns. In a terminal the view is the dashboard
    (refreshed every ``interval`` seconds, default 1); elsewhere plain lines (default every 5 s).
    Raises ``StoreError`` when the file is not a store or ``episode`` names no episode.
    """
    source = StoreSource(store_path, episode=episode)
    live = out is None and is_terminal()
    try:
        if once:
            snapshot = source.snapshot()
            if live:
                Console().print(render(snapshot))
            else:
                PlainReporter(out).finish(snapshot)
            return 0
        asyncio.run(_monitor(source, live, interval or (1.0 if live else 5.0), out))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()


async def _monitor(source: StoreSource, live: bool, interval: float, out: TextIO | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    await watch(source, live=live, interval=interval, stop=stop, exit_when_finished=True, out=out)
