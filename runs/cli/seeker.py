"""``esc-eval seeker eval STORE``: how faithfully the simulated seeker played its part, per seeker and persona;
``esc-eval seeker train``: a LoRA adapter that speaks as the seeker."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from esc_eval.runs.cli.errors import UsageError

FORMATS = ("table", "json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``seeker`` command group: ``seeker eval STORE`` prints the seeker fidelity figures, ``seeker train`` trains an adapter."""
    seeker = sub.add_parser("seeker", help="the simulated seeker's fidelity: 'seeker eval STORE'; 'seeker train' fine-tunes one",
                            description="esc-eval seeker eval STORE: role breaks, parroting, repetition, card grounding, "
                                        "distress arc and (with --judge) human-likeness, per seeker and persona. "
                                        "esc-eval seeker train: a LoRA adapter that speaks as the seeker")
    actions = seeker.add_subparsers(required=True, metavar="ACTION")
    evaluate = actions.add_parser("eval", help="fidelity figures from a store's finished dialogues (or a dialogues file), "
                                               "and with --reference how far they are from real seekers")
    evaluate.add_argument("store", type=Path, metavar="SOURCE",
                          help="a store, or ESConv-shaped dialogues (.json list / .jsonl of {dialog: [{speaker, content}]})")
    evaluate.add_argument("--reference", type=Path, metavar="HUMAN.json",
                          help="real seekers' dialogues in ESConv's shape: adds each row's 'realism' (discriminator AUC, "
                               "feature distances, realism index; docs/seeker.md)")
    evaluate.add_argument("--cards-report", type=Path, metavar="build-report.json",
                          help="with --reference: 'cards build''s report, pairing each episode with the dialogue its card came from")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the realism folds and bootstrap (default 0)")
    evaluate.add_argument("--format", choices=FORMATS, default="table")
    evaluate.add_argument("--by", default="seeker,persona", help="group columns, comma-separated: seeker, persona (default both)")
    evaluate.add_argument("--judge", type=Path, metavar="CONFIG",
                          help="a TOML file with a [judge] section: rates the seeker's lines for human-likeness (0-4)")
    evaluate.set_defaults(handler=_eval)
    _add_train_parser(actions)


def _add_train_parser(actions: argparse._SubParsersAction) -> None:
    train = actions.add_parser("train", help="fine-tune a LoRA adapter that speaks as the seeker (needs esc-eval[train])",
                               description="fine-tune a LoRA adapter that speaks as the seeker, on the prompts a run sends it "
                                           "(needs esc-eval[train]); writes OUT/seeker/, OUT/seeker.toml, OUT/training.json")
    train.add_argument("--dialogues", type=Path, required=True,
                       help="ESC-Eval result file, esc-eval JSONL export, or ESConv-style dialogues (.json list / .jsonl)")
    train.add_argument("--cards", type=Path, help="the cards the dialogues were played on (default: the built-in cards)")
    train.add_argument("--base", required=True, help="base model folder, or 'embedded' for the embedded SmolLM2")
    train.add_argument("--out", type=Path, required=True, help="folder for the adapter (OUT/seeker), seeker.toml and training.json")
    train.add_argument("--protocol", default="default", help="seeker protocol whose prompt is trained (built-in name or path)")
    train.add_argument("--persona", help="persona whose directives the prompts carry (default: each dialogue's own, else 'default')")
    train.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    train.add_argument("--holdout", type=float, default=0.2, help="share of cards held out for evaluation (default 0.2)")
    train.add_argument("--lr", type=float, default=5e-4, help="learning rate (default 5e-4)")
    train.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--max-length", type=int, default=1024, help="tokens per example; longer prompts lose their start")
    train.add_argument("--eval-max-tokens", type=int, default=48, help="tokens per held-out reply, as the run's max_tokens (default 48)")
    train.add_argument("--eval-per-card", type=int, default=2, help="held-out dialogues answered per held-out card (default 2)")
    train.add_argument("--no-base-eval", action="store_true", help="skip the bare base model's held-out figures")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--layers", help="comma-separated layer indices to adapt (default: all; the last few train much faster)")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from esc_eval.agents.lora_training import TrainingOptions
    from esc_eval.runs.cli.judge import layer_list
    from esc_eval.runs.training.seeker import train_command

    options = TrainingOptions(steps=args.steps, lr=args.lr, rank=args.rank, batch_size=args.batch_size, max_length=args.max_length,
                              holdout=args.holdout, seed=args.seed, eval_max_tokens=args.eval_max_tokens,
                              layers=layer_list(args.layers), compare_base=not args.no_base_eval)
    print(train_command(args.dialogues, args.cards, args.base, args.protocol, args.out, options, args.persona, args.eval_per_card))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from esc_eval.roles.personas import base_role_break
    from esc_eval.runs.analysis.seeker import GROUPS, evaluate, stored_episodes
    from esc_eval.runs.store import Store

    by = [b.strip() for b in args.by.split(",") if b.strip()]
    unknown = [b for b in by if b not in GROUPS]
    if unknown or not by:
        raise UsageError(f"--by: unknown group column {', '.join(unknown) or repr(args.by)} (use seeker, persona)")
    config = None
    if args.judge is not None:
        from esc_eval.runs.config import check_api_keys, load_config

        config = load_config(args.judge, judge_only=True)
        check_api_keys(config)
    if not args.store.exists():
        raise UsageError(f"{args.store}: no such store" + (" or dialogues file" if args.store.suffix.lower() in (".json", ".jsonl") else ""))
    if args.cards_report is not None and args.reference is None:
        raise UsageError("--cards-report: pairs episodes with --reference dialogues; give --reference too")
    from esc_eval.runs.analysis.realism import RealismError, Reference, cards_report, check_language, file_episodes, is_store

    try:
        reference = Reference.read(args.reference) if args.reference is not None else None
        report = cards_report(args.cards_report) if args.cards_report is not None else None
        if is_store(args.store) or args.store.suffix.lower() not in (".json", ".jsonl"):
            with Store.open(args.store, readonly=True) as store:
                episodes = stored_episodes(store)
        else:
            episodes = file_episodes(args.store)
        if reference is not None:
            for episode in episodes:
                check_language(episode.language, reference.language, reference.path)
    except RealismError as exc:
        raise UsageError(str(exc)) from None
    ratings = None
    if config is not None:
        ratings, unrated = asyncio.run(_judge(config, episodes))
        if unrated:
            print(f"esc-eval: warning: {unrated} episode(s) got no human-likeness rating (judge failed or gave no 0-4 digit); "
                  "human_likeness averages the rated ones", file=sys.stderr)
    rows = evaluate(episodes, base_role_break(), by, ratings)
    if reference is not None:
        _add_realism(rows, episodes, by, reference, report, args)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.format == "json" else _table(rows))
    return 0


