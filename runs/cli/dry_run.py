"""``esc-eval run CONFIG --dry-run [--calibrate PILOT_STORE] [--format json]``: the plan's requests, tokens and cost.

Checks the config as a run does, then prints ``esc_eval.runs.execution.estimate``'s figures; it
contacts no endpoint, loads no model and writes nothing (docs/cost.md). With ``--resume`` (``--store``,
``--retry-failed``, ``--allow-config-change`` as a run takes them) only the episodes a resume of the store would
play are estimated; the store is checked as a resume checks it and read, never written. Without it, a store a new
run would refuse (one that exists already) is named in a note: the figures are the whole plan's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from esc_eval.runs.cli.errors import UsageError
from esc_eval.runs.config import load_config
from esc_eval.runs.pricing import ROLES, usd_text

if TYPE_CHECKING:  # the estimate loads the agents and environments: only when a dry run is asked for
    from esc_eval.runs.execution.estimate import Estimate


def dry_run(config_path: Path, calibrate: Path | None, fmt: str, *, store: Path | None = None, resume: bool = False,
            retry_failed: bool = False, allow_config_change: bool = False) -> int:
    """Print the estimate of the run ``config_path`` describes (with ``resume``: of what a resume of ``store``, default
    the config's, would play); bad input raises (exit 2)."""
    from esc_eval.runs.execution.estimate import Calibration, Resumed, estimate
    from esc_eval.runs.execution.launch import RunOptionError, check_options, default_store
    from esc_eval.runs.execution.plan import RunPlan
    from esc_eval.runs.execution.resume import check_run_store
    from esc_eval.runs.store import StoreError

    try:
        check_options(resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change)
    except RunOptionError as exc:
        raise UsageError(str(exc)) from None
    config = load_config(config_path)
    plan = RunPlan.prepare(config)  # every check a run makes before it writes or contacts anything
    store = store or default_store(config)
    resumed, refused = None, None
    if resume:  # the store a real --resume continues, refused as it refuses it (missing, another plan's)
        resumed = Resumed.read(plan, store, retry_failed=retry_failed, allow_config_change=allow_config_change)
    else:  # the estimate stands, but the run it previews would stop at its store: say so
        try:
            check_run_store(plan, store, resume=False)
        except StoreError as exc:
            refused = f"a run would refuse its store: {exc} (with --dry-run --resume: the estimate of what a resume plays)"
    calibration = None
    if calibrate is not None:
        if not calibrate.is_file():
            raise UsageError(f"--calibrate {calibrate}: no such store")
        try:
            calibration = Calibration.read(calibrate)
        except ValueError as exc:
            raise UsageError(f"--calibrate {exc}") from None
    result = estimate(plan, calibration, resumed)
    if refused is not None:
        result.notes.append(refused)
    if fmt == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(table(result, str(config_path)))
    return 0


def table(result: Estimate, name: str) -> str:
    """The estimate as the terminal shows it: one row per role, then the totals and what the expectation assumes."""
    data = result.to_json()
    lines = [f"dry run of {name}: nothing contacted, nothing written", f"episodes: {data['episodes']}{_resumed(data)}",
             f"{'role':<10} {'requests':>9} {'input tok':>12} {'output tok':>11} {'cost':>12} {'requests max':>13} {'cost max':>12}"]
    for role in ROLES:
        if not data["requests_max"][role]:
            continue
        tokens, costs = data["tokens"][role], data["by_role"][role]
        lines.append(f"{role:<10} {data['requests'][role]:>9,} {tokens['input']:>12,} {tokens['output']:>11,} "
                     f"{usd_text(costs['cost_usd']):>12} {data['requests_max'][role]:>13,} {usd_text(costs['cost_usd_max']):>12}")
    lines.append(f"{'total':<10} {'':>9} {'':>12} {'':>11} {usd_text(data['cost_usd']):>12} {'':>13} {usd_text(data['cost_usd_max']):>12}")
    if data["calibrated_from"]:
        lines.append(f"expected: reply lengths and usage per episode measured in the pilot {data['calibrated_from']}")
    else:
        lines.append(f"expected: replies at {data['reply_fraction']:.0%} of max_tokens (measure them: --calibrate PILOT_STORE)")
    lines.append("max: every reply at max_tokens, every episode to its limit, every role-break retry taken (an upper bound)")
    if data["cost_usd"] is None:
        lines.append("cost: '–' where an endpoint has no price = { input = USD, output = USD } (per million tokens; docs/cost.md)")
    if data.get("rescoring"):
        lines.append(f"note: a resume also asks for the missing judge scores or safety judgements of {data['rescoring']} "
                     "finished episodes (not counted here)")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _resumed(data: dict[str, object]) -> str:
    """What a resume leaves out, after the episode count: nothing without ``--resume``."""
    if "resumed_from" not in data:
        return ""
    failed = data["failed_left_out"]
    kept = f", {failed} failed left out: --retry-failed plays them" if failed else ""
    return f" left to play in {data['resumed_from']} ({data['already_done']} planned episodes already done{kept})"
