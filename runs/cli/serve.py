"""``esc-eval serve``: the vLLM servers a config points at (the launching itself: agents.backends.vllm_server)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runs.config import Config, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``serve`` command."""
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
