"""Reports over a store: the ESC-Eval leaderboard per supporter (or finer groups) and judge-human agreement.

The report is data first (``Report``, a typed dataclass built by ``build_report``)
and views second (``render`` as table, markdown, JSON or CSV; ``plot`` as a PNG of
means and intervals, ``plot_comparisons`` as a forest plot). Only the whole-episode scores (``round == FINAL_ROUND``) of finished
episodes (status ``done``) count. Per dimension a row holds:

* ``value`` (= ``mean``): ESC-Eval's leaderboard number, mean(label) / 4 × 100, as the mean
  over episodes of each episode's mean valid label (one label unless ``[judge] samples = k``);
* ``ci_low`` / ``ci_high``: its 95% bootstrap interval over role cards, inside [0, 100];
  ``se_clustered``: its card-clustered standard error; ``n_episodes`` / ``n_cards``; rows with
  fewer than 10 cards are marked (``runs.analysis.statistics``; docs/statistics.md);
* ``n``: valid labels; ``n_unparsed``: labels -1 (the judge's reply held no label);
  ``n_failed``: judge calls that failed; ``n_missing``: labels a finished episode lacks.

``compare`` adds paired comparisons between supporters and rank intervals
(``runs.analysis.comparisons``), ``corrected`` prediction-powered means from human labels,
``power_delta`` the cards needed to detect a difference.

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
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from agents.judge.profiles import DIMENSIONS, PAPER_NAMES
from runs.analysis.scoring import agreement, leaderboard_value
from runs.store import Store

if TYPE_CHECKING:  # numpy and scipy load when a report is built, not whenever the CLI starts
    from runs.analysis.comparisons import CardTable, PairComparison, PowerRow, Rank
    from runs.analysis.statistics import JudgeNoise, PPIEstimate

#: Episode columns a report can be grouped by.
GROUP_COLUMNS: tuple[str, ...] = ("supporter", "language", "category", "source", "persona")
#: Output formats of ``render``.
FORMATS: tuple[str, ...] = ("table", "md", "json", "csv")

_HEADERS = {"supporter": "Supporter", "language": "Language", "category": "Category", "source": "Source", "persona": "Persona"}


class ReportError(ValueError):
    """A report cannot be made from the given input (unknown group or format, bad score file, missing matplotlib)."""


@dataclass(frozen=True)
class DimensionStats:
    """One dimension of one report row; means and intervals are ``nan`` when undefined.

    ``value`` (= ``mean``) is the mean over the row's scored episodes of each episode's
    mean label × 25 (with ``[judge] samples = k`` an episode has k labels); ``ci_low`` /
    ``ci_high`` its 95% bootstrap interval over role cards, ``se_clustered`` its
    card-clustered standard error (``runs.analysis.statistics.cluster_mean``). ``small`` marks
    rows with fewer than ``SMALL_N`` cards. ``noise`` splits label variance into judge
    and episode parts (judge samples only); ``corrected`` is the prediction-powered
    estimate from human labels (``report --corrected`` only).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    n_unparsed: int
    n_failed: int
    n_missing: int
    se_clustered: float = math.nan
    n_episodes: int = 0
    n_cards: int = 0
    noise: JudgeNoise | None = None
    corrected: PPIEstimate | None = None

    @property
    def mean(self) -> float:
        return self.value

    @property
    def small(self) -> bool:
        from runs.analysis.statistics import SMALL_N

        return self.n_cards < SMALL_N


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
    """The leaderboard: rows in the order their groups first appear in the run's plan.

    ``comparisons`` and ``ranks`` (``--compare``) and ``power`` (``--power DELTA``) are
    between supporters, over all the report's episodes whatever ``by`` is.
    """

    store: str
    by: tuple[str, ...]
    dimensions: tuple[str, ...]
    rows: tuple[ReportRow, ...] = field(default_factory=tuple)
    samples: int = 1
    corrected: bool = False
    comparisons: tuple[PairComparison, ...] | None = None
    ranks: Mapping[str, Sequence[Rank]] | None = None
    power: tuple[PowerRow, ...] | None = None
    delta: float | None = None

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


