"""Text views of reports: the leaderboard (``render``) and judge-human agreement (``render_agreement``).

Formats (``FORMATS``): ``table`` (plain text, no ANSI codes), ``md`` (a GitHub table), ``json``
and ``csv``; ``report_data`` is the leaderboard as plain JSON-ready data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from esc_eval.runs.analysis.leaderboard import FORMATS, DimensionStats, Report, ReportError, ReportRow

if TYPE_CHECKING:
    from esc_eval.runs.analysis.comparisons import PairComparison
    from esc_eval.runs.analysis.cost import ReportCost

_HEADERS = {"supporter": "Supporter", "language": "Language", "category": "Category", "source": "Source", "persona": "Persona",
            "outcome": "Outcome", "seeker": "Seeker"}


def number_text(x: float | None, digits: int = 1) -> str:
    """``x`` with ``digits`` decimals; a dash for ``nan`` or ``None`` (undefined)."""
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _cell(stats: DimensionStats, sep: str) -> str:
    if stats.n == 0:
        return "–"
    interval = f"[{number_text(stats.ci_low)}, {number_text(stats.ci_high)}]" if not math.isnan(stats.ci_low) else "[no CI]"
    text = f"{number_text(stats.value)}{sep}{interval}{sep}n={stats.n} · {stats.n_cards} cards{'*' if stats.small else ''}"
    if stats.no_spread:
        text += f"{sep}no spread: CI widened"
    if stats.noise is not None and not math.isnan(stats.noise.judge_share):
        text += f"{sep}judge {100 * stats.noise.judge_share:.0f}% of a label's var"
        if not math.isnan(stats.noise.mean_share):
            text += f", {100 * stats.noise.mean_share:.0f}% of the mean's"
    if stats.corrected is not None:
        c = stats.corrected
        text += (f"{sep}PPI {number_text(c.mean)} [{number_text(c.ci_low)}, {number_text(c.ci_high)}] h={c.n_labelled}" if c.n_labelled >= 2
                 else f"{sep}PPI – h={c.n_labelled}")
    return text


def _totals(row: ReportRow) -> tuple[int, int]:
    return sum(s.n_unparsed for s in row.dimensions.values()), sum(s.n_failed for s in row.dimensions.values())


def _header(report: Report, cost: ReportCost | None = None) -> list[str]:
    return ([_HEADERS[c] for c in report.by] + ["Done", "Failed"] + [report.name(d) for d in report.dimensions]
            + ["-1", "Judge failed"] + (_COST_HEADER if cost is not None and cost.cost.priced else []))


_COST_HEADER = ["Supporter $", "$ / episode"]
"""Cost columns (prices in the config only): the row's supporter calls, and every role's cost per episode (docs/cost.md)."""


def _cost_cells(row: ReportRow, cost: ReportCost | None) -> list[str]:
    if cost is None or not cost.cost.priced:
        return []
    from esc_eval.runs.pricing import usd_text

    found = cost.row(row.group)
    return [usd_text(found.supporter_usd), usd_text(found.per_episode_usd)] if found is not None else ["–", "–"]


def _text_rows(report: Report, sep: str, cost: ReportCost | None = None) -> list[list[str]]:
    out = []
    for row in report.rows:
        unparsed, failed = _totals(row)
        out.append(list(row.group.values()) + [str(row.episodes_done), str(row.episodes_failed)]
                   + [_cell(row.dimensions[d], sep) for d in report.dimensions] + [str(unparsed), str(failed)]
                   + _cost_cells(row, cost))
    return out


def p_text(x: float, *, bound: bool = False) -> str:
    """A p-value as shown in tables and plots: three decimals, or two significant digits below 0.001.

    ``bound``: ``x`` is a Monte Carlo floor (no draw was as extreme as the data), so the
    p-value is below it, not equal to it: "< x".
    """
    if math.isnan(x):
        return "–"
    text = f"{x:.1e}" if x < 0.001 else f"{x:.3f}"
    return f"< {text}" if bound else text


def comparison_p_texts(c: PairComparison) -> tuple[str, str]:
    """The raw and Holm-adjusted p of a comparison; "< floor" where the Monte Carlo floor was reached."""
    return p_text(c.p_value, bound=c.at_floor), p_text(c.p_holm, bound=c.at_floor)


def flag_text(c: PairComparison) -> str:
    """A comparison's flags in words: "9 cards cannot resolve this comparison" for ``underpowered``."""
    return ", ".join(f"{c.n_cards} cards cannot resolve this comparison" if f == "underpowered" else f.replace("_", " ")
                     for f in c.flags)


