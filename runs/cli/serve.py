"""``esc-eval serve CONFIG.toml``: start the vLLM OpenAI servers a config points at.

Every ``openai`` endpoint of the config (seeker, supporters, judge) whose ``base_url``
is on this machine (``127.0.0.1``/``localhost``) gets one vLLM server on that port
(``plan_servers``); ``esc_eval.agents.backends.vllm_server`` launches them. Endpoints that share a
port must name the same model; ``vllm`` and ``transformers`` endpoints run in-process and
need no server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

from esc_eval.agents.backends.vllm_server import ServerPlan, serve
from esc_eval.runs.config import Config, ConfigError, EndpointConfig, load_config

LOCAL_HOSTS = ("127.0.0.1", "localhost")


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

    plans = plan_servers(_load_serve_config(args.config))
    return serve(plans, python=args.python, cpu=args.cpu, extra=shlex.split(args.vllm_args),
                 timeout=args.timeout, log_dir=args.log_dir, dry_run=args.dry_run)


def _load_serve_config(path: Path) -> Config:
    """A full config, or one with only ``[judge]`` (a judge-only server)."""
    import tomllib

    try:
        judge_only = set(tomllib.loads(path.read_text(encoding="utf-8"))) == {"judge"}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        judge_only = False  # load_config names the problem
    return load_config(path, judge_only=judge_only)


def plan_servers(config: Config) -> list[ServerPlan]:
    """The servers ``config`` needs, one per local port; raises ``ConfigError`` on a clash."""
    endpoints: list[tuple[str, EndpointConfig]] = [(f"seekers[{i}] ({s.name})" if config.seekers else "seeker", s)
                                                   for i, s in enumerate(config.seeker_sections)]
    endpoints += [(f"supporters[{i}] ({s.name})", s) for i, s in enumerate(config.supporters)]
    if config.judge is not None:
        endpoints.append(("judge", config.judge))
    by_port: dict[int, ServerPlan] = {}
    for role, endpoint in endpoints:
        if endpoint.backend != "openai" or not endpoint.base_url or not endpoint.model:
            continue
        url = urlsplit(endpoint.base_url)
        if url.hostname not in LOCAL_HOSTS:
            continue
        port = url.port or (443 if url.scheme == "https" else 80)
        plan = by_port.get(port)
        if plan is None:
            by_port[port] = ServerPlan(endpoint.model, port, [role], dict(endpoint.lora))
            continue
        if plan.model != endpoint.model:
            raise ConfigError(f"{config.path}: [{role}] field 'model': port {port} already serves {plan.model!r} "
                              f"for {plan.roles[0]}; one vLLM server serves one base model, got {endpoint.model!r}")
        for name, path in endpoint.lora.items():
            if plan.lora.get(name, path) != path:
                raise ConfigError(f"{config.path}: [{role}] field 'lora': adapter {name!r} on port {port} is already {plan.lora[name]!r}")
            plan.lora[name] = path
        plan.roles.append(role)
    return list(by_port.values())