def _human_values(store: Store) -> dict[tuple[str, str], float]:
    """(episode, dimension) -> the annotators' mean label × 25."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in store.annotations():
        found[(row["episode_key"], row["dimension"])].append(row["label"])
    return {slot: sum(labels) / len(labels) * 25 for slot, labels in found.items()}


def build_report(store: Store, *, by: Sequence[str] = ("supporter",), supporter: str | None = None,
                 language: str | None = None, compare: bool = False, corrected: bool = False,
                 power_delta: float | None = None) -> Report:
    """The leaderboard of ``store`` grouped by the episode columns ``by``.

    Args:
        store: an open store (read-only is enough).
        by: columns of ``GROUP_COLUMNS``, outermost first; empty means ``("supporter",)``.
        supporter / language: keep only the episodes of this supporter / language.
        compare: also compare every pair of supporters (``Report.comparisons``, ``Report.ranks``).
        corrected: also the prediction-powered estimate from the store's human labels.
        power_delta: also plan for detecting a difference of this many points (``Report.power``).

    Raises:
        ReportError: unknown group column, or a stored label outside -1..4.
    """
    import numpy as np

    from runs.analysis.comparisons import compare as compare_supporters
    from runs.analysis.comparisons import power as plan_power
    from runs.analysis.comparisons import ranks as supporter_ranks
    from runs.analysis.statistics import cluster_mean, judge_noise, ppi_mean

    columns = _check_by(by)
    where, params = [], []
    for column, value in (("supporter", supporter), ("language", language)):
        if value is not None:
            where.append(f"{column}=?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    wanted = ", ".join(dict.fromkeys(("supporter", "language", "card_index") + columns))
    episodes = store.rows(f"SELECT key, status, {wanted} FROM episodes {clause} ORDER BY ordinal", tuple(params))
    groups: dict[tuple[str, ...], dict[str, int]] = {}
    done: dict[str, tuple[tuple[str, ...], str, str]] = {}       # key -> (group, card, supporter)
    for e in episodes:
        group = tuple(str(e[c]) for c in columns)
        counts = groups.setdefault(group, {"done": 0, "failed": 0, "unfinished": 0})
        status = e["status"] if e["status"] in ("done", "failed") else "unfinished"
        counts[status] += 1
        if e["status"] == "done":
            done[e["key"]] = (group, f"{e['language']}:{e['card_index']}", e["supporter"])

    labels: dict[tuple[str, str], list[int]] = defaultdict(list)   # (episode, dimension) -> valid labels
    unparsed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    failed: dict[tuple[tuple[str, ...], str], int] = defaultdict(int)
    seen_dims: set[str] = set()
    samples = 1
    for row in store.final_scores():
        if row["episode_key"] not in done:
            continue
        group = done[row["episode_key"]][0]
        dim, label = row["dimension"], row["label"]
        seen_dims.add(dim)
        samples = max(samples, row["sample"] + 1)
        slot = (group, dim)
        if row["status"] != "ok":
            failed[slot] += 1
        elif label is None or label == -1:
            unparsed[slot] += 1
        elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label <= 4:
            labels[(row["episode_key"], dim)].append(label)
        else:
            raise ReportError(f"{store.path}: episode {row['episode_key']!r}, dimension {row['dimension']!r}: "
                              f"stored label {label!r} is not 0..4 or -1")

    dimensions = DIMENSIONS + tuple(sorted(seen_dims - set(DIMENSIONS)))
    human = _human_values(store) if corrected else {}
    per_group: dict[tuple[tuple[str, ...], str], list[str]] = defaultdict(list)    # scored episodes, plan order
    for (key, dim) in labels:
        per_group[(done[key][0], dim)].append(key)
    rows = []
    for group, counts in groups.items():
        stats = {}
        for dim in dimensions:
            keys = per_group.get((group, dim), [])
            values = np.array([leaderboard_value(labels[(k, dim)]) for k in keys])
            estimate = cluster_mean(values, np.array([done[k][1] for k in keys]))
            n_valid = sum(len(labels[(k, dim)]) for k in keys)
            n_unparsed, n_failed = unparsed.get((group, dim), 0), failed.get((group, dim), 0)
            noise = judge_noise([[x * 25 for x in labels[(k, dim)]] for k in keys]) if samples > 1 else None
            ppi = None
            if corrected:
                marked = [k for k in keys if (k, dim) in human]
                ppi = ppi_mean(np.array([leaderboard_value(labels[(k, dim)]) for k in keys if (k, dim) not in human]),
                               np.array([leaderboard_value(labels[(k, dim)]) for k in marked]),
                               np.array([human[(k, dim)] for k in marked]))
            stats[dim] = DimensionStats(
                value=estimate.mean, ci_low=estimate.ci_low, ci_high=estimate.ci_high, n=n_valid, n_unparsed=n_unparsed,
                n_failed=n_failed, n_missing=counts["done"] * samples - n_valid - n_unparsed - n_failed,
                se_clustered=estimate.se_clustered, n_episodes=estimate.n_episodes, n_cards=estimate.n_cards,
                noise=noise, corrected=ppi,
            )
        rows.append(ReportRow(dict(zip(columns, group)), counts["done"], counts["failed"], counts["unfinished"], stats))

    comparisons = ranked = planned = None
    if compare or power_delta is not None:
        supporters = list(dict.fromkeys(e["supporter"] for e in episodes))
        cards = _card_table(labels, done)
        if compare:
            comparisons = tuple(compare_supporters(cards, supporters, dimensions))
            ranked = supporter_ranks(cards, supporters, dimensions)
        if power_delta is not None:
            planned = tuple(plan_power(cards, supporters, dimensions, power_delta))
    return Report(str(store.path), columns, dimensions, tuple(rows), samples, corrected, comparisons, ranked, planned,
                  power_delta)


def _card_table(labels: Mapping[tuple[str, str], list[int]],
                done: Mapping[str, tuple[tuple[str, ...], str, str]]) -> CardTable:
    """dimension -> supporter -> card -> mean over the supporter's episodes on the card of their values."""
    sums: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for (key, dim), found in labels.items():
        _, card, supporter = done[key]
        sums[dim][supporter][card].append(leaderboard_value(found))
    return {d: {s: {c: sum(v) / len(v) for c, v in cards.items()} for s, cards in by_s.items()} for d, by_s in sums.items()}