def _comparison_rows(report: Report) -> list[list[str]]:
    rows = []
    for c in report.comparisons or ():
        p, p_holm = comparison_p_texts(c)
        rows.append([f"{c.a} − {c.b}", report.name(c.dimension), number_text(c.diff),
                     f"[{number_text(c.ci_low)}, {number_text(c.ci_high)}]", p, p_holm + (" *" if c.significant else ""),
                     f"{c.wins}/{c.ties}/{c.losses}", str(c.n_cards), flag_text(c)])
    return rows


_COMPARISON_HEADER = ["Pair", "Dimension", "Diff", "95% CI", "p", "p (Holm)", "W/T/L", "Cards", "Flags"]


def _rank_lines(report: Report) -> list[str]:
    """Per dimension: supporters best first with their rank intervals, then the pairs that differ."""
    lines = []
    for d, ranked in (report.ranks or {}).items():
        order = ", ".join(f"{r.supporter} {number_text(r.mean)} (rank {r.rank}, {r.low}–{r.high})" for r in ranked)
        differ = [f"{c.a} {'>' if c.diff > 0 else '<'} {c.b}" for c in report.comparisons or () if c.dimension == d and c.significant]
        lines.append(f"{report.name(d)}: {order}; differ: {', '.join(differ) if differ else 'none'}")
    return lines


_POWER_HEADER = ["Pair", "Dimension", "SD of diff", "Cards", "Cards needed", "… after Holm", "Detectable now"]
_AGREEMENT_HEADER = ["Seekers", "Dimension", "Kendall tau", "95% CI", "p", "Supporters", "Cards"]
_AGREEMENT_NOTE = ("does the supporter ranking hold under another seeker? tau 1 = same order, 0 = unrelated, -1 = reversed; "
                   "95% CI: bootstrap over the cards both seekers played with every supporter; p: scipy kendalltau "
                   "against unrelated rankings, shown only when it can fall below 0.05 (5 supporters or more; with n "
                   "supporters the smallest p is 2/n!)")


def _agreement_rows(report: Report) -> list[list[str]]:
    def tau(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:.2f}"

    return [[f"{r.a} ~ {r.b}", report.name(r.dimension), tau(r.tau), f"[{tau(r.ci_low)}, {tau(r.ci_high)}]",
             "too few supporters to tell" if r.too_few else p_text(r.p_value), str(r.n_supporters), str(r.n_cards)]
            for r in report.seeker_agreement or ()]


def _power_rows(report: Report) -> list[list[str]]:
    def cards(x: float) -> str:
        return "–" if math.isnan(x) else ("never" if math.isinf(x) else str(int(x)))

    return [[f"{p.a} − {p.b}" if p.b else f"{p.a} vs a like one", report.name(p.dimension), number_text(p.sd_diff), str(p.n_cards),
             cards(p.cards_needed), cards(p.cards_needed_family), number_text(p.min_detectable)] for p in report.power or ()]


def _note(report: Report) -> str:
    from esc_eval.runs.analysis.statistics import SMALL_N

    note = ("score = mean over role cards of the card's mean label ×25 (each card counts once; ESC-Eval's number when a card has "
            "one episode); [95% CI]: t interval over card means, within [0, 100]; "
            f"n = valid labels; * fewer than {SMALL_N} cards (small_n): the interval rests on a handful of cards; [no CI]: one "
            "card; no spread: every card scored the same, the interval is that of one card moved one label up or down. "
            "-1 = judge replies with no label; judge failed = judge calls that failed")
    if report.samples > 1:
        note += (f"; {report.samples} judge samples per episode: 'judge N% of a label's var, M% of the mean's' = the judge's "
                 "noise as a share of one label's variance and of the score's")
    if report.corrected:
        note += "; PPI = prediction-powered mean from human labels on h episodes (docs/statistics.md)"
    if report.echoes:
        note += "; " + echo_note(report)
    return note


