"""``esc-eval cards``: role card tools (validate a card file, build cards from raw datasets)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

from esc_eval.roles.loaders import load_cards


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``cards`` command group."""
    cards = sub.add_parser("cards", help="role card tools")
    cards_sub = cards.add_subparsers(required=True, metavar="ACTION")
    validate = cards_sub.add_parser("validate", help="check a card file and summarise it")
    validate.add_argument("file", type=Path)
    validate.add_argument("--language", choices=("en", "zh"))
    validate.set_defaults(handler=_cards_validate)

    build = cards_sub.add_parser("build", help="build role cards from dialogue or post datasets with a model (docs/cards.md)")
    build.add_argument("sources", type=Path, nargs="+", metavar="SOURCE",
                       help="ESConv-style .json, dialogue .jsonl or post .jsonl files (the file's stem names the card source)")
    build.add_argument("--config", type=Path, required=True, help="build TOML: [build], [extractor], optional [translator]")
    build.add_argument("--out", type=Path, required=True, help="cards file: .json (ESC-Eval's shape), .jsonl or .yaml (ours)")
    build.add_argument("--store", type=Path, help="SQLite file recording each extraction, for --resume")
    build.add_argument("--resume", action="store_true", help="continue the build in --store, extracting only what is missing")
    build.add_argument("--shape", help="source shape for every SOURCE (esconv, dialogues, posts); detected by default")
    build.add_argument("--min-quality", choices=("low", "middle", "high"), help="overrides [build] min_quality")
    build.set_defaults(handler=_cards_build)


def _cards_validate(args: argparse.Namespace) -> int:
    cards = load_cards(args.file, language=args.language)
    languages = Counter(c.language for c in cards)
    categories = Counter(c.category for c in cards)
    print(f"{args.file}: {len(cards)} valid cards; languages: {dict(languages)}; categories: {dict(categories)}")
    return 0


def _cards_build(args: argparse.Namespace) -> int:
    from esc_eval.roles.extraction import PromptError
    from esc_eval.roles.sources import SourceError
    from esc_eval.runs.cards import build_cards, load_build_config
    from esc_eval.runs.cards.build import OUTPUT_SUFFIXES
    from esc_eval.runs.cli.errors import FAILED_EPISODES, UsageError
    from esc_eval.runs.config import check_api_key

    if args.out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"--out {args.out}: use a {', '.join(OUTPUT_SUFFIXES)} file")
    if args.resume and args.store is None:
        raise UsageError("--resume needs --store (the build to continue)")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    config = load_build_config(args.config)
    for section, endpoint in (("[extractor]", config.extractor), ("[translator]", config.translator)):
        if endpoint is not None:
            check_api_key(config.path, section, endpoint)
    try:
        report = asyncio.run(build_cards(config, [(path, args.shape) for path in args.sources], args.out,
                                         store_path=args.store, resume=args.resume, min_quality=args.min_quality))
    except (SourceError, PromptError) as exc:
        raise UsageError(str(exc)) from None
    counts = report.counts
    print(f"esc-eval: cards build: {counts['items']} items, {counts.get('bad_records', 0)} bad records, "
          f"{counts['extracted']} extracted, {counts['extraction_rejected']} rejected, {counts['extraction_failed']} failed, "
          f"{counts['below_quality']} below quality, "
          f"{counts['pii_rejected']} with personal identifiers, {counts['near_duplicates']} near-duplicates; "
          f"{counts['written']} cards -> {args.out} (report: {args.out.parent / 'build-report.json'})")
    if counts["extraction_failed"]:
        print(f"esc-eval: cards build: {counts['extraction_failed']} items failed (backend gave up); "
              "run again with --resume to retry them", file=sys.stderr)
    if not counts["written"]:
        print("esc-eval: cards build: no card survived the filters; nothing written", file=sys.stderr)
    return FAILED_EPISODES if counts["extraction_failed"] or not counts["written"] else 0
