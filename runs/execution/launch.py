"""One run from a config to a finished store: the path ``esc-eval run`` and ``esc_eval.run`` share.

``execute`` checks everything before a store exists (the options, the plan, the API keys, the
executor), creates or resumes the store, drives the runner (local, or on Ray workers) and returns
its ``RunResult`` with what an earlier attempt left failed and the judge scores that failed, so
``exit_code`` is the README's table. It installs no signal handler and prints nothing: a caller
that wants a display or a Ctrl-C policy passes ``drive`` (the CLI passes ``run_with_monitor``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from esc_eval.runs.config import Config, check_api_keys
from esc_eval.runs.execution.result import RunResult
from esc_eval.runs.pricing import unpriced

if TYPE_CHECKING:
    from esc_eval.agents.backends import ChatBackend
    from esc_eval.runs.distributed import DistributedRunner
    from esc_eval.runs.execution.plan import RunPlan
    from esc_eval.runs.execution.runner import Runner

_T = TypeVar("_T")

Drive = Callable[["Runner | DistributedRunner"], Awaitable[RunResult]]
"""Runs the runner and returns its result: ``runner.run()`` by default, wrapped in a display and Ctrl-C policy by the CLI."""


class RunOptionError(ValueError):
    """Run options that do not go together, or an executor that is not installed (bad input: exit code 2)."""


def default_store(config: Config) -> Path:
    """Where a run writes when no store is given: ``[run] store``, else ``esc-eval-runs/NAME.sqlite``."""
    return Path(config.run.store) if config.run.store else Path("esc-eval-runs") / f"{config.run.name}.sqlite"


def check_options(*, resume: bool, retry_failed: bool, allow_config_change: bool) -> None:
    """Raises ``RunOptionError`` naming the flag that needs ``--resume`` (the keyword arguments of ``esc_eval.run`` mirror the flags)."""
    if retry_failed and not resume:
        raise RunOptionError("--retry-failed needs --resume")
    if allow_config_change and not resume:
        raise RunOptionError("--allow-config-change needs --resume")


async def execute(config: Config, store_path: Path, *, resume: bool = False, retry_failed: bool = False,
                  allow_config_change: bool = False, ray: str | None = None, backends: Mapping[str, ChatBackend] | None = None,
                  drive: Drive | None = None, preflight: bool = True, cache: str | Path | None = None,
                  cache_mode: str | None = None, cost_limit: float | None = None) -> RunResult:
    """Run ``config`` into the store at ``store_path``.

    Args:
        resume: continue the run in an existing store (its plan must not have changed, unless ``allow_config_change``).
        retry_failed: with ``resume``, run failed episodes (and failed judge scores) again.
        allow_config_change: with ``resume``, continue although the config changed (recorded in the store).
        ray: run on Ray workers: ``local`` starts a local cluster, else a cluster address (``[run] executor = "ray"`` too).
        backends: role name (``seeker``, a supporter's name, ``judge``) -> a backend object used instead of the config's.
        drive: how to run the runner (default: ``runner.run()``).
        preflight: ask each served endpoint for ``/models`` before the store exists (``runs/execution/preflight.py``):
            one that cannot be reached is bad input; ``False`` is ``--no-preflight``.
        cache, cache_mode: the response cache file and its mode (``--cache``, ``--cache-mode``), instead of
            ``[run] cache`` / ``cache_mode``; a file that is not a cache is bad input (docs/cost.md).
        cost_limit: USD (``--cost-limit``) instead of ``[run] cost_limit``: a positive, finite amount (docs/cost.md).

    Raises:
        ConfigError, CardError, PersonaError, ProtocolError, StoreError, RunOptionError: bad input; nothing was written.
    """
    from esc_eval.runs.execution.caching import check_cache
    from esc_eval.runs.execution.plan import RunPlan
    from esc_eval.runs.execution.resume import check_run_store, open_run_store
    from esc_eval.runs.execution.runner import Runner
    from esc_eval.runs.store import Store

    check_options(resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change)
    config = with_cost_limit(with_cache(config, cache, cache_mode), cost_limit)
    plan = RunPlan.prepare(config)  # every input check happens before the store exists
    check_cache(config.run.cache, config.run.cache_mode)
    check_api_keys(config)
    distributed = ray is not None or config.run.executor == "ray"
    if distributed:
        if backends:
            raise RunOptionError("backend objects (backends=) cannot travel to Ray workers: run them locally")
        try:
            import ray as _  # noqa: F401
        except ImportError:
            raise RunOptionError('the ray executor (--ray, [run] executor = "ray") needs Ray: pip install "esc-eval[ray]"') from None
    check_cost_limit(plan, distributed)
    check_run_store(plan, store_path, resume=resume, allow_config_change=allow_config_change)  # a refused store is named first
    if preflight and not (resume and finished_store(store_path, retry_failed)):  # a finished store opens no connection
        from esc_eval.runs.execution.preflight import preflight as probe_endpoints

        await probe_endpoints(plan, overridden=set(backends or ()))
    opened = open_run_store(plan, store_path, resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change)
    runner: Runner | DistributedRunner
    if distributed:
        from esc_eval.runs.distributed import DistributedRunner

        runner = DistributedRunner(plan, opened.store, address=ray or config.run.ray_address, retry_failed=retry_failed)
    else:
        runner = Runner(plan, opened.store, backends=backends, retry_failed=retry_failed)
    result = await (drive(runner) if drive is not None else runner.run())
    with Store.open(store_path, readonly=True) as reader:
        failed_scores = reader.failed_scores()  # this attempt's and, unless scored again, earlier ones
    return replace(result, earlier_failed=opened.earlier_failed, failed_scores=failed_scores)


def with_cache(config: Config, cache: str | Path | None, mode: str | None) -> Config:
    """``config`` with the response cache given as an option (a flag, a keyword) in place of ``[run] cache`` / ``cache_mode``."""
    from esc_eval.runs.config_sections import CACHE_MODES

    if mode is not None and mode not in CACHE_MODES:
        raise RunOptionError(f"cache mode {mode!r}: expected one of {', '.join(CACHE_MODES)}")
    if cache is None and mode is None:
        return config
    run = replace(config.run, cache=str(cache) if cache is not None else config.run.cache, cache_mode=mode or config.run.cache_mode)
    if mode not in (None, "off") and run.cache is None:
        raise RunOptionError(f"--cache-mode {mode} needs a cache file: --cache PATH or [run] cache")
    return replace(config, run=run)


def with_cost_limit(config: Config, cost_limit: float | None) -> Config:
    """``config`` with ``--cost-limit`` (``cost_limit=``) over ``[run] cost_limit``; outside the fingerprint, so resuming is unaffected."""
    if cost_limit is None:
        return config
    if not 0 < cost_limit < math.inf:  # nan compares with nothing, inf is no limit at all
        raise RunOptionError(f"--cost-limit must be a positive amount of USD, got {cost_limit}")
    return replace(config, run=replace(config.run, cost_limit=float(cost_limit)))


def check_cost_limit(plan: RunPlan, distributed: bool) -> None:
    """A cost limit needs every endpoint's price and the local executor (Ray workers admit their own shards)."""
    if plan.config.run.cost_limit is None:
        return
    if distributed:
        raise RunOptionError("--cost-limit ([run] cost_limit) works with the local executor only, not on Ray workers (docs/cost.md)")
    missing = unpriced(plan.config, safety=plan.safety is not None)
    if missing:
        raise RunOptionError(f"--cost-limit needs a price on every endpoint; unpriced: {', '.join(missing)} "
                             "(add price = { input = USD, output = USD } per million tokens, docs/cost.md)")


def finished_store(store_path: Path, retry_failed: bool) -> bool:
    """Whether a store to resume has no episode left to play (its scores may still be missing: those wait for the judge)."""
    from esc_eval.runs.store import Store

    with Store.open(store_path, readonly=True) as reader:
        counts = reader.counts()
    return not counts.get("planned") and not counts.get("running") and not (retry_failed and counts.get("failed"))


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run``, on uvloop when it is installed (extra ``perf``): less CPU per request at high concurrency."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