def echo_note(report: Report) -> str:
    """The footer line on labels read from rubric echoes (``Report.echoes``)."""
    counts = ", ".join(f"{report.name(d)} {n}" for d, n in report.echoes.items())
    return (f"{sum(report.echoes.values())} labels ({counts}) come from judge replies that only echo the rubric "
            "('0: ...' then '1:'): ESC-Eval's rule read a digit of the echo as the label; read those means with care")


def rich_text(title: str, header: list[str], rows: list[list[str]], caption: str, *, right_from: int, lines: bool) -> str:
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


def report_data(report: Report, cost: ReportCost | None = None) -> dict[str, Any]:
    """The report as plain JSON-ready data (``nan`` -> ``None``); with ``cost`` its ``cost`` object and each row's."""
    data: dict[str, Any] = {
        "store": report.store,
        "by": list(report.by),
        "dimensions": [{"key": d, "name": report.name(d)} for d in report.dimensions],
        "judge_samples": report.samples,
        "echo_labels": dict(report.echoes),
        "rows": [
            {
                "group": dict(row.group),
                "episodes": {"done": row.episodes_done, "failed": row.episodes_failed, "unfinished": row.episodes_unfinished},
                "scores": {d: _dimension_data(report.name(d), s) for d, s in row.dimensions.items()},
            }
            for row in report.rows
        ],
    }
    if cost is not None:
        data["cost"] = cost.cost.data()
        data["cost_unknown_requests"] = dict(cost.cost.unknown)
        for row, out in zip(report.rows, data["rows"]):
            found = cost.row(row.group)
            out["cost"] = found.data() if found is not None else None
    if report.comparisons is not None:
        data["comparisons"] = [{"a": c.a, "b": c.b, "dimension": c.dimension, "diff": _json_number(c.diff),
                                "ci_low": _json_number(c.ci_low), "ci_high": _json_number(c.ci_high),
                                "p_value": _json_number(c.p_value), "p_holm": _json_number(c.p_holm),
                                "p_exact": c.exact, "p_floor": _json_number(c.floor), "p_is_bound": c.at_floor, "wins": c.wins,
                                "ties": c.ties, "losses": c.losses, "n_cards": c.n_cards, "flags": list(c.flags)}
                               for c in report.comparisons]
        data["ranks"] = {d: [{"supporter": r.supporter, "mean": r.mean, "rank": r.rank, "rank_low": r.low, "rank_high": r.high}
                             for r in ranked] for d, ranked in (report.ranks or {}).items()}
    if report.power is not None:
        data["power"] = {"delta": report.delta, "power": 0.8, "alpha": 0.05, "rows": [
            {"a": p.a, "b": p.b or None, "dimension": p.dimension, "sd_diff": _json_number(p.sd_diff), "n_cards": p.n_cards,
             "cards_needed": None if math.isnan(p.cards_needed) or math.isinf(p.cards_needed) else int(p.cards_needed),
             "min_detectable": _json_number(p.min_detectable), "tests": p.tests,
             "cards_needed_family": None if math.isnan(p.cards_needed_family) or math.isinf(p.cards_needed_family)
             else int(p.cards_needed_family)} for p in report.power]}
    if report.seeker_agreement is not None:
        data["seeker_agreement"] = [{"a": r.a, "b": r.b, "dimension": r.dimension, "kendall_tau": _json_number(r.tau),
                                     "ci_low": _json_number(r.ci_low), "ci_high": _json_number(r.ci_high),
                                     "p_value": None if r.too_few else _json_number(r.p_value), "n_supporters": r.n_supporters,
                                     "n_cards": r.n_cards, "too_few_supporters": r.too_few}
                                    for r in report.seeker_agreement]
    return data


