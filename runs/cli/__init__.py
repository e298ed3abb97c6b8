"""The ``esc-eval`` command. Exit codes: 0 ok, 1 run finished with failed episodes or scores (or an endpoint refused
its credentials), 2 bad input."""

from __future__ import annotations

import os

# Spinning OpenMP threads slow CPU generation ~10x when cores are shared; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import logging
import sys
import time
import warnings
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Sequence

from agents.backends.base import LOADING_LOG
from roles.cards import CardError
from roles.personas import PersonaError
from roles.loaders import load_cards
from roles.templates import ProtocolError
from runs.config import Config, ConfigError, check_api_keys, load_config, parse_config
from runs.formats.importing import ResultFileError, supporter_and_language
from runs.formats.judging import Judged, TranscriptError
from runs.analysis.report import ReportError
from runs.cli import config as config_command
from runs.cli import plugins as plugins_command
from runs.store import StoreError

FAILED_EPISODES = 1  # the run finished, but the store holds failed episodes or judge scores (runs.execution.runner.RunResult.exit_code)
BAD_INPUT = 2


class UsageError(Exception):
    """Bad input found by the CLI itself (paths, flags)."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `esc-eval judge train ...` trains judge adapters; any other `esc-eval judge X` scores transcripts X
    parser = _judge_train_parser() if argv[:2] == ["judge", "train"] else _parser()
    args = parser.parse_args(argv[2:] if argv[:2] == ["judge", "train"] else argv)
    _quiet_libraries()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().handlers[0].setFormatter(_LineFormatter())
    logging.getLogger(LOADING_LOG).setLevel(logging.INFO)  # "loading MODEL", "loaded MODEL in 14.2 s"
    from runs.annotation.server import AnnotationError
    from agents.judge.training import TrainingError

    try:
        return int(args.handler(args) or 0)
    except (ConfigError, CardError, PersonaError, ProtocolError, StoreError, TranscriptError, ReportError,
            ResultFileError, UsageError, AnnotationError, TrainingError) as exc:
        print(f"esc-eval: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("esc-eval: interrupted", file=sys.stderr)
        return 130


class _LineFormatter(logging.Formatter):
    """Progress (INFO) as ``esc-eval: message``; warnings and errors with their level and source."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"esc-eval: {record.getMessage()}" if record.levelno == logging.INFO else super().format(record)


