"""Drawing a ``Snapshot``: the rich dashboard (``render``, ``Dashboard``) and plain lines (``PlainReporter``).

A display never asks where a snapshot came from; everything it shows is in the snapshot.
Text from models and run names is added as plain ``Text``, never read as rich markup.
"""

from __future__ import annotations

import io
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping
from typing import TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from esc_eval.agents.judge.profiles import PAPER_NAMES
from esc_eval.runs.monitor.snapshot import FAULT_KINDS, ROLES, CostView, EndpointView, Snapshot, duration
from esc_eval.runs.pricing import usd_text

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


# -- formatting ---------------------------------------------------------------------------------


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _per_second(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"


def _throttled(e: EndpointView) -> str:
    """Waits the server asked for and the in-flight limit they drove down: ``12 · 34s · limit 2 (min 1)``."""
    if not e.throttled_waits and e.limit == e.limit_min:
        return "–"
    limit = "" if e.limit is None else f" · limit {e.limit}" + (f" (min {e.limit_min})" if e.limit_min != e.limit else "")
    return f"{e.throttled_waits:,} · {e.throttled_seconds:,.0f}s{limit}"


def _faults(faults: Mapping[str, int]) -> str:
    kinds = [k for k in FAULT_KINDS if faults.get(k)] + sorted(k for k in faults if k not in FAULT_KINDS and faults[k])
    return " ".join(f"{k}:{faults[k]:,}" for k in kinds) or "–"


def _value(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def render(snapshot: Snapshot, *, plain: bool = False) -> Group:
    """The dashboard for ``snapshot``: header, progress, counts, endpoints, leaderboard, one episode.

    ``plain`` draws the progress as text instead of a bar, for displays without colour.
    """
    s = snapshot
    header = Text.assemble(("esc-eval ", "bold"), (s.title, "bold cyan"), "  ·  ",
                           (s.state, "green" if s.state in ("running", "finished") else "yellow"),
                           f"  ·  elapsed {duration(s.elapsed)}")
    parts: list[RenderableType] = [header, _progress(s, plain), _counts(s), _Endpoints(s), _Board(s), _episode(s)]
    if s.workers:
        parts.insert(4, _workers(s))
    return Group(*parts)


def _progress(s: Snapshot, plain: bool) -> RenderableType:
    rate = f"{s.episode_rate * 60:,.1f} ep/min" if 0 < s.episode_rate < 1 else f"{s.episode_rate:,.1f} ep/s"
    tail = f"{s.completed:,}/{s.total:,}  {s.fraction * 100:5.1f}%  ·  {rate}  ·  ETA {duration(s.eta)}"
    if plain:
        return Text(f"episodes {tail}")
    bar = Progress(TextColumn("episodes"), BarColumn(bar_width=None), TextColumn("{task.fields[tail]}"),
                   expand=True, auto_refresh=False)
    bar.add_task("episodes", total=max(s.total, 1), completed=s.completed, tail=tail)
    return bar


def _row(table: Table, *cells: str) -> None:
    """Add a row of plain text: names and model output are never read as rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def _counts(s: Snapshot) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    _row(grid, "Episodes", f"active {s.active:,} · queued {s.queued:,} · done {s.done:,} · failed {s.failed:,}"
         + (f" · skipped {s.skipped:,}" if s.skipped else ""))
    _row(grid, "Outcomes", " · ".join(f"{k} {v:,}" for k, v in sorted(s.outcomes.items())) or "–")
    _row(grid, "Turns", f"{_per_second(s.turn_rate)} ({s.turns:,} in all)")
    _row(grid, "Tokens out", " · ".join(f"{role} {_per_second(s.token_rates.get(role))}" for role in ROLES))
    if s.judge_pending is None:
        judge = "no judge in this run"
    else:
        judge = f"backlog {s.judge_pending:,} scores pending · {s.judge_done or 0:,} scored" + (
            f" ({s.judge_failed:,} failed)" if s.judge_failed else "")
    _row(grid, "Judge", judge)
    if s.cost is not None:
        _row(grid, "Cost", cost_line(s.cost))
    return grid


def cost_line(cost: CostView) -> str:
    """``$1.23 spent · $4.56 projected for the plan · limit $5.00``."""
    projected = f" · {usd_text(cost.projected)} projected for the plan" if cost.projected is not None else ""
    return f"{usd_text(cost.spent)} spent{projected}" + (f" · limit {usd_text(cost.limit)}" if cost.limit is not None else "")


class _Endpoints:
    """Per-endpoint health; narrow terminals get short headers and clipped names so errors keep room."""

    def __init__(self, snapshot: Snapshot):
        self.s = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        narrow = options.max_width < 100
        headers = ("endpoint", "req" if narrow else "requests", "active" if narrow else "in flight", "p50", "p95",
                   "retry" if narrow else "retries", "throttled", "errors")
        table = Table(title="Endpoints", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in headers:
            if name == "endpoint":
                table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=16 if narrow else None)
            elif name == "errors":
                table.add_column(name, overflow="fold", min_width=16)
            else:
                table.add_column(name, justify="right", no_wrap=True)
        for e in self.s.endpoints:
            requests = f"{e.requests:,}" + (f" +{e.cache_hits:,} cached" if e.cache_hits else "")
            _row(table, e.name, requests, "–" if e.in_flight is None else f"{e.in_flight:,}", _latency(e.p50),
                 _latency(e.p95), f"{e.retries:,}", _throttled(e), _faults(e.faults))
        if not self.s.endpoints:
            _row(table, "–", "", "", "", "", "", "", "")
        yield table


class _Board:
    """The leaderboard table, with the paper's dimension names when they fit and short ones when not."""

    def __init__(self, snapshot: Snapshot):
        self.s = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        s = self.s
        names = [PAPER_NAMES.get(dim, dim) for dim in s.dimensions]
        width = max((len(r.supporter) for r in s.leaderboard), default=13) + 9 + sum(len(n) + 3 for n in names)
        if width > options.max_width:
            names = [name[:4] for name in names]
        table = Table(title="Leaderboard (running mean / 4 × 100)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("supporter", no_wrap=True)
        table.add_column("scored", justify="right")
        for name in names:
            table.add_column(name, justify="right")
        for row in s.leaderboard:
            _row(table, row.supporter, f"{row.scored:,}", *(_value(row.values.get(dim)) for dim in s.dimensions))
        if not s.leaderboard:
            _row(table, "no scores yet", "", *("" for _ in s.dimensions))
        yield table


def _workers(s: Snapshot) -> Table:
    """Per-worker rows of a distributed run: state, where, shard progress, requests, last heard."""
    table = Table(title="Workers", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("worker", "state", "where", "finished", "active", "requests", "heard"):
        table.add_column(header, no_wrap=True, justify="left" if header in ("worker", "state", "where") else "right")
    for w in s.workers:
        _row(table, w.name, w.state, w.where, f"{w.finished:,}/{w.assigned:,}", f"{w.active:,}", f"{w.requests:,}",
             f"{w.seen_ago:.1f}s ago")
    return table


def _episode(s: Snapshot) -> RenderableType:
    if s.spotlight_key is None:
        return Text("Episode: no turns yet", style="dim")
    how = "following" if s.following else "latest"
    title = Text.assemble(("Episode ", "bold"), (s.spotlight_key, "cyan"), f"  ({how}"
                          + (f", {s.spotlight_outcome}" if s.spotlight_outcome else "") + ")")
    width = max((len(line.role) for line in s.spotlight), default=0)
    lines: list[RenderableType] = []
    for line in s.spotlight:
        lines.append(Text.assemble((f"{line.index:>3} ", "dim"), (f"{line.role:<{width}}  ", "bold"), " ".join(line.text.split()),
                                   no_wrap=True, overflow="ellipsis"))
        if line.state:
            lines.append(Text(f"    {'':<{width}}  [{line.state}]", style="dim", no_wrap=True, overflow="ellipsis"))
    lines = lines or [Text("    waiting for its first turn", style="dim")]
    return Group(title, *lines)



def plain_text(renderable: RenderableType, *, width: int = 120) -> str:
    """``renderable`` as text without any control code, whatever the environment says about colours."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False, force_jupyter=False,
                      force_interactive=False, no_color=True, highlight=False, emoji=False, legacy_windows=False, soft_wrap=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in _ANSI.sub("", text).splitlines()) + "\n"


# -- displays ----------------------------------------------------------------------------------


class Dashboard:
    """The live terminal view: one rich ``Live`` showing ``render(snapshot)``.

    While it is up, nothing may write to the terminal but its console: stdout and stderr
    are redirected above the display and the root logger's stream handlers are swapped
    for a ``RichHandler`` on ``console``. Use as a context manager; ``update`` redraws.
    """

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4.0):
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, refresh_per_second=refresh_per_second,
                         transient=False, redirect_stdout=True, redirect_stderr=True)
        self._handlers: list[tuple[logging.Handler, logging.Handler]] = []
        self._started = False

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        terminal = {id(stream) for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
        self.live.start()
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and id(getattr(handler, "stream", None)) in terminal:
                rich = RichHandler(console=self.console, show_path=False, level=handler.level)
                rich.setFormatter(logging.Formatter("%(name)s: %(message)s"))
                root.removeHandler(handler)
                root.addHandler(rich)
                self._handlers.append((handler, rich))

    def update(self, snapshot: Snapshot) -> None:
        if self._started:
            self.live.update(render(snapshot), refresh=True)

    def stop(self) -> None:
        """Leave the last frame on screen and give the terminal back. Safe to call twice."""
        if not self._started:
            return
        self._started = False
        root = logging.getLogger()
        for original, rich in self._handlers:
            root.removeHandler(rich)
            root.addHandler(original)
        self._handlers.clear()
        self.live.stop()


class PlainReporter:
    """For CI logs and pipes: one progress line per update and a final summary, no control codes."""

    def __init__(self, out: TextIO | None = None, *, width: int = 120):
        self.out, self.width = out, width

    def line(self, s: Snapshot) -> str:
        tokens = " ".join(f"{role} {_per_second(s.token_rates.get(role))}" for role in ROLES)
        faults: Counter[str] = Counter()
        for e in s.endpoints:
            faults.update(e.faults)
        judge = "" if s.judge_pending is None else f" | judge pending {s.judge_pending:,} scored {s.judge_done or 0:,}"
        waits = sum(e.throttled_waits for e in s.endpoints)
        throttled = f" | throttled waits {waits:,}" if waits else ""
        workers = "".join(f" | {w.name} {w.state} {w.finished:,}/{w.assigned:,}" for w in s.workers)
        cost = f" | cost {cost_line(s.cost)}" if s.cost is not None else ""
        return (
            f"[{duration(s.elapsed)}] episodes {s.completed:,}/{s.total:,} ({s.fraction * 100:.1f}%)"
            f" active {s.active:,} queued {s.queued:,} done {s.done:,} failed {s.failed:,}"
            f" | {s.episode_rate:,.2f} ep/s ETA {duration(s.eta)} | turns {_per_second(s.turn_rate)}"
            f" | tokens out {tokens}{judge}{throttled} | errors {_faults(faults)}{cost}{workers}"
        )

    def summary(self, s: Snapshot) -> str:
        return plain_text(render(s, plain=True), width=self.width)

    def update(self, s: Snapshot) -> None:
        self._write(_ANSI.sub("", self.line(s)) + "\n")

    def finish(self, s: Snapshot) -> None:
        self._write(self.summary(s))

    def _write(self, text: str) -> None:
        out = self.out or sys.stdout
        out.write(text)
        out.flush()