def _dimension_data(name: str, s: DimensionStats) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name, "value": _json_number(s.value), "ci_low": _json_number(s.ci_low), "ci_high": _json_number(s.ci_high),
        "n": s.n, "n_unparsed": s.n_unparsed, "n_failed": s.n_failed, "n_missing": s.n_missing,
        "mean": _json_number(s.mean), "se_clustered": _json_number(s.se_clustered), "n_episodes": s.n_episodes,
        "n_cards": s.n_cards, "small_n": s.small, "flags": list(s.flags), "mean_episodes": _json_number(s.mean_episodes),
    }
    if s.noise is not None:
        out["judge_noise"] = {"var_judge": _json_number(s.noise.var_judge), "var_between": _json_number(s.noise.var_between),
                              "judge_share": _json_number(s.noise.judge_share),
                              "judge_share_of_mean": _json_number(s.noise.mean_share), "samples": _json_number(s.noise.samples)}
    if s.corrected is not None:
        c = s.corrected
        out["corrected"] = {"mean": _json_number(c.mean), "ci_low": _json_number(c.ci_low), "ci_high": _json_number(c.ci_high),
                            "n_labelled": c.n_labelled, "n_unlabelled": c.n_unlabelled, "weight": _json_number(c.weight)}
    return out


def _csv_number(x: float) -> str:
    return "" if math.isnan(x) else repr(x)


