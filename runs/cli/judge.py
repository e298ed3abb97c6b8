"""``esc-eval judge FILE`` scores existing transcripts; ``judge train`` trains judge adapters; ``judge schema`` prints the profile schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from esc_eval.runs.cli.errors import UsageError
from esc_eval.runs.cli.paths import output_file
from esc_eval.runs.config import check_api_keys, load_config
from esc_eval.runs.config_sections import CACHE_MODES
from esc_eval.runs.formats.importing import supporter_and_language
from esc_eval.runs.formats.judging import Judged


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``judge`` command: ``judge [score] FILE`` scores transcripts, ``judge train`` trains adapters."""
    judge = sub.add_parser("judge", help="score existing transcripts (ESC-Eval result files or JSONL exports); "
                                         "'judge train' trains judge adapters",
                           description="esc-eval judge FILE --config C (or: judge score FILE ...) scores transcripts; "
                                       "esc-eval judge train ... fine-tunes judge adapters")
    actions = judge.add_subparsers(required=True, metavar="ACTION")
    judge.default_action("score", actions)
    score = actions.add_parser("score", help="score transcripts (the default: 'esc-eval judge FILE' means 'judge score FILE')")
    score.add_argument("transcripts", type=Path)
    score.add_argument("--config", type=Path, required=True, help="a TOML file with a [judge] section")
    score.add_argument("--language", choices=("en", "zh"), help="default: from the file name (_en/_zh) or the text")
    score.add_argument("--out", type=Path, help="write ESC-Eval's score format here (SCORES.json)")
    score.add_argument("--store", type=Path, help="also import the transcripts and every judgement (model, raw reply, failures) "
                                                   "into this store (ESC-Eval result files)")
    score.add_argument("--supporter", help="with --store: the supporter (default: from the file name, MODEL_LANG.json)")
    score.add_argument("--cache", type=Path, metavar="PATH",
                       help="response cache file (SQLite; docs/cost.md): a judgement asked before is answered from it, not sent")
    score.add_argument("--cache-mode", choices=CACHE_MODES,
                       help="read-write (default: use and fill the cache), read (use it, add nothing) or off")
    score.set_defaults(handler=_judge)
    _add_train_parser(actions)
    schema = actions.add_parser("schema", help="print the JSON Schema of a judge profile file (our form; for YAML/JSON editor completion)")
    schema.set_defaults(handler=_judge_schema)


def _judge(args: argparse.Namespace) -> int:
    import json

    from esc_eval.runs.execution.caching import check_cache
    from esc_eval.runs.execution.launch import RunOptionError, with_cache
    from esc_eval.runs.formats.judging import judge_transcripts

    config = load_config(args.config, judge_only=True)
    try:
        config = with_cache(config, args.cache, args.cache_mode)
    except RunOptionError as exc:
        raise UsageError(str(exc)) from None
    check_cache(config.run.cache, config.run.cache_mode)        # an unreadable cache is refused before any request
    check_api_keys(config)
    if args.out is not None and args.out.suffix != ".json":
        raise UsageError(f"{args.out}: --out must name a .json file")
    if args.out is not None:
        output_file(args.out)
    if args.store is not None:
        output_file(args.store, "--store")  # before the judging, not after it
    if args.supporter is not None and args.store is None:
        raise UsageError("--supporter names the supporter in --store; give --store too")
    if args.store is not None:
        if args.transcripts.suffix != ".json":
            raise UsageError(f"{args.transcripts}: --store takes ESC-Eval result files (.json)")
        supporter_and_language(args.transcripts, args.supporter, args.language or "en")  # check before judging, not after
    judged = asyncio.run(judge_transcripts(config, args.transcripts, language=args.language, out=args.out))
    if args.out is None and args.store is None:
        print(json.dumps(judged.table, ensure_ascii=False, indent=4))
    if args.out is not None:
        print(f"{args.out}: scores for {len(judged.table)} dialogues")
    if args.store is not None:
        _store_judged(args.store, args.transcripts, judged, args.supporter)
    if judged.failed:
        stored = f" (kept as failed in {args.store})" if args.store is not None else ""
        print(f"esc-eval: {judged.failed} judgements failed after retries and are left out of the scores{stored}", file=sys.stderr)
    return 1 if judged.failed else 0


def _judge_schema(args: argparse.Namespace) -> int:
    import json

    from esc_eval.agents.judge.profile_schema import profile_schema

    print(json.dumps(profile_schema(), indent=2, ensure_ascii=False))
    return 0


def _store_judged(store_path: Path, transcripts: Path, judged: Judged, supporter: str | None) -> None:
    from esc_eval.runs.formats.judging import store_judged
    from esc_eval.runs.store import Store

    with Store.open(store_path, create=not store_path.exists()) as store:
        summary = store_judged(store, transcripts, judged, supporter=supporter)
    print(f"{store_path}: {summary.episodes} dialogues and {summary.scores} judgements of {summary.supporter} ({summary.language}); "
          f"skipped {summary.skipped} already in the store")


def _add_train_parser(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser("train", help="fine-tune one LoRA adapter per judge dimension on human labels (needs esc-eval[train])",
                                description="fine-tune one LoRA adapter per judge dimension on human labels (needs esc-eval[train])")
    parser.add_argument("--labels", type=Path, required=True, help="labels with transcripts (esc-eval annotate STORE --export LABELS.jsonl)")
    parser.add_argument("--base", required=True, help="base model folder, or 'embedded' for the embedded SmolLM2")
    parser.add_argument("--profile", default="default", help="judge profile whose prompts are trained (built-in name or path)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the adapters (OUT/KEY_LANG) and training.json")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per adapter (default 200)")
    parser.add_argument("--dimensions", help="comma-separated dimension keys (default: every dimension with labels)")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of dialogues held out for evaluation (default 0.2)")
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate (default 5e-4)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048, help="tokens per example; longer prompts lose their start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", help="comma-separated layer indices to adapt (default: all; the last few train much faster)")
    parser.set_defaults(handler=_judge_train)


def _judge_train(args: argparse.Namespace) -> int:
    from esc_eval.agents.judge.training import TrainingOptions, train_command

    options = TrainingOptions(steps=args.steps, lr=args.lr, rank=args.rank, batch_size=args.batch_size,
                              max_length=args.max_length, holdout=args.holdout, seed=args.seed,
                              layers=layer_list(args.layers))
    dimensions = [d.strip() for d in args.dimensions.split(",") if d.strip()] if args.dimensions else None
    print(train_command(args.labels, args.base, args.profile, args.out, options, dimensions=dimensions))
    return 0


def layer_list(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--layers must be comma-separated layer numbers, got {text!r}") from None
