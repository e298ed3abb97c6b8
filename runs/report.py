"""Reports over a store: the ESC-Eval leaderboard per supporter (or finer groups) and judge-human agreement.

The report is data first (``Report``, a typed dataclass built by ``build_report``)
and views second (``render`` as table, markdown, JSON or CSV; ``plot`` as a PNG
bar chart). Only the whole-episode scores (``round == FINAL_ROUND``) of finished
episodes (status ``done``) count. Per dimension a row holds:

* ``value``: ESC-Eval's leaderboard number, mean(label) / 4 × 100 over valid labels 0..4;
* ``ci_low`` / ``ci_high``: its 95% normal-approximation interval (``runs.scoring``);
* ``n``: valid labels; ``n_unparsed``: labels -1 (the judge's reply held no label);
  ``n_failed``: judge calls that failed; ``n_missing``: finished episodes with no score at all.

Dimensions are shown with the paper's names, in its order: Fluency, Expression,
Empathy, Information, Skillful, Humanoid, Overall (any other dimension a custom
judge profile scored follows, under its key).

Example::

    store = Store.open("run.sqlite", readonly=True)
    report = build_report(store, by=("supporter", "language"))
    print(render(report, "md"))
    plot(report, Path("leaderboard.png"))        # needs matplotlib: pip install esc-eval[plot]
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from agents.profiles import DIMENSIONS, PAPER_NAMES
from runs.scoring import agreement, confidence_interval, leaderboard_value
from runs.store import FINAL_ROUND, Store

#: Episode columns a report can be grouped by.
GROUP_COLUMNS: tuple[str, ...] = ("supporter", "language", "category", "source", "persona")
#: Output formats of ``render``.
FORMATS: tuple[str, ...] = ("table", "md", "json", "csv")

_HEADERS = {"supporter": "Supporter", "language": "Language", "category": "Category", "source": "Source", "persona": "Persona"}
_NOTE = ("value = mean(label)/4×100 over valid labels; [95% CI]; n = valid labels; "
         "-1 = judge replies with no label; judge failed = judge calls that failed")


class ReportError(ValueError):
    """A report cannot be made from the given input (unknown group or format, bad score file, missing matplotlib)."""


@dataclass(frozen=True)
class DimensionStats:
    """One dimension of one report row; ``value``, ``ci_low`` and ``ci_high`` are ``nan`` when ``n == 0``."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    n_unparsed: int
    n_failed: int
    n_missing: int


@dataclass(frozen=True)
class ReportRow:
    """One group (``group`` maps each ``Report.by`` column to its value) and its statistics.

    ``episodes_done`` / ``episodes_failed`` / ``episodes_unfinished`` count the group's
    episodes by status (unfinished: planned or running). ``dimensions`` maps each
    dimension key of ``Report.dimensions`` to its ``DimensionStats``.
    """

    group: Mapping[str, str]
    episodes_done: int
    episodes_failed: int
    episodes_unfinished: int
    dimensions: Mapping[str, DimensionStats]

    @property
    def label(self) -> str:
        return " / ".join(self.group.values())


@dataclass(frozen=True)
class Report:
    """The leaderboard: rows in the order their groups first appear in the run's plan."""

    store: str
    by: tuple[str, ...]
    dimensions: tuple[str, ...]
    rows: tuple[ReportRow, ...] = field(default_factory=tuple)

    def name(self, dimension: str) -> str:
        """The paper's name of ``dimension`` (its key when the paper has none)."""
        return PAPER_NAMES.get(dimension, dimension)


# -- building -----------------------------------------------------------------------


def _check_by(by: Sequence[str]) -> tuple[str, ...]:
    columns = tuple(by) or ("supporter",)
    for column in columns:
        if column not in GROUP_COLUMNS:
            raise ReportError(f"cannot group by {column!r} (use any of {', '.join(GROUP_COLUMNS)})")
    if len(set(columns)) != len(columns):
        raise ReportError(f"group columns repeat: {', '.join(columns)}")
    return columns