# -- rendering ----------------------------------------------------------------------


def _num(x: float, digits: int = 1) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _cell(stats: DimensionStats, sep: str) -> str:
    if stats.n == 0:
        return "–"
    interval = f"[{_num(stats.ci_low)}, {_num(stats.ci_high)}]" if not math.isnan(stats.ci_low) else "[no CI]"
    text = f"{_num(stats.value)}{sep}{interval}{sep}n={stats.n} · {stats.n_cards} cards{'*' if stats.small else ''}"
    if stats.noise is not None and not math.isnan(stats.noise.judge_share):
        text += f"{sep}judge {100 * stats.noise.judge_share:.0f}% of var"
    if stats.corrected is not None:
        c = stats.corrected
        text += (f"{sep}PPI {_num(c.mean)} [{_num(c.ci_low)}, {_num(c.ci_high)}] h={c.n_labelled}" if c.n_labelled >= 2
                 else f"{sep}PPI – h={c.n_labelled}")
    return text


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


def _p(x: float) -> str:
    return "–" if math.isnan(x) else ("<0.001" if x < 0.001 else f"{x:.3f}")


def _comparison_rows(report: Report) -> list[list[str]]:
    return [[f"{c.a} − {c.b}", report.name(c.dimension), _num(c.diff), f"[{_num(c.ci_low)}, {_num(c.ci_high)}]", _p(c.p_value),
             _p(c.p_holm) + (" *" if c.significant else ""), f"{c.wins}/{c.ties}/{c.losses}", str(c.n_cards)]
            for c in report.comparisons or ()]