def _quiet_libraries() -> None:
    """Keep library chatter a user cannot act on out of esc-eval's output.

    Hugging Face's per-file progress bars ("Loading weights 272/272") and advisory logs,
    and Future/Deprecation/User warnings raised inside our dependencies, say something to
    their developers, not to someone running an evaluation; esc-eval prints its own line
    per model load instead (``LOADING_LOG``). Variables a user set win.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=_NOISY_LIBRARIES)


_NOISY_LIBRARIES = r"(transformers|torch|peft|accelerate|huggingface_hub|vllm|ray|autogen_core|gguf)(\.|$)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esc-eval", description="Evaluate emotional-support conversation models by simulation.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a small evaluation on the embedded model (no server)")
    demo.add_argument("--sessions", type=int, default=4, help="number of conversations (default 4)")
    demo.add_argument("--store", type=Path, help="SQLite store to write (default ./esc-eval-runs/demo-TIME.sqlite)")
    demo.add_argument("--rounds", type=int, help="rounds per conversation (default 3)")
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="run the evaluation a TOML config describes")
    run.add_argument("config", type=Path)
    run.add_argument("--store", type=Path, help="overrides [run] store")
    run.add_argument("--resume", action="store_true", help="continue a run in an existing store")
    run.add_argument("--retry-failed", action="store_true", help="with --resume: run failed episodes again")
    run.add_argument("--allow-config-change", action="store_true",
                     help="with --resume: continue although the config changed (recorded in the store)")
    run.add_argument("--no-monitor", action="store_true", help="plain progress lines instead of the live display")
    run.add_argument("--monitor-interval", type=float, metavar="SECONDS",
                     help="seconds between plain progress lines (default 5) or dashboard frames (default 0.25)")
    run.add_argument("--ray", metavar="ADDRESS",
                     help="run on Ray workers ([run] workers): 'local' starts a local cluster, else a cluster address "
                          "('auto', 'ray://HOST:10001'); see docs/distributed.md")
    run.set_defaults(handler=_run)

    monitor = sub.add_parser("monitor", help="live view of a running or finished run, read-only from its store")
    monitor.add_argument("store", type=Path)
    monitor.add_argument("--episode", metavar="KEY", help="follow this episode turn by turn (its key or a unique part of it)")
    monitor.add_argument("--once", action="store_true", help="print one frame and exit")
    monitor.add_argument("--interval", type=float, metavar="SECONDS",
                         help="seconds between refreshes (default 1 in a terminal, 5 for plain lines)")
    monitor.set_defaults(handler=_monitor)

    export = sub.add_parser("export", help="write a store's transcripts (and scores) as files")
    export.add_argument("store", type=Path)
    export.add_argument("--format", choices=("esc-eval", "jsonl"), default="esc-eval")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--allow-missing", action="store_true",
                        help="esc-eval format: write -1 for judge scores that failed or never ran (else: exit 1, nothing written)")
    export.set_defaults(handler=_export)

    judge = sub.add_parser("judge", help="score existing transcripts (ESC-Eval result files or JSONL exports)")
    judge.add_argument("transcripts", type=Path)
    judge.add_argument("--config", type=Path, required=True, help="a TOML file with a [judge] section")
    judge.add_argument("--language", choices=("en", "zh"), help="default: from the file name (_en/_zh) or the text")
    judge.add_argument("--out", type=Path, help="write ESC-Eval's score format here (SCORES.json)")
    judge.add_argument("--store", type=Path, help="also import the transcripts and every judgement (model, raw reply, failures) "
                                                   "into this store (ESC-Eval result files)")
    judge.add_argument("--supporter", help="with --store: the supporter (default: from the file name, MODEL_LANG.json)")
    judge.set_defaults(handler=_judge)

    serve = sub.add_parser("serve", help="start the vLLM servers a config points at (127.0.0.1 ports, LoRA adapters); Ctrl-C stops them")
    serve.add_argument("config", type=Path)
    serve.add_argument("--python", default=sys.executable, metavar="PATH",
                       help="interpreter of the environment that has vLLM (default: this one; see scripts/vllm-env.sh)")
    serve.add_argument("--cpu", action="store_true", help="vLLM's CPU build: --enforce-eager and small-KV-cache defaults")
    serve.add_argument("--vllm-args", default="", metavar="ARGS", help="more arguments for every server, e.g. '--dtype bfloat16'")
    serve.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS", help="readiness wait per server (default 900)")
    serve.add_argument("--log-dir", type=Path, default=Path("esc-eval-runs/serve"), help="server logs (default esc-eval-runs/serve)")
    serve.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")
    serve.set_defaults(handler=_serve)

    report = sub.add_parser("report", help="leaderboard of a run: the 7 ESC-RANK dimensions per supporter")
    report.add_argument("store", type=Path)
    report.add_argument("--format", choices=("table", "md", "json", "csv"), default="table")
    report.add_argument("--by", action="append", default=[], metavar="COLUMNS",
                        help="group by supporter, language, category, source, persona (comma-separated or repeated)")
    report.add_argument("--plot", type=Path, metavar="PNG", help="also draw a comparison chart (needs esc-eval[plot])")
    report.add_argument("--agreement", type=Path, nargs="?", const=True, metavar="SCORES.json",
                        help="judge-vs-human ACC / ACC_soft against a human score file; with no file, against the store's "
                             "annotations (esc-eval annotate), with inter-annotator alpha; --plot then draws confusion matrices")
    report.add_argument("--compare", action="store_true",
                        help="paired comparisons of every two supporters per dimension (bootstrap CI, permutation p, Holm) "
                             "and rank intervals; with --plot also a forest plot (PNG-compare.png)")
    report.add_argument("--corrected", action="store_true",
                        help="also prediction-powered means that correct the judge with the store's human labels (esc-eval annotate)")
    report.add_argument("--power", type=float, metavar="DELTA",
                        help="cards needed to detect a difference of DELTA points at 80%% power, and the difference "
                             "detectable with this store's cards")
    report.add_argument("--supporter", help="only this supporter")
    report.add_argument("--language", choices=("en", "zh"), help="only this language")
    report.set_defaults(handler=_report)

    imports = sub.add_parser("import", help="load ESC-Eval result (and score) files or a JSONL export into a store; "
                                            "episodes the store has are skipped")
    imports.add_argument("store", type=Path)
    imports.add_argument("files", type=Path, nargs="+", metavar="RESULT.json|EPISODES.jsonl")
    imports.add_argument("--scores", type=Path, nargs="*", default=[], metavar="SCORE.json")
    imports.add_argument("--supporter", help="ESC-Eval result files: the supporter (default: from the name, MODEL_LANG.json)")
    imports.add_argument("--language", help="ESC-Eval result files: the language, en or zh (default: from the name)")
    imports.set_defaults(handler=_import)

    annotate = sub.add_parser("annotate", help="label a store's dialogues by hand in a web page; export/import the labels")
    annotate.add_argument("store", type=Path)
    annotate.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    annotate.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    annotate.add_argument("--k", type=int, default=2, help="annotators per dialogue (default 2)")
    annotate.add_argument("--profile", default="default", help="judge profile whose dimensions and rubric are shown (built-in name or path)")
    annotate.add_argument("--export", type=Path, metavar="LABELS.jsonl|SCORES.json", help="write the labels (no server)")
    annotate.add_argument("--import", dest="import_", type=Path, metavar="LABELS.jsonl|SCORES.json", help="read labels into the store (no server)")
    annotate.add_argument("--annotator", help="with --export: only this annotator's labels; with --import: store them under this name")
    annotate.add_argument("--supporter", help="with --export/--import of a score file: this supporter's episodes")
    annotate.add_argument("--language", choices=("en", "zh"), help="with --export/--import of a score file: this language's episodes")
    annotate.add_argument("--unblind", action="store_true", help="show annotators which supporter, persona and card made each dialogue")
    annotate.set_defaults(handler=_annotate)

    cards = sub.add_parser("cards", help="role card tools")
    cards_sub = cards.add_subparsers(required=True, metavar="ACTION")
    validate = cards_sub.add_parser("validate", help="check a card file and summarise it")
    validate.add_argument("file", type=Path)
    validate.add_argument("--language", choices=("en", "zh"))
    validate.set_defaults(handler=_cards_validate)

    personas = sub.add_parser("personas", help="seeker personas: list them, show what they ask the seeker")
    personas_sub = personas.add_subparsers(required=True, metavar="ACTION")
    plist = personas_sub.add_parser("list", help="built-in personas, files in --dir, and installed plugins")
    plist.add_argument("--dir", type=Path, action="append", default=[], help="also list the persona files in this folder")
    plist.set_defaults(handler=_personas_list)
    show = personas_sub.add_parser("show", help="the seeker prompt a persona compiles into, round by round")
    show.add_argument("name", help="a built-in, plugin or file in --dir, or a .yaml path")
    show.add_argument("--dir", type=Path, action="append", default=[], help="look for NAME.yaml here first")
    show.add_argument("--card-language", choices=("en", "zh"), default="en", help="the sample built-in card's language")
    show.add_argument("--protocol", default="default", help="seeker protocol (built-in name or path)")
    show.add_argument("--rounds", type=int, default=5)
    show.add_argument("--supporter", choices=("empathic", "advice", "neutral"), default="empathic",
                      help="how the imagined supporter answers every round (moves emotion and ending rules)")
    show.set_defaults(handler=_personas_show)
    plugins_command.add_parser(sub)
    config_command.add_parser(sub)
    return parser


def _demo(args: argparse.Namespace) -> int:
    if args.sessions < 1:
        raise UsageError(f"--sessions must be at least 1, got {args.sessions}")
    source = resources.files("runs") / "data" / "demo.toml"
    import tomllib

    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    raw["cards"]["limit"] = args.sessions
    if args.rounds:
        raw["run"]["rounds"] = args.rounds
    config = parse_config(raw, "demo.toml")
    store = args.store or Path("esc-eval-runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"
    print("esc-eval demo: SmolLM2-135M-Instruct (embedded) plays seeker and supporter; first start converts the model (~20 s)")
    return _execute(config, store, resume=False, retry_failed=False, monitor=True,
                    retry_hint="a demo is not resumed: run it again (the store keeps each failed episode's reason)")


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = args.store or (Path(config.run.store) if config.run.store else Path("esc-eval-runs") / f"{config.run.name}.sqlite")
    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed needs --resume")
    if args.allow_config_change and not args.resume:
        raise UsageError("--allow-config-change needs --resume")
    if args.monitor_interval is not None and args.monitor_interval <= 0:
        raise UsageError(f"--monitor-interval must be positive, got {args.monitor_interval}")
    return _execute(config, store, resume=args.resume, retry_failed=args.retry_failed, monitor=not args.no_monitor,
                    allow_config_change=args.allow_config_change, monitor_interval=args.monitor_interval,
                    ray_address=args.ray)


def _execute(config: Config, store_path: Path, *, resume: bool, retry_failed: bool, monitor: bool,
             allow_config_change: bool = False, monitor_interval: float | None = None,
             ray_address: str | None = None, retry_hint: str = "run them again with --resume --retry-failed") -> int:
    from runs.execution.plan import RunPlan
    from runs.execution.resume import open_run_store
    from runs.execution.runner import Runner
    from runs.store import Store

    plan = RunPlan.prepare(config)  # every input check happens before the store exists
    check_api_keys(config)
    distributed = ray_address is not None or config.run.executor == "ray"
    if distributed:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError('the ray executor (--ray, [run] executor = "ray") needs Ray: pip install "esc-eval[ray]"') from None
    opened = open_run_store(plan, store_path, resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change)
    store, earlier_failed = opened.store, opened.earlier_failed
    if distributed:
        from runs.distributed import DistributedRunner

        runner = DistributedRunner(plan, store, address=ray_address or config.run.ray_address, retry_failed=retry_failed)
    else:
        runner = Runner(plan, store, retry_failed=retry_failed)
    print(f"store: {store_path}")
    from runs.monitor import is_terminal, run_with_monitor

    result = _run_loop(run_with_monitor(runner, live=monitor and is_terminal(), interval=monitor_interval,
                                        title=f"{config.run.name} · {store_path}"))
    reader = Store.open(store_path, readonly=True)
    try:
        failed_scores = reader.failed_scores()  # this attempt's and, unless re-scored, earlier ones
    finally:
        reader.close_sync()
    _summary(result.progress, store_path, retry_hint, earlier_failed, idle=result.idle, failed_scores=failed_scores,
             auth_failure=result.auth_failure)
    if (earlier_failed or failed_scores) and not result.exit_code:
        return FAILED_EPISODES  # a resumed run exits as a fresh one would with these episodes failed
    return result.exit_code


def _run_loop(main):  # type: ignore[no-untyped-def]
    """``asyncio.run``, on uvloop when it is installed (extra ``perf``): less CPU per request at high concurrency."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _summary(progress: object, store_path: Path, retry_hint: str, earlier_failed: int = 0, *, idle: bool = False,
             failed_scores: int = 0, auth_failure: str | None = None) -> None:
    from runs.execution.progress import RunProgress

    assert isinstance(progress, RunProgress)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(progress.outcomes.items())) or "none"
    if idle:
        scored = "" if earlier_failed or failed_scores else " and are scored"
        print(f"nothing to do: all {progress.planned} planned episodes already ended{scored}")
    else:
        print(
            f"done: {progress.done} episodes finished, {progress.failed} failed, {progress.skipped} already done "
            f"({outcomes}); {progress.turns} turns in {progress.elapsed():.1f}s"
        )
    if auth_failure:  # no retry hint: the same key fails again until someone fixes it
        print(f"esc-eval: {auth_failure}: the endpoint refused the credentials, so the run stopped early; "
              "check the key in the variable its api_key_env names", file=sys.stderr)
    elif progress.failed or earlier_failed:
        earlier = f" ({earlier_failed} from an earlier attempt)" if earlier_failed else ""
        print(f"hint: {progress.failed + earlier_failed} failed episodes remain in the store{earlier}; {retry_hint}")
    if failed_scores and not auth_failure:
        print(f"hint: {failed_scores} judge scores failed (the judge gave up) and are missing from the results; {retry_hint}")
    print(f"store: {store_path}")
    print(f"next: esc-eval export {store_path} --format esc-eval --out OUT_DIR")