def _csv_money(x: float | None) -> str:
    return "" if x is None else repr(x)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def render(report: Report, fmt: str, cost: ReportCost | None = None) -> str:
    """The report as text: ``table`` (plain text, no ANSI codes), ``md`` (GitHub table), ``json`` or ``csv``.

    ``csv`` has one line per row: the group columns, ``done``, ``failed``, ``unfinished``,
    then per dimension ``{Name}``, ``{Name}_ci_low``, ``{Name}_ci_high``, ``{Name}_n``,
    ``{Name}_unparsed``, ``{Name}_failed``, ``{Name}_missing`` (empty where undefined), then with
    ``cost`` and prices ``supporter_usd`` and ``per_episode_usd`` (empty where unknown). ``cost`` adds
    the cost columns and section (table, md) or objects (json): ``esc_eval.runs.analysis.cost``.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")
    if fmt == "json":
        return json.dumps(report_data(report, cost), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
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
            if cost is not None and cost.cost.priced:
                found = cost.row(row.group)
                cells += ["", ""] if found is None else [_csv_money(found.supporter_usd), _csv_money(found.per_episode_usd)]
            rows.append(cells)
        if cost is not None and cost.cost.priced:
            header += ["supporter_usd", "per_episode_usd"]
        return _csv(header, rows)
    header = _header(report, cost)
    if fmt == "md":
        text = _markdown(header, _text_rows(report, " ", cost), right_from=len(report.by))
        if cost is not None:
            from esc_eval.runs.analysis.cost import cost_lines

            text += "\n" + "".join(f"- {_md_escape(line)}\n" for line in cost_lines(cost.cost))
        if report.comparisons is not None:
            text += "\n**Paired comparisons** (a − b over shared cards; * = differ after Holm)\n\n"
            text += _markdown(_COMPARISON_HEADER, _comparison_rows(report), right_from=2)
            text += "\n" + "\n".join(f"- {_md_escape(line)}" for line in _rank_lines(report)) + "\n"
        if report.power is not None:
            text += f"\n**Power** (cards to detect {number_text(report.delta)} points at 80% power, α = 0.05)\n\n"
            text += _markdown(_POWER_HEADER, _power_rows(report), right_from=2)
        if report.seeker_agreement is not None:
            text += f"\n**Rank agreement between seekers** ({_md_escape(_AGREEMENT_NOTE)})\n\n"
            text += _markdown(_AGREEMENT_HEADER, _agreement_rows(report), right_from=2)
        if report.echoes:
            text += f"\nNote: {_md_escape(echo_note(report))}\n"
        return text
    if not report.rows:
        return f"esc-eval report: {report.store}\nno episodes\n"
    text = rich_text(f"esc-eval report: {report.store}", header, _text_rows(report, "\n", cost), _note(report),
                      right_from=len(report.by), lines=True)
    if cost is not None:
        from esc_eval.runs.analysis.cost import cost_lines

        text += "\n" + "".join(f"{line}\n" for line in cost_lines(cost.cost))
    if report.comparisons is not None:
        text += "\n" + rich_text("paired comparisons: a − b over the cards both played", _COMPARISON_HEADER,
                                  _comparison_rows(report), "diff in points = score(a) − score(b) over shared cards; p: sign-flip "
                                  "test over shared cards (exact up to 20 cards, else Monte Carlo: '< x' = no draw as extreme, "
                                  "p below its floor x); 95% CI: the values the same test does not reject (it excludes 0 exactly "
                                  "when p < 0.05); * = p (Holm, over all pairs × dimensions) < 0.05; W/T/L: cards a scored "
                                  "above / equal to / below b; flags: small n (< 10 cards), no spread (every card's difference "
                                  "equal: CI and p of one card moved one label), 'N cards cannot resolve this comparison' (even "
                                  "the smallest p the test can give fails Holm)", right_from=2, lines=False)
        text += "\nwhich supporters differ (rank 1 = best; rank range = 95% bootstrap interval):\n"
        text += "".join(f"  {line}\n" for line in _rank_lines(report))
    if report.power is not None:
        text += "\n" + rich_text(f"power: cards needed to detect {number_text(report.delta)} points", _POWER_HEADER, _power_rows(report),
                                  "paired t-test, 80% power, two-sided α = 0.05 for one comparison; '… after Holm': the "
                                  "same pair as one of the report's pairs × dimensions (α / tests, and at least the cards "
                                  "whose smallest sign-flip p survives Holm); 'detectable now' = smallest difference (points) "
                                  "found at 80% power with the cards in this store (one comparison)",
                                  right_from=2, lines=False)
    if report.seeker_agreement is not None:
        text += "\n" + rich_text("rank agreement between seekers", _AGREEMENT_HEADER, _agreement_rows(report), _AGREEMENT_NOTE,
                                  right_from=2, lines=False)
    return text


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
        return number_text(100 * float(x)) + ("" if math.isnan(float(x)) else "%")

    header = ["Metric"] + [v["name"] for v in dims.values()] + ["Average"]
    rows = [
        ["ACC"] + [pct(v["acc"]) for v in dims.values()] + [pct(result["average"]["acc"])],
        ["ACC_soft"] + [pct(v["acc_soft"]) for v in dims.values()] + [pct(result["average"]["acc_soft"])],
        ["n"] + [str(v["n"]) for v in dims.values()] + [""],
    ]
    if result.get("alpha"):  # human labels from the store: inter-annotator agreement too
        def alpha(x: Any) -> str:
            return number_text(float(x), 3)

        rows += [["α (annotators)"] + [alpha(result["alpha"][d]["alpha"]) for d in dims] + [""],
                 ["items ≥2 labels"] + [str(result["alpha"][d]["items"]) for d in dims] + [""]]
    cards = result["cards"]
    if result.get("alpha"):
        caption_extra = (". With several annotators, ACC and ACC_soft are against each annotator of an episode, averaged. "
                         "α = Krippendorff's alpha (ordinal) between annotators, over items with two labels or more.")
    else:
        caption_extra = ""
    title = (f"judge-human agreement: {result['supporter']} ({result['language']}) in {result['store']} vs {result['human']}")
    unit = result.get("unit", "cards")
    caption = (f"{cards['matched']} {unit} in both; {cards['only_human']} with human labels only, {cards['only_judge']} with judge labels only. "
               "ACC = exact match, ACC_soft = |judge - human| <= 1; -1 labels and failed judge calls left out" + caption_extra)
    if fmt == "md":
        return f"**{_md_escape(title)}**\n\n" + _markdown(header, rows, right_from=1) + f"\n{_md_escape(caption)}\n"
    return rich_text(title, header, rows, caption, right_from=1, lines=False)