_COMPARISON_HEADER = ["Pair", "Dimension", "Diff", "95% CI", "p", "p (Holm)", "W/T/L", "Cards"]


def _rank_lines(report: Report) -> list[str]:
    """Per dimension: supporters best first with their rank intervals, then the pairs that differ."""
    lines = []
    for d, ranked in (report.ranks or {}).items():
        order = ", ".join(f"{r.supporter} {_num(r.mean)} (rank {r.rank}, {r.low}–{r.high})" for r in ranked)
        differ = [f"{c.a} {'>' if c.diff > 0 else '<'} {c.b}" for c in report.comparisons or () if c.dimension == d and c.significant]
        lines.append(f"{report.name(d)}: {order}; differ: {', '.join(differ) if differ else 'none'}")
    return lines


_POWER_HEADER = ["Pair", "Dimension", "SD of diff", "Cards", "Cards needed", "Detectable now"]


def _power_rows(report: Report) -> list[list[str]]:
    def cards(x: float) -> str:
        return "–" if math.isnan(x) else ("never" if math.isinf(x) else str(int(x)))

    return [[f"{p.a} − {p.b}" if p.b else f"{p.a} vs a like one", report.name(p.dimension), _num(p.sd_diff), str(p.n_cards),
             cards(p.cards_needed), _num(p.min_detectable)] for p in report.power or ()]


def _note(report: Report) -> str:
    from runs.analysis.statistics import RESAMPLES, SMALL_N

    note = (f"mean of episode labels ×25; [95% CI]: bootstrap over role cards ({RESAMPLES} resamples, seeded), within [0, 100]; "
            f"n = valid labels; * fewer than {SMALL_N} cards: the interval is too narrow to trust; [no CI]: one card. "
            "-1 = judge replies with no label; judge failed = judge calls that failed")
    if report.samples > 1:
        note += f"; {report.samples} judge samples per episode: 'judge N% of var' = judge noise share of one label's variance"
    if report.corrected:
        note += "; PPI = prediction-powered mean from human labels on h episodes (docs/statistics.md)"
    return note


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
    data: dict[str, Any] = {
        "store": report.store,
        "by": list(report.by),
        "dimensions": [{"key": d, "name": report.name(d)} for d in report.dimensions],
        "judge_samples": report.samples,
        "rows": [
            {
                "group": dict(row.group),
                "episodes": {"done": row.episodes_done, "failed": row.episodes_failed, "unfinished": row.episodes_unfinished},
                "scores": {d: _dimension_data(report.name(d), s) for d, s in row.dimensions.items()},
            }
            for row in report.rows
        ],
    }
    if report.comparisons is not None:
        data["comparisons"] = [{"a": c.a, "b": c.b, "dimension": c.dimension, "diff": _json_number(c.diff),
                                "ci_low": _json_number(c.ci_low), "ci_high": _json_number(c.ci_high),
                                "p_value": _json_number(c.p_value), "p_holm": _json_number(c.p_holm), "wins": c.wins,
                                "ties": c.ties, "losses": c.losses, "n_cards": c.n_cards} for c in report.comparisons]
        data["ranks"] = {d: [{"supporter": r.supporter, "mean": r.mean, "rank": r.rank, "rank_low": r.low, "rank_high": r.high}
                             for r in ranked] for d, ranked in (report.ranks or {}).items()}
    if report.power is not None:
        data["power"] = {"delta": report.delta, "power": 0.8, "alpha": 0.05, "rows": [
            {"a": p.a, "b": p.b or None, "dimension": p.dimension, "sd_diff": _json_number(p.sd_diff), "n_cards": p.n_cards,
             "cards_needed": None if math.isnan(p.cards_needed) or math.isinf(p.cards_needed) else int(p.cards_needed),
             "min_detectable": _json_number(p.min_detectable)} for p in report.power]}
    return data