def _add_realism(rows: list[dict[str, Any]], episodes: list[Any], by: list[str], reference: Any,
                 report: dict[str, str] | None, args: argparse.Namespace) -> None:
    """Each row's ``realism``: its group's episodes against ``reference``; with ``report``, at least one pair or exit 2."""
    from esc_eval.roles.personas import base_role_break
    from esc_eval.runs.analysis.realism import compare
    from esc_eval.runs.analysis.seeker import GROUPS

    groups: dict[tuple[Any, ...], list[Any]] = {}
    for episode in episodes:
        groups.setdefault(tuple(episode.labels[g] if g in by else "*" for g in GROUPS), []).append(episode)
    for row in rows:
        members = groups[(row["seeker"], row["persona"])]
        row["realism"] = compare(members, reference, base_role_break(), args.seed, report)
    if report is not None and not any(row["realism"]["pairs"] for row in rows):
        raise UsageError(f"--cards-report: {args.cards_report}: no episode's card was built from a dialogue of "
                         f"{reference.path} (its items are named {reference.dialogues[0].key!r} ...)")


async def _judge(config: Any, episodes: list[Any]) -> tuple[dict[str, float], int]:
    from esc_eval.agents.messages import SamplingParams
    from esc_eval.runs.analysis.seeker import judge_human_likeness
    from esc_eval.runs.execution.pool import BackendPool

    pool = BackendPool()
    try:
        backend = pool.get("judge", config.judge)
        return await judge_human_likeness(episodes, backend, SamplingParams(max_tokens=8, temperature=0.0))
    finally:
        await pool.aclose()


def _table(rows: list[dict[str, Any]]) -> str:
    from esc_eval.runs.analysis.render import rich_text
    from esc_eval.runs.analysis.seeker import EXTRA_FIELDS, FIELDS

    header = [f for f in FIELDS + EXTRA_FIELDS if f != "ci"]
    cells = [[_cell(row[name], row["ci"].get(name)) for name in header] for row in rows]
    note = "mean [95% interval over cards]; '-': not applicable (no card facts, no distress, no judge)"
    if rows and "realism" in rows[0]:
        header += ["realism", "auc"]
        for row, line in zip(rows, cells):
            realism = row["realism"]
            line += ["-" if realism["index"] is None else f"{realism['index']:.0f}", _cell(realism["auc"], realism["auc_ci"])]
        note += (f"; realism: 0-100 index (100 = human) against {rows[0]['realism']['reference']}, auc: a classifier telling "
                 "the rows' dialogues from the human ones [95% interval] (0.5 = indistinguishable); per-feature distances "
                 "and pairs in --format json")
    return rich_text("Seeker fidelity", header, cells, note, right_from=2, lines=False)


def _cell(value: Any, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, (str, int)):
        return str(value)
    return f"{value:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