def build_report(store: Store, *, by: Sequence[str] = ("supporter",),
                 supporter: str | None = None, language: str | None = None) -> Report:
    """The leaderboard of ``store`` grouped by the episode columns ``by``.

    Args:
        store: an open store (read-only is enough).
        by: columns of ``GROUP_COLUMNS``, outermost first; empty means ``("supporter",)``.
        supporter / language: keep only the episodes of this supporter / language.

    Raises:
        ReportError: unknown group column, or a stored label outside -1..4.
    """
    columns = _check_by(by)
    where, params = [], []
    for column, value in (("supporter", supporter), ("language", language)):
        if value is not None:
            where.append(f"{column}=?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    episodes = store.rows(f"SELECT key, status, {', '.join(columns)} FROM episodes {clause} ORDER BY ordinal", tuple(params))
    groups: dict[tuple[str, ...], dict[str, int]] = {}
    group_of: dict[str, tuple[str, ...]] = {}
    for e in episodes:
        group = tuple(str(e[c]) for c in columns)
        counts = groups.setdefault(group, {"done": 0, "failed": 0, "unfinished": 0})
        status = e["status"] if e["status"] in ("done", "failed") else "unfinished"
        counts[status] += 1
        if e["status"] == "done":
            group_of[e["key"]] = group

    labels: dict[tuple[tuple[str, ...], str], list[int]] = defaultdict(list)
    unparsed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    failed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    seen_dims: set[str] = set()
    score_rows = store.rows(
        "SELECT s.episode_key, s.dimension, s.label, s.status FROM scores s JOIN episodes e ON e.key = s.episode_key"
        " WHERE s.round=? AND e.status='done'", (FINAL_ROUND,))
    for row in score_rows:
        group = group_of.get(row["episode_key"])
        if group is None:
            continue
        dim, label = row["dimension"], row["label"]
        seen_dims.add(dim)
        slot = (group, dim)
        if row["status"] != "ok":
            failed[slot] += 1
        elif label is None or label == -1:
            unparsed[slot] += 1
        elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label <= 4:
            labels[slot].append(label)
        else:
            raise ReportError(f"{store.path}: episode {row['episode_key']!r}, dimension {row['dimension']!r}: "
                              f"stored label {label!r} is not 0..4 or -1")

    dimensions = DIMENSIONS + tuple(sorted(seen_dims - set(DIMENSIONS)))
    rows = []
    for group, counts in groups.items():
        stats = {}
        for dim in dimensions:
            valid = labels.get((group, dim), [])
            low, high = confidence_interval(valid)
            n_unparsed, n_failed = unparsed.get((group, dim), 0), failed.get((group, dim), 0)
            stats[dim] = DimensionStats(
                value=leaderboard_value(valid), ci_low=low, ci_high=high, n=len(valid), n_unparsed=n_unparsed,
                n_failed=n_failed, n_missing=counts["done"] - len(valid) - n_unparsed - n_failed,
            )
        rows.append(ReportRow(dict(zip(columns, group)), counts["done"], counts["failed"], counts["unfinished"], stats))
    return Report(str(store.path), columns, dimensions, tuple(rows))


# -- rendering ----------------------------------------------------------------------


def _num(x: float, digits: int = 1) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _cell(stats: DimensionStats, sep: str) -> str:
    if stats.n == 0:
        return "–"
    return f"{_num(stats.value)}{sep}[{_num(stats.ci_low)}, {_num(stats.ci_high)}]{sep}n={stats.n}"


def _totals(row: ReportRow) -> tuple[int, int]:
    return sum(s.n_unparsed for s in row.dimensions.values()), sum(s.n_failed for s in row.dimensions.values())


def _header(report: Report) -> list[str]:
    return ([_HEADERS[c] for c in report.by] + ["Done", "Failed"] + [report.name(d) for d in report.dimensions]
            + ["-1", "Judge failed"])


def _text_rows(report: Report, sep: str) -> list[list[str]]:
    out = []
    for row in report.rows:
        unparsed, failed = _totals(row)
        out.append(list(row.group.values()) + [str(row.episodes_done), str(row.episodes_failed)]
                   + [_cell(row.dimensions[d], sep) for d in report.dimensions] + [str(unparsed), str(failed)])
    return out


def _rich_text(title: str, header: list[str], rows: list[list[str]], caption: str, *, right_from: int, lines: bool) -> str:
    """A rich table rendered to plain text (no ANSI codes), with ``title`` above and ``caption`` below it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_lines=lines)
    for index, name in enumerate(header):
        table.add_column(name, justify="right" if index >= right_from else "left", no_wrap=index < right_from)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(80, 24 * len(header)), force_terminal=False, color_system=None,
                      no_color=True, highlight=False, emoji=False, markup=False, legacy_windows=False)
    console.print(table)
    body = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
    return f"{title}\n{body}\n{caption}\n"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(header: list[str], rows: list[list[str]], *, right_from: int) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "| " + " | ".join("---:" if i >= right_from else "---" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _json_number(x: float) -> float | None:
    return None if math.isnan(x) else x


def report_data(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (``nan`` -> ``None``)."""
    return {
        "store": report.store,
        "by": list(report.by),
        "dimensions": [{"key": d, "name": report.name(d)} for d in report.dimensions],
        "rows": [
            {
                "group": dict(row.group),
                "episodes": {"done": row.episodes_done, "failed": row.episodes_failed, "unfinished": row.episodes_unfinished},
                "scores": {
                    d: {"name": report.name(d), "value": _json_number(s.value), "ci_low": _json_number(s.ci_low),
                        "ci_high": _json_number(s.ci_high), "n": s.n, "n_unparsed": s.n_unparsed, "n_failed": s.n_failed,
                        "n_missing": s.n_missing}
                    for d, s in row.dimensions.items()
                },
            }
            for row in report.rows
        ],
    }


def _csv_number(x: float) -> str:
    return "" if math.isnan(x) else repr(x)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def render(report: Report, fmt: str) -> str:
    """The report as text: ``table`` (plain text, no ANSI codes), ``md`` (GitHub table), ``json`` or ``csv``.

    ``csv`` has one line per row: the group columns, ``done``, ``failed``, ``unfinished``,
    then per dimension ``{Name}``, ``{Name}_ci_low``, ``{Name}_ci_high``, ``{Name}_n``,
    ``{Name}_unparsed``, ``{Name}_failed``, ``{Name}_missing`` (empty where undefined).
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
    if fmt == "json":
        return json.dumps(report_data(report), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        header = list(report.by) + ["done", "failed", "unfinished"]
        for d in report.dimensions:
            name = report.name(d)
            header += [name] + [f"{name}_{part}" for part in ("ci_low", "ci_high", "n", "unparsed", "failed", "missing")]
        rows = []
        for row in report.rows:
            cells: list[Any] = list(row.group.values()) + [row.episodes_done, row.episodes_failed, row.episodes_unfinished]
            for d in report.dimensions:
                s = row.dimensions[d]
                cells += [_csv_number(s.value), _csv_number(s.ci_low), _csv_number(s.ci_high), s.n, s.n_unparsed, s.n_failed, s.n_missing]
            rows.append(cells)
        return _csv(header, rows)
    header = _header(report)
    if fmt == "md":
        return _markdown(header, _text_rows(report, " "), right_from=len(report.by))
    if not report.rows:
        return f"esc-eval report: {report.store}\nno episodes\n"
    return _rich_text(f"esc-eval report: {report.store}", header, _text_rows(report, "\n"), _NOTE, right_from=len(report.by), lines=True)


# -- plotting -----------------------------------------------------------------------


def plot(report: Report, path: Path) -> Path:
    """Write a grouped bar chart (one bar per row for each dimension, 95% CI whiskers) as a PNG.

    Raises:
        ReportError: matplotlib is not installed (``pip install esc-eval[plot]``), or nothing to plot.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install esc-eval[plot]") from None
    if not report.rows:
        raise ReportError(f"{report.store}: no episodes to plot")
    names = [report.name(d) for d in report.dimensions]
    count = len(report.rows)
    width = 0.8 / count
    fig = Figure(figsize=(min(24.0, max(8.0, 1.2 * len(names) * max(1, count / 3))), 4.8), layout="constrained")
    ax = fig.add_subplot()
    for index, row in enumerate(report.rows):
        shown = [(i, row.dimensions[d]) for i, d in enumerate(report.dimensions) if row.dimensions[d].n]
        positions = [i - 0.4 + width * (index + 0.5) for i, _ in shown]
        heights = [s.value for _, s in shown]
        below = [s.value - max(0.0, s.ci_low) for _, s in shown]
        above = [min(100.0, s.ci_high) - s.value for _, s in shown]
        ax.bar(positions, heights, width, yerr=[below, above], capsize=2, label=row.label, color=f"C{index % 10}",
               error_kw={"linewidth": 0.8})
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("mean score / 4 × 100")
    ax.set_ylim(0, 105)
    ax.set_title(f"ESC-Eval dimensions by {', '.join(report.by)} (95% CI)")
    fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


# -- judge-human agreement ----------------------------------------------------------


def _choose(store: Store, supporter: str | None, language: str | None) -> tuple[str, str]:
    pairs = [(r["supporter"], r["language"]) for r in store.rows(
        "SELECT DISTINCT supporter, language FROM episodes WHERE status='done' ORDER BY supporter, language")]
    matching = [p for p in pairs if (supporter is None or p[0] == supporter) and (language is None or p[1] == language)]
    if not matching:
        have = ", ".join(f"{s} ({lang})" for s, lang in pairs) or "none"
        wanted = " ".join(filter(None, [f"supporter {supporter!r}" if supporter else "", f"language {language!r}" if language else ""]))
        raise ReportError(f"{store.path}: no finished episodes{' of ' + wanted if wanted else ''} (finished: {have})")
    if len(matching) > 1:
        options = ", ".join(f"{s} ({lang})" for s, lang in matching)
        raise ReportError(f"{store.path}: holds several supporters or languages ({options}); choose one with supporter and language")
    return matching[0]


def judge_labels(store: Store, supporter: str, language: str) -> dict[str, dict[str, int | None]]:
    """Card index (as text) -> {dimension: final judge label, ``None`` where the judge call failed}."""
    episodes = store.rows("SELECT key, card_index FROM episodes WHERE status='done' AND supporter=? AND language=? ORDER BY ordinal",
                          (supporter, language))
    index_of: dict[str, str] = {}
    for e in episodes:
        card = str(e["card_index"])
        if card in index_of.values():
            raise ReportError(f"{store.path}: supporter {supporter!r} ({language}) has several episodes of card {card} "
                              "(personas or repeats); agreement needs one episode per card")
        index_of[e["key"]] = card
    labels: dict[str, dict[str, int | None]] = {index_of[e["key"]]: {} for e in episodes}
    for row in store.rows("SELECT episode_key, dimension, label, status FROM scores WHERE round=?", (FINAL_ROUND,)):
        card = index_of.get(row["episode_key"])
        if card is not None:
            labels[card][row["dimension"]] = row["label"] if row["status"] == "ok" else None
    return labels


def agreement_report(store: Store, human_scores_path: Path, *, supporter: str | None = None,
                     language: str | None = None) -> dict[str, Any]:
    """ESC-Eval Table 4: per dimension, how often the store's judge agrees with human labels.

    The human file is an ESC-Eval score file (``{"0": {"fluency": 3, ...}, ...}``, keyed by
    card index); it is compared with the final judge labels of the finished episodes of one
    supporter and language (card index to card index). Labels -1 and failed judge calls are
    left out. ``acc`` is the exact-match rate, ``acc_soft`` the rate of ``|judge - human| <= 1``.

    Returns:
        ``{"store", "human", "supporter", "language", "cards": {"matched", "only_human",
        "only_judge"}, "dimensions": {key: {"name", "acc", "acc_soft", "n"}}, "average":
        {"acc", "acc_soft"}}`` in the paper's dimension order; rates are ``nan`` when ``n == 0``.

    Raises:
        ReportError: a bad human score file, or the store holds several supporters or
            languages and ``supporter`` / ``language`` do not choose one.
    """
    from runs.annotate import confusion_matrix
    from runs.importing import ResultFileError, read_score_file

    try:
        human = read_score_file(Path(human_scores_path))
    except ResultFileError as exc:
        raise ReportError(str(exc)) from None
    supporter, language = _choose(store, supporter, language)
    judge = judge_labels(store, supporter, language)
    computed = agreement(judge, human)
    order = [d for d in DIMENSIONS if d in computed] + [d for d in computed if d not in DIMENSIONS]
    dimensions = {d: {"name": PAPER_NAMES.get(d, d), **computed[d]} for d in order}
    scored = [v for v in dimensions.values() if v["n"]]
    average = {
        rate: (sum(float(v[rate]) for v in scored) / len(scored)) if scored else math.nan for rate in ("acc", "acc_soft")
    }
    return {
        "store": str(store.path),
        "human": str(human_scores_path),
        "supporter": supporter,
        "language": language,
        "cards": {"matched": sum(1 for k in judge if k in human), "only_human": sum(1 for k in human if k not in judge),
                  "only_judge": sum(1 for k in judge if k not in human)},
        "dimensions": dimensions,
        "average": average,
        "confusion": {d: confusion_matrix(judge, human, d) for d in order},
    }


def render_agreement(result: Mapping[str, Any], fmt: str) -> str:
    """An ``agreement_report`` result as ``table``, ``md``, ``json`` or ``csv`` (rates as fractions in json/csv)."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
    dims = result["dimensions"]
    if fmt == "json":
        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, Mapping):
                return {k: clean(v) for k, v in value.items()}
            return value
        return json.dumps(clean(result), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        rows = [[d, v["name"], _csv_number(float(v["acc"])), _csv_number(float(v["acc_soft"])), v["n"]] for d, v in dims.items()]
        return _csv(["dimension", "name", "acc", "acc_soft", "n"], rows)

    def pct(x: Any) -> str:
        return _num(100 * float(x)) + ("" if math.isnan(float(x)) else "%")

    header = ["Metric"] + [v["name"] for v in dims.values()] + ["Average"]
    rows = [
        ["ACC"] + [pct(v["acc"]) for v in dims.values()] + [pct(result["average"]["acc"])],
        ["ACC_soft"] + [pct(v["acc_soft"]) for v in dims.values()] + [pct(result["average"]["acc_soft"])],
        ["n"] + [str(v["n"]) for v in dims.values()] + [""],
    ]
    if result.get("alpha"):  # human labels from the store: inter-annotator agreement too
        def alpha(x: Any) -> str:
            return _num(float(x), 3)

        rows += [["α (annotators)"] + [alpha(result["alpha"][d]["alpha"]) for d in dims] + [""],
                 ["items ≥2 labels"] + [str(result["alpha"][d]["items"]) for d in dims] + [""]]
    cards = result["cards"]
    if result.get("alpha"):
        caption_extra = (" Human label per item: the annotators' majority, ties to the label nearest their mean. "
                         "α = Krippendorff's alpha (ordinal) between annotators, over items with two labels or more.")
    else:
        caption_extra = ""
    title = (f"judge-human agreement: {result['supporter']} ({result['language']}) in {result['store']} vs {result['human']}")
    caption = (f"{cards['matched']} cards in both; {cards['only_human']} only in the human file, {cards['only_judge']} only in the store. "
               "ACC = exact match, ACC_soft = |judge - human| <= 1; -1 labels and failed judge calls left out" + caption_extra)
    if fmt == "md":
        return f"**{_md_escape(title)}**\n\n" + _markdown(header, rows, right_from=1) + f"\n{_md_escape(caption)}\n"
    return _rich_text(title, header, rows, caption, right_from=1, lines=False)


# -- the command --------------------------------------------------------------------


def _split_by(by: Sequence[str]) -> list[str]:
    return [part.strip() for item in by for part in item.split(",") if part.strip()]


def report_command(store_path: Path, fmt: str, plot_path: Path | None, by: list[str], agreement: Path | bool | None,
                   supporter: str | None, language: str | None) -> str:
    """``esc-eval report STORE``: returns the text to print.

    Args:
        store_path: the run's store (opened read-only).
        fmt: ``table``, ``md``, ``json`` or ``csv``.
        plot_path: where to write the leaderboard chart (PNG), or ``None``.
        by: group columns; items may be comma-separated (``["supporter,language"]``); empty: supporter.
        agreement: a human score file, or ``True`` for the store's own annotations
            (``runs.annotate.store_agreement``: also inter-annotator alpha); when given, the
            output is the judge-human agreement (in ``fmt``) instead of the leaderboard, and
            ``plot_path`` gets the confusion matrices instead of the leaderboard chart.
        supporter / language: keep only these episodes (and choose the pair for agreement).

    Raises:
        ReportError: bad format, group column, human score file, or missing matplotlib.
        StoreError: the store cannot be opened.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
    columns = _check_by(_split_by(by))
    store = Store.open(store_path, readonly=True)
    try:
        report = build_report(store, by=columns, supporter=supporter, language=language)
        if agreement is True:
            from runs.annotate import store_agreement

            result = store_agreement(store, supporter=supporter, language=language)
        elif agreement is not None:
            result = agreement_report(store, Path(agreement), supporter=supporter, language=language)
        else:
            result = None
    finally:
        store.close_sync()
    if plot_path is not None and result is not None:
        from runs.annotate import plot_confusion

        plot_confusion(result, plot_path)
    elif plot_path is not None:
        plot(report, plot_path)
    text = render_agreement(result, fmt) if result is not None else render(report, fmt)
    if plot_path is not None and fmt in ("table", "md"):
        text += f"\nplot: {plot_path}\n"
    return text