def _monitor(args: argparse.Namespace) -> int:
    from runs.monitor import monitor_command

    if args.interval is not None and args.interval <= 0:
        raise UsageError(f"--interval must be positive, got {args.interval}")
    return monitor_command(args.store, args.episode, args.once, args.interval)


def _export(args: argparse.Namespace) -> int:
    from runs.formats.exchange import MissingScores, export_esc_eval, export_jsonl
    from runs.store import Store

    store = Store.open(args.store, readonly=True)
    try:
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
    finally:
        store.close_sync()
    for path in written:
        print(path)
    return 0


def _judge(args: argparse.Namespace) -> int:
    import json

    from runs.formats.judging import judge_transcripts

    config = load_config(args.config, judge_only=True)
    check_api_keys(config)
    if args.out is not None and args.out.suffix != ".json":
        raise UsageError(f"{args.out}: --out must name a .json file")
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


def _serve(args: argparse.Namespace) -> int:
    import shlex

    from runs.serve import serve

    config = _load_serve_config(args.config)
    return serve(config, python=args.python, cpu=args.cpu, extra=shlex.split(args.vllm_args),
                 timeout=args.timeout, log_dir=args.log_dir, dry_run=args.dry_run)


def _load_serve_config(path: Path) -> Config:
    """A full config, or one with only ``[judge]`` (a judge-only server)."""
    import tomllib

    try:
        judge_only = set(tomllib.loads(path.read_text(encoding="utf-8"))) == {"judge"}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        judge_only = False  # load_config names the problem
    return load_config(path, judge_only=judge_only)


