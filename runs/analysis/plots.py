"""PNG views of reports (matplotlib, ``pip install esc-eval[plot]``): the leaderboard, the paired
comparisons (a forest plot) and the judge-human confusion matrices."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esc_eval.agents.judge.profiles import PAPER_NAMES
from esc_eval.runs.analysis.leaderboard import Report, ReportError
from esc_eval.runs.analysis.render import comparison_p_texts, number_text


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install esc-eval[plot]") from None
    return Figure


def _save(fig: Any, path: Path, *, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def plot(report: Report, path: Path) -> Path:
    """Write the leaderboard as a PNG: per dimension, each row's mean (labelled with its number) and 95% CI.

    The points and whiskers are the table's ``mean`` (each card counted once), ``ci_low`` and
    ``ci_high``; a hollow marker flags fewer than ``SMALL_N`` cards, a cross ``no_spread``.

    Raises:
        ReportError: matplotlib is not installed (``pip install esc-eval[plot]``), or nothing to plot.
    """
    from esc_eval.runs.analysis.statistics import SMALL_N

    Figure = _figure()
    if not report.rows:
        raise ReportError(f"{report.store}: no episodes to plot")
    names = [report.name(d) for d in report.dimensions]
    count = len(report.rows)
    width = 0.8 / count
    fig = Figure(figsize=(min(24.0, max(8.0, 1.2 * len(names) * max(1, count / 3))), 4.8), layout="constrained")
    ax = fig.add_subplot()
    for index, row in enumerate(report.rows):
        shown = [(i, row.dimensions[d]) for i, d in enumerate(report.dimensions) if row.dimensions[d].n]
        color = f"C{index % 10}"
        for i, s in shown:
            x = i - 0.4 + width * (index + 0.5)
            if not math.isnan(s.ci_low):
                ax.vlines(x, s.ci_low, s.ci_high, color=color, linewidth=1.5)
            ax.plot([x], [s.value], "X" if s.no_spread else "o", color=color, markerfacecolor="white" if s.small else color,
                    markersize=5)
            ax.annotate(number_text(s.value), (x, s.value), xytext=(3, 0), textcoords="offset points", fontsize=6, va="center")
        ax.plot([], [], "o", color=color, label=row.label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("mean over cards of the card's mean label × 25")
    ax.set_ylim(0, 100)
    ax.set_title(f"ESC-Eval dimensions by {', '.join(report.by)} (95% t CI over card means; hollow: < {SMALL_N} cards; "
                 "X: no spread)")
    fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    return _save(fig, path)


def plot_comparisons(report: Report, path: Path) -> Path:
    """Write a forest plot of the paired differences (a − b, 95% CI; filled: differ after Holm) as a PNG.

    Raises:
        ReportError: matplotlib is missing, or the report has no comparisons (one supporter).
    """
    Figure = _figure()
    shown = [c for c in report.comparisons or () if not math.isnan(c.diff)]
    if not shown:
        raise ReportError(f"{report.store}: no pair of supporters to compare")
    fig = Figure(figsize=(8.0, max(2.5, 0.28 * len(shown) + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    for y, c in enumerate(reversed(shown)):
        color = "C3" if c.significant else "C0"
        if not math.isnan(c.ci_low):
            ax.hlines(y, c.ci_low, c.ci_high, color=color, linewidth=1.5)
        ax.plot([c.diff], [y], "s", color=color, markerfacecolor=color if c.significant else "white")
        flag = f"  ({c.flags[-1].replace('_', ' ')})" if c.flags else ""
        ax.annotate(f"{number_text(c.diff)}  p={comparison_p_texts(c)[1]}{flag}", (c.diff, y), xytext=(0, 5), textcoords="offset points", fontsize=6,
                    ha="center")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-0.8, len(shown) - 0.2)
    ax.set_yticks(range(len(shown)), [f"{c.a} − {c.b}: {report.name(c.dimension)}" for c in reversed(shown)], fontsize=7)
    ax.set_xlabel("difference in points (a − b) over shared cards, 95% CI inverting the sign-flip test")
    ax.set_title("paired comparisons (filled: differ after Holm, α = 0.05)")
    return _save(fig, path)


def comparison_plot_path(path: Path) -> Path:
    """Where ``--compare --plot PNG`` writes the forest plot: next to PNG, ``-compare`` added to its name."""
    path = Path(path)
    return path.with_name(f"{path.stem}-compare{path.suffix or '.png'}")


def plot_confusion(result: Mapping[str, Any], path: Path) -> Path:
    """One 5×5 heat map per dimension (rows human, columns judge), as a PNG."""
    Figure = _figure()
    matrices = result.get("confusion") or {}
    if not matrices:
        raise ReportError("no confusion matrices to plot")
    count = len(matrices)
    fig = Figure(figsize=(3.0 * count + 0.5, 3.4), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, (dim, matrix) in zip(axes, matrices.items()):
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="black")
        stats = result["dimensions"].get(dim, {})
        acc = stats.get("acc", math.nan)
        ax.set_title(f"{PAPER_NAMES.get(dim, dim)}" + ("" if math.isnan(acc) else f"\nACC {acc:.0%}"), fontsize=9)
        ax.set_xticks(range(5))
        ax.set_yticks(range(5))
        ax.set_xlabel("judge")
        ax.set_ylabel("human")
    return _save(fig, path, dpi=110)
