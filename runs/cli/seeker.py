"""``esc-eval seeker eval STORE``: how faithfully the simulated seeker played its part, per seeker model and persona."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from runs.cli.errors import UsageError

FORMATS = ("table", "json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``seeker`` command group: ``seeker eval STORE`` prints the seeker fidelity figures."""
    seeker = sub.add_parser("seeker", help="the simulated seeker's fidelity: 'seeker eval STORE'",
                            description="esc-eval seeker eval STORE: role breaks, parroting, repetition, card grounding, "
                                        "distress arc and (with --judge) human-likeness, per seeker model and persona")
    actions = seeker.add_subparsers(required=True, metavar="ACTION")
    evaluate = actions.add_parser("eval", help="fidelity figures from a store's finished dialogues")
    evaluate.add_argument("store", type=Path)
    evaluate.add_argument("--format", choices=FORMATS, default="table")
    evaluate.add_argument("--by", default="seeker,persona", help="group columns, comma-separated: seeker, persona (default both)")
    evaluate.add_argument("--judge", type=Path, metavar="CONFIG",
                          help="a TOML file with a [judge] section: rates the seeker's lines for human-likeness (0-4)")
    evaluate.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from roles.personas import base_role_break
    from runs.analysis.seeker import GROUPS, evaluate, stored_episodes
    from runs.store import Store

    by = [b.strip() for b in args.by.split(",") if b.strip()]
    unknown = [b for b in by if b not in GROUPS]
    if unknown or not by:
        raise UsageError(f"--by: unknown group column {', '.join(unknown) or repr(args.by)} (use seeker, persona)")
    config = None
    if args.judge is not None:
        from runs.config import check_api_keys, load_config

        config = load_config(args.judge, judge_only=True)
        check_api_keys(config)
    if not args.store.exists():
        raise UsageError(f"{args.store}: no such store")
    with Store.open(args.store, readonly=True) as store:
        episodes = stored_episodes(store)
    ratings = None
    if config is not None:
        ratings, unrated = asyncio.run(_judge(config, episodes))
        if unrated:
            print(f"esc-eval: warning: {unrated} episode(s) got no human-likeness rating (judge failed or gave no 0-4 digit); "
                  "human_likeness averages the rated ones", file=sys.stderr)
    rows = evaluate(episodes, base_role_break(), by, ratings)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.format == "json" else _table(rows))
    return 0


async def _judge(config: Any, episodes: list[Any]) -> tuple[dict[str, float], int]:
    from agents.messages import SamplingParams
    from runs.analysis.seeker import judge_human_likeness
    from runs.execution.pool import BackendPool

    pool = BackendPool()
    try:
        backend = pool.get("judge", config.judge)
        return await judge_human_likeness(episodes, backend, SamplingParams(max_tokens=8, temperature=0.0))
    finally:
        await pool.aclose()


def _table(rows: list[dict[str, Any]]) -> str:
    from runs.analysis.render import rich_text
    from runs.analysis.seeker import EXTRA_FIELDS, FIELDS

    header = [f for f in FIELDS + EXTRA_FIELDS if f != "ci"]
    cells = [[_cell(row[name], row["ci"].get(name)) for name in header] for row in rows]
    return rich_text("Seeker fidelity", header, cells,
                      "mean [95% interval over cards]; '-': not applicable (no card facts, no distress, no judge)",
                      right_from=2, lines=False)


def _cell(value: Any, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, (str, int)):
        return str(value)
    return f"{value:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
