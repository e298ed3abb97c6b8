"""``esc-eval report``: the leaderboard or the judge-human agreement of a store, as text and plots.

The work is done by one module per idea; this one opens the store, calls them and
returns the text to print. Re-exported here, as the report's public API:

* ``esc_eval.runs.analysis.leaderboard``: ``build_report`` -> ``Report`` (data first), ``ReportError``;
* ``esc_eval.runs.analysis.render``: ``render`` / ``render_agreement`` (table, md, json, csv);
* ``esc_eval.runs.analysis.plots``: ``plot``, ``plot_comparisons``, ``plot_confusion`` (PNG);
* ``esc_eval.runs.analysis.agreement``: ``agreement_report`` (a human score file), ``store_agreement``
  (the store's annotations);
* ``esc_eval.runs.analysis.cost``: ``report_cost`` (tokens × the store's prices; ``render(report, fmt, cost)``).

Example::

    with Store.open("run.sqlite", readonly=True) as store:
        report = build_report(store, by=("supporter", "language"))
    print(render(report, "md"))
    plot(report, Path("leaderboard.png"))        # needs matplotlib: pip install esc-eval[plot]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from esc_eval.runs.analysis.agreement import agreement_report, store_agreement
from esc_eval.runs.analysis.cost import report_cost
from esc_eval.runs.analysis.leaderboard import (
    FORMATS,
    GROUP_COLUMNS,
    DimensionStats,
    Report,
    ReportError,
    ReportRow,
    build_report,
    check_by,
    several_seekers,
)
from esc_eval.runs.analysis.plots import comparison_plot_path, plot, plot_comparisons, plot_confusion
from esc_eval.runs.analysis.render import render, render_agreement, report_data
from esc_eval.runs.garbage import no_collections
from esc_eval.runs.store import Store

__all__ = [
    "FORMATS", "GROUP_COLUMNS", "DimensionStats", "Report", "ReportError", "ReportRow", "agreement_report", "build_report",
    "comparison_plot_path", "plot", "plot_comparisons", "plot_confusion", "render", "render_agreement", "report_command",
    "report_data", "store_agreement",
]


def _split_by(by: Sequence[str]) -> list[str]:
    return [part.strip() for item in by for part in item.split(",") if part.strip()]


def report_command(store_path: Path, fmt: str, plot_path: Path | None, by: list[str], agreement: Path | bool | None,
                   supporter: str | None, language: str | None, *, compare: bool = False, corrected: bool = False,
                   power_delta: float | None = None) -> str:
    """``esc-eval report STORE``: returns the text to print.

    Args:
        store_path: the run's store (opened read-only).
        fmt: ``table``, ``md``, ``json`` or ``csv``.
        plot_path: where to write the leaderboard chart (PNG), or ``None``; with ``compare``
            the forest plot goes next to it (``comparison_plot_path``).
        by: group columns; items may be comma-separated (``["supporter,language"]``); empty: supporter
            (seeker, supporter when several seekers played the store: one section per seeker).
        agreement: a human score file, or ``True`` for the store's own annotations
            (``store_agreement``: also inter-annotator alpha); when given, the
            output is the judge-human agreement (in ``fmt``) instead of the leaderboard, and
            ``plot_path`` gets the confusion matrices instead of the leaderboard chart.
        supporter / language: keep only these episodes (and choose the pair for agreement).
        compare / corrected / power_delta: see ``build_report``.

    Raises:
        ReportError: bad format, group column, human score file, power delta, or missing matplotlib.
        StoreError: the store cannot be opened.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
    if power_delta is not None and not (0 < power_delta <= 100):
        raise ReportError(f"--power: the difference to detect must be in (0, 100] points, got {power_delta:g}")
    columns = check_by(_split_by(by))
    with Store.open(store_path, readonly=True) as store, no_collections():   # a large store's rows: no cycles to find
        if not _split_by(by) and several_seekers(store):
            columns = ("seeker", "supporter")
        report = build_report(store, by=columns, supporter=supporter, language=language, compare=compare,
                              corrected=corrected, power_delta=power_delta)
        cost = report_cost(store, report, supporter=supporter, language=language)
        from esc_eval.runs.analysis.safety import build_safety, with_safety  # numpy, statsmodels: only when a report is made

        safety = build_safety(store, by=columns, supporter=supporter, language=language)
        safety_humans = None
        if safety is not None and (corrected or agreement is True):
            from esc_eval.runs.analysis import safety_agreement  # human answers to the safety items, apart from the labels

            if corrected:
                safety_agreement.correct(safety, store)
            if agreement is True:
                safety_humans = safety_agreement.safety_agreement(store, supporter=supporter, language=language)
        if agreement is True and safety_humans is not None and not store.annotations():
            result = None  # only safety items were labelled
        elif agreement is True:
            result = store_agreement(store, supporter=supporter, language=language)
        elif isinstance(agreement, Path):
            result = agreement_report(store, agreement, supporter=supporter, language=language)
        else:
            result = None
    plots = []
    if plot_path is not None and result is not None:
        plots.append(plot_confusion(result, plot_path))
    elif plot_path is not None:
        plots.append(plot(report, plot_path))
        if compare and any(not math.isnan(c.diff) for c in report.comparisons or ()):
            plots.append(plot_comparisons(report, comparison_plot_path(plot_path)))
    if safety_humans is not None:
        from esc_eval.runs.analysis.safety_agreement import with_safety_agreement

        text = with_safety_agreement(render_agreement(result, fmt) if result is not None else None, safety_humans, fmt)
    else:
        text = render_agreement(result, fmt) if result is not None else with_safety(render(report, fmt, cost), safety, fmt)
    if plots and fmt in ("table", "md"):
        text += "".join(f"\nplot: {path}" for path in plots) + "\n"
    return text
