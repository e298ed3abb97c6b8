"""``esc-eval annotate``: label dialogues by hand in a web page; export/import labels."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``annotate`` command."""
    annotate = sub.add_parser("annotate", help="label a store's dialogues by hand in a web page; export/import the labels")
    annotate.add_argument("store", type=Path)
    annotate.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    annotate.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    annotate.add_argument("--k", type=int, default=2, help="annotators per dialogue (default 2)")
    annotate.add_argument("--profile", default="default", help="judge profile whose dimensions and rubric are shown (built-in name or path)")
    annotate.add_argument("--export", type=Path, metavar="LABELS.jsonl|SCORES.json",
                          help="write the labels (a .jsonl file: and the safety answers; no server)")
    annotate.add_argument("--import", dest="import_", type=Path, metavar="LABELS.jsonl|SCORES.json",
                          help="read labels (a .jsonl file: and safety answers) into the store (no server)")
    annotate.add_argument("--annotator", help="with --export: only this annotator's labels; with --import: store them under this name")
    annotate.add_argument("--supporter", help="with --export/--import of a score file: this supporter's episodes")
    annotate.add_argument("--language", choices=("en", "zh"), help="with --export/--import of a score file: this language's episodes")
    annotate.add_argument("--unblind", action="store_true", help="show annotators which supporter, persona and card made each dialogue")
    annotate.set_defaults(handler=_annotate)


def _annotate(args: argparse.Namespace) -> int:
    from esc_eval.runs.annotation.server import annotate_command
    from esc_eval.runs.cli.paths import output_file

    if args.export is not None:
        output_file(args.export, "--export")
    return annotate_command(args.store, port=args.port, host=args.host, k=args.k, profile=args.profile, export=args.export,
                            import_=args.import_, annotator=args.annotator, supporter=args.supporter, language=args.language,
                            unblind=args.unblind)