def _judge_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esc-eval judge train",
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
    return parser


def _judge_train(args: argparse.Namespace) -> int:
    from agents.judge.training import TrainingOptions, train_command

    options = TrainingOptions(steps=args.steps, lr=args.lr, rank=args.rank, batch_size=args.batch_size,
                              max_length=args.max_length, holdout=args.holdout, seed=args.seed,
                              layers=_layers(args.layers))
    dimensions = [d.strip() for d in args.dimensions.split(",") if d.strip()] if args.dimensions else None
    print(train_command(args.labels, args.base, args.profile, args.out, options, dimensions=dimensions))
    return 0


def _layers(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--layers must be comma-separated layer numbers, got {text!r}") from None


def _annotate(args: argparse.Namespace) -> int:
    from runs.annotation.server import annotate_command

    return annotate_command(args.store, port=args.port, host=args.host, k=args.k, profile=args.profile, export=args.export,
                            import_=args.import_, annotator=args.annotator, supporter=args.supporter, language=args.language,
                            unblind=args.unblind)


def _report(args: argparse.Namespace) -> int:
    from runs.analysis.report import report_command

    print(report_command(args.store, args.format, args.plot, args.by, args.agreement, args.supporter, args.language,
                         compare=args.compare, corrected=args.corrected, power_delta=args.power))
    return 0


def _import(args: argparse.Namespace) -> int:
    from runs.formats.importing import import_command

    print(import_command(args.store, args.files, args.scores, supporter=args.supporter, language=args.language))
    return 0


def _store_judged(store_path: Path, transcripts: Path, judged: Judged, supporter: str | None) -> None:
    from runs.formats.judging import store_judged
    from runs.store import Store

    store = Store.open(store_path, create=not store_path.exists())
    try:
        summary = store_judged(store, transcripts, judged, supporter=supporter)
    finally:
        store.close_sync()
    print(f"{store_path}: {summary.episodes} dialogues and {summary.scores} judgements of {summary.supporter} ({summary.language}); "
          f"skipped {summary.skipped} already in the store")


def _cards_validate(args: argparse.Namespace) -> int:
    cards = load_cards(args.file, language=args.language)
    languages = Counter(c.language for c in cards)
    categories = Counter(c.category for c in cards)
    print(f"{args.file}: {len(cards)} valid cards; languages: {dict(languages)}; categories: {dict(categories)}")
    return 0


def _personas_list(args: argparse.Namespace) -> int:
    from environments.behaviours import list_personas
    from roles.personas import PersonaError

    try:
        found = list_personas(args.dir)
    except PersonaError as exc:
        raise UsageError(str(exc)) from None
    width = max(len(p.name) for p in found)
    source_width = max(len(p.source) for p in found)
    for info in found:
        print(f"{info.name:<{width}}  {info.source:<{source_width}}  {info.description}")
    return 0


def _personas_show(args: argparse.Namespace) -> int:
    from environments.behaviours import load_behaviour, preview
    from roles.loaders import builtin_cards
    from roles.personas import PersonaError
    from roles.templates import load_protocol

    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    card = builtin_cards(args.card_language)[0]
    protocol = load_protocol(args.protocol)
    try:
        name, behaviour = load_behaviour(args.name, dirs=args.dir)
        persona = getattr(behaviour, "persona", None)
        if persona is not None:
            persona.require([card.language])
        rounds, outcome = preview(behaviour, card, opener=protocol.opener(card.language), rounds=args.rounds,
                                  supporter=args.supporter, persona=name)
    except PersonaError as exc:
        raise UsageError(str(exc)) from None
    source = persona.source if persona is not None else type(behaviour).__module__ + "." + type(behaviour).__qualname__
    print(f"persona {name} ({source})")
    print(f"card {card.id} ({card.language}), protocol {protocol.name}, the supporter answers: {args.supporter}")
    print("\n== seeker system prompt, every round ==")
    print(protocol.seeker_prompt(card))
    for shown in rounds:
        state = shown.state
        facts = f", may share {state['stage']}/{state['facts']} facts" if state.get("stage") is not None else ""
        feeling = f": distress {state['distress']} ({state['emotion']}){facts}" if "distress" in state else ""
        print(f"\n== round {shown.round}{feeling} ==")
        print(shown.directives.strip("\n") if shown.directives else "(nothing added)")
    if outcome is not None:
        print(f"\n== the seeker leaves: {outcome.kind.value} ({outcome.reason}) ==")
    return 0

