"""``esc-eval export`` and ``esc-eval import``: a store's episodes to and from files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc_eval.runs.cli.errors import FAILED_EPISODES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` and ``import`` commands."""
    export = sub.add_parser("export", help="write a store's transcripts (and scores) as files")
    export.add_argument("store", type=Path)
    export.add_argument("--format", choices=("esc-eval", "jsonl"), default="esc-eval",
                        help="jsonl: the whole store, lossless (episodes.jsonl); esc-eval: ESC-Eval's result/score files (lossy)")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--allow-missing", action="store_true",
                        help="esc-eval format: write -1 for judge scores that failed or never ran (else: exit 1, nothing written)")
    export.set_defaults(handler=_export)

    imports = sub.add_parser("import", help="load ESC-Eval result (and score) files or a JSONL export into a store; episodes "
                                            "the store has are skipped when the same, refused when not; another run needs --merge")
    imports.add_argument("store", type=Path)
    imports.add_argument("files", type=Path, nargs="+", metavar="RESULT.json|EPISODES.jsonl")
    imports.add_argument("--scores", type=Path, nargs="*", default=[], metavar="SCORE.json")
    imports.add_argument("--supporter", help="ESC-Eval result files: the supporter (default: from the name, MODEL_LANG.json)")
    imports.add_argument("--language", help="ESC-Eval result files: the language, en or zh (default: from the name)")
    imports.add_argument("--merge", action="store_true",
                         help="import into a store that holds another run (its fingerprint differs, or the file has none)")
    imports.add_argument("--force", action="store_true", help="pair a score file whose name names another supporter or language")
    imports.set_defaults(handler=_import)


def _export(args: argparse.Namespace) -> int:
    from esc_eval.runs.analysis.failures import nothing_finished
    from esc_eval.runs.cli.paths import output_folder
    from esc_eval.runs.formats.archive import export_jsonl
    from esc_eval.runs.formats.exchange import MissingScores, export_esc_eval
    from esc_eval.runs.store import Store

    output_folder(args.out)
    with Store.open(args.store, readonly=True) as store:
        if args.format == "esc-eval" and not store.counts().get("done"):
            print(f"esc-eval: {nothing_finished(store)}", file=sys.stderr)
            return FAILED_EPISODES  # nothing written: no dialogue ended; the input was fine
        if args.format == "jsonl":
            written = export_jsonl(store, args.out)
        else:
            try:
                written = export_esc_eval(store, args.out)
            except MissingScores as exc:
                if not args.allow_missing:
                    print(f"esc-eval: {exc}", file=sys.stderr)
                    return FAILED_EPISODES  # nothing written: the data has a hole, the input was fine
                print(f"esc-eval: warning: {exc.summary}; wrote -1 (ESC-Eval's 'no label') for them; {exc.RESCORE}", file=sys.stderr)
                written = export_esc_eval(store, args.out, allow_missing=True)
            if len(store.seekers()) > 1:
                print(f"esc-eval: note: {len(store.seekers())} seekers played this store; ESC-Eval files hold one dialogue per card, "
                      "so each supporter gets one file per seeker (NAME-with-SEEKER_LANG.json)", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _import(args: argparse.Namespace) -> int:
    from esc_eval.runs.formats.importing import import_command

    print(import_command(args.store, args.files, args.scores, supporter=args.supporter, language=args.language,
                         merge=args.merge, force=args.force))
    return 0