def _dimension_data(name: str, s: DimensionStats) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name, "value": _json_number(s.value), "ci_low": _json_number(s.ci_low), "ci_high": _json_number(s.ci_high),
        "n": s.n, "n_unparsed": s.n_unparsed, "n_failed": s.n_failed, "n_missing": s.n_missing,
        "mean": _json_number(s.mean), "se_clustered": _json_number(s.se_clustered), "n_episodes": s.n_episodes,
        "n_cards": s.n_cards, "small_n": s.small,
    }
    if s.noise is not None:
        out["judge_noise"] = {"var_judge": _json_number(s.noise.var_judge), "var_between": _json_number(s.noise.var_between),
                              "judge_share": _json_number(s.noise.judge_share), "samples": _json_number(s.noise.samples)}
    if s.corrected is not None:
        c = s.corrected
        out["corrected"] = {"mean": _json_number(c.mean), "ci_low": _json_number(c.ci_low), "ci_high": _json_number(c.ci_high),
                            "n_labelled": c.n_labelled, "n_unlabelled": c.n_unlabelled, "weight": _json_number(c.weight)}
    return out


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
        parts = ("ci_low", "ci_high", "n", "unparsed", "failed", "missing", "se", "episodes", "cards")
        for d in report.dimensions:
            name = report.name(d)
            header += [name] + [f"{name}_{part}" for part in parts]
        rows = []
        for row in report.rows:
            cells: list[Any] = list(row.group.values()) + [row.episodes_done, row.episodes_failed, row.episodes_unfinished]
            for d in report.dimensions:
                s = row.dimensions[d]
                cells += [_csv_number(s.value), _csv_number(s.ci_low), _csv_number(s.ci_high), s.n, s.n_unparsed, s.n_failed,
                          s.n_missing, _csv_number(s.se_clustered), s.n_episodes, s.n_cards]
            rows.append(cells)
        return _csv(header, rows)
    header = _header(report)
    if fmt == "md":
        text = _markdown(header, _text_rows(report, " "), right_from=len(report.by))
        if report.comparisons is not None:
            text += "\n**Paired comparisons** (a − b over shared cards; * = differ after Holm)\n\n"
            text += _markdown(_COMPARISON_HEADER, _comparison_rows(report), right_from=2)
            text += "\n" + "\n".join(f"- {_md_escape(line)}" for line in _rank_lines(report)) + "\n"
        if report.power is not None:
            text += f"\n**Power** (cards to detect {_num(report.delta)} points at 80% power, α = 0.05)\n\n"
            text += _markdown(_POWER_HEADER, _power_rows(report), right_from=2)
        return text
    if not report.rows:
        return f"esc-eval report: {report.store}\nno episodes\n"
    text = _rich_text(f"esc-eval report: {report.store}", header, _text_rows(report, "\n"), _note(report),
                      right_from=len(report.by), lines=True)
    if report.comparisons is not None:
        text += "\n" + _rich_text("paired comparisons: a − b over the cards both played", _COMPARISON_HEADER,
                                  _comparison_rows(report), "diff and 95% CI (bootstrap over shared cards) in points; p: sign-flip "
                                  "permutation test; * = p (Holm, over all pairs × dimensions) < 0.05; W/T/L: cards a scored "
                                  "above / equal to / below b", right_from=2, lines=False)
        text += "\nwhich supporters differ (rank 1 = best; rank range = 95% bootstrap interval):\n"
        text += "".join(f"  {line}\n" for line in _rank_lines(report))
    if report.power is not None:
        text += "\n" + _rich_text(f"power: cards needed to detect {_num(report.delta)} points", _POWER_HEADER, _power_rows(report),
                                  "paired t-test, 80% power, two-sided α = 0.05 for one comparison; 'detectable now' = "
                                  "smallest difference (points) found at 80% power with the cards in this store",
                                  right_from=2, lines=False)
    return text


# -- plotting -----------------------------------------------------------------------


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install esc-eval[plot]") from None
    return Figure


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


