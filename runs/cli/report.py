"""``esc-eval report``: the leaderboard, comparisons and agreement of a store."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``report`` command."""
    report = sub.add_parser("report", help="leaderboard of a run: the 7 ESC-RANK dimensions per supporter")
    report.add_argument("store", type=Path)
    report.add_argument("--format", choices=("table", "md", "json", "csv", "html"), default="table",
                        help="html: one self-contained page (leaderboard, charts, every transcript) written to --out")
    report.add_argument("--out", type=Path, metavar="FILE",
                        help="write the report to FILE instead of printing it (any format; html needs it); folders are made")
    report.add_argument("--by", action="append", default=[], metavar="COLUMNS",
                        help="group by supporter, seeker, language, category, source, persona (comma-separated or repeated); "
                             "default supporter, or seeker,supporter when several seekers played the store")
    report.add_argument("--plot", type=Path, metavar="PNG", help="also draw a comparison chart (needs esc-eval[plot])")
    report.add_argument("--agreement", type=Path, nargs="?", const=True, metavar="SCORES.json",
                        help="judge-vs-human ACC / ACC_soft against a human score file; with no file, against the store's "
                             "annotations (esc-eval annotate), with inter-annotator alpha and, for answered safety items, per-item "
                             "Cohen's kappa with a card-clustered interval; --plot then draws confusion matrices")
    report.add_argument("--compare", action="store_true",
                        help="paired comparisons of every two supporters per dimension (bootstrap CI, permutation p, Holm) "
                             "and rank intervals; with --plot also a forest plot (PNG-compare.png)")
    report.add_argument("--corrected", action="store_true",
                        help="also prediction-powered means that correct the judge with the store's human labels (esc-eval annotate), "
                             "and the missed-risk rate corrected with the human answers to the safety items")
    report.add_argument("--power", type=float, metavar="DELTA",
                        help="cards needed to detect a difference of DELTA points at 80%% power, and the difference "
                             "detectable with this store's cards")
    report.add_argument("--supporter", help="only this supporter")
    report.add_argument("--language", choices=("en", "zh"), help="only this language")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from esc_eval.runs.cli.paths import output_file

    if args.out is not None:
        output_file(args.out)
    if args.plot is not None:
        output_file(args.plot, "--plot")
    if args.format == "html":
        from esc_eval.runs.viewer.html import write_html

        print(f"{write_html(args.store, args.out)}: leaderboard, charts and every transcript (opens from disk, no network)")
        return 0
    from esc_eval.runs.analysis.report import report_command

    text = report_command(args.store, args.format, args.plot, args.by, args.agreement, args.supporter, args.language,
                          compare=args.compare, corrected=args.corrected, power_delta=args.power)
    if args.out is None:
        print(text)
        return 0
    from esc_eval.runs.formats.exchange import write_text

    written = write_text(args.out, text if text.endswith("\n") else text + "\n")
    print(f"{written}: {args.format} report")
    return 0