def plot(report: Report, path: Path) -> Path:
    """Write the leaderboard as a PNG: per dimension, each row's mean (labelled with its number) and 95% CI.

    The points and whiskers are the table's ``mean``, ``ci_low`` and ``ci_high``; a hollow
    marker flags fewer than ``SMALL_N`` cards.

    Raises:
        ReportError: matplotlib is not installed (``pip install esc-eval[plot]``), or nothing to plot.
    """
    from runs.analysis.statistics import SMALL_N

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
            ax.plot([x], [s.value], "o", color=color, markerfacecolor="white" if s.small else color, markersize=5)
            ax.annotate(_num(s.value), (x, s.value), xytext=(3, 0), textcoords="offset points", fontsize=6, va="center")
        ax.plot([], [], "o", color=color, label=row.label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("mean score / 4 × 100")
    ax.set_ylim(0, 100)
    ax.set_title(f"ESC-Eval dimensions by {', '.join(report.by)} (95% bootstrap CI over cards; hollow: < {SMALL_N} cards)")
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
        ax.annotate(f"{_num(c.diff)}  p={_p(c.p_holm)}", (c.diff, y), xytext=(0, 5), textcoords="offset points", fontsize=6,
                    ha="center")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-0.8, len(shown) - 0.2)
    ax.set_yticks(range(len(shown)), [f"{c.a} − {c.b}: {report.name(c.dimension)}" for c in reversed(shown)], fontsize=7)
    ax.set_xlabel("difference in points (a − b), 95% paired bootstrap CI over shared cards")
    ax.set_title("paired comparisons (filled: differ after Holm, α = 0.05)")
    return _save(fig, path)


def comparison_plot_path(path: Path) -> Path:
    """Where ``--compare --plot PNG`` writes the forest plot: next to PNG, ``-compare`` added to its name."""
    path = Path(path)
    return path.with_name(f"{path.stem}-compare{path.suffix or '.png'}")


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
    """Card index (as text) -> {dimension: final judge label (the first sample), ``None`` where the judge call failed}."""
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
    for row in store.final_scores():
        card = index_of.get(row["episode_key"])
        if card is not None and row["sample"] == 0:  # agreement compares one judge label, as ESC-Eval's Table 4
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
    from runs.annotation.server import confusion_matrix
    from runs.formats.importing import ResultFileError, read_score_file

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
                   supporter: str | None, language: str | None, *, compare: bool = False, corrected: bool = False,
                   power_delta: float | None = None) -> str:
    """``esc-eval report STORE``: returns the text to print.

    Args:
        store_path: the run's store (opened read-only).
        fmt: ``table``, ``md``, ``json`` or ``csv``.
        plot_path: where to write the leaderboard chart (PNG), or ``None``; with ``compare``
            the forest plot goes next to it (``comparison_plot_path``).
        by: group columns; items may be comma-separated (``["supporter,language"]``); empty: supporter.
        agreement: a human score file, or ``True`` for the store's own annotations
            (``runs.annotation.server.store_agreement``: also inter-annotator alpha); when given, the
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
    columns = _check_by(_split_by(by))
    store = Store.open(store_path, readonly=True)
    try:
        report = build_report(store, by=columns, supporter=supporter, language=language, compare=compare,
                              corrected=corrected, power_delta=power_delta)
        if agreement is True:
            from runs.annotation.server import store_agreement

            result = store_agreement(store, supporter=supporter, language=language)
        elif agreement is not None:
            result = agreement_report(store, Path(agreement), supporter=supporter, language=language)
        else:
            result = None
    finally:
        store.close_sync()
    plots = []
    if plot_path is not None and result is not None:
        from runs.annotation.server import plot_confusion

        plots.append(plot_confusion(result, plot_path))
    elif plot_path is not None:
        plots.append(plot(report, plot_path))
        if compare and any(not math.isnan(c.diff) for c in report.comparisons or ()):
            plots.append(plot_comparisons(report, comparison_plot_path(plot_path)))
    text = render_agreement(result, fmt) if result is not None else render(report, fmt)
    if plots and fmt in ("table", "md"):
        text += "".join(f"\nplot: {path}" for path in plots) + "\n"
    return text
