"""The Python API: ``run`` / ``run_async`` a config into a store, ``report`` on a store (docs/api.md).

``run`` is ``esc-eval run`` without the terminal: the same checks, store rules and runner
(``esc_eval.runs.execution.launch.execute``), no signal handler, no display (``on_progress`` is
called instead), and the exit code in ``RunResult.exit_code`` rather than the process's.
``report`` is ``esc-eval report --format json`` as a dict, computed by the same function.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esc_eval.roles.cards import CardError
from esc_eval.roles.persona_model import PersonaError
from esc_eval.roles.templates import ProtocolError
from esc_eval.runs.config import Config, ConfigError, load_config
from esc_eval.runs.execution.launch import RunOptionError, execute, run_loop
from esc_eval.runs.execution.progress import RunProgress
from esc_eval.runs.execution.result import RunResult
from esc_eval.runs.store import StoreError

if TYPE_CHECKING:
    from esc_eval.agents.backends import ChatBackend
    from esc_eval.runs.distributed import DistributedRunner
    from esc_eval.runs.execution.runner import Runner

BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, CardError, PersonaError, ProtocolError, StoreError, RunOptionError)
"""What ``run`` reports as bad input (exit code 2, nothing written) instead of raising."""

ProgressCallback = Callable[[RunProgress], None]


def run(config: str | Path | Config, store: str | Path, *, resume: bool = False, retry_failed: bool = False,
        allow_config_change: bool = False, ray: str | None = None, backends: Mapping[str, ChatBackend] | None = None,
        on_progress: ProgressCallback | None = None, progress_interval: float = 5.0, preflight: bool = True,
        cache: str | Path | None = None, cache_mode: str | None = None, cost_limit: float | None = None) -> RunResult:
    """Run the evaluation ``config`` describes into the SQLite store ``store``; ``esc-eval run`` as a function.

    Args:
        config: a TOML file (``load_config``) or a ``Config``.
        store: the store to create, or with ``resume`` to continue.
        resume, retry_failed, allow_config_change, ray: the flags of ``esc-eval run`` (``--resume``, ...).
        backends: role name (``seeker``, a supporter's name, ``judge``) -> a backend object (a ``ChatBackend``) used
            instead of the config's endpoint for that role.
        on_progress: called with the run's live counters every ``progress_interval`` seconds and once at the end.
        preflight: probe each served endpoint before the store exists (one that cannot be reached: exit code 2);
            ``False`` is ``--no-preflight``.
        cache, cache_mode: a response cache file and its mode (``read-write``, ``read``, ``off``): ``--cache``,
            ``--cache-mode``, in place of ``[run] cache`` / ``cache_mode`` (docs/cost.md).
        cost_limit: USD, ``--cost-limit`` in place of ``[run] cost_limit``: no episode is admitted once the spend plus the
            expected cost of those in flight would reach it; the run then ends with exit code 3 and ``cost_limited`` says so.

    Returns:
        The ``RunResult``: ``exit_code`` 0 (every episode and score good), 1 (failed episodes or judge scores in the
        store, an endpoint refused its key, or a store write failed), 2 (bad input, explained in ``error``; nothing was
        written), 3 (stopped before the plan was done: ``resume`` continues), the
        counts (``done``, ``failed``, ``skipped``) and the leaderboard's ``scores``.

    Raises:
        RuntimeError: called inside a running event loop (a notebook): ``await run_async(...)`` there.

    Example:
        >>> result = run("no-such-config.toml", "run.sqlite")
        >>> result.exit_code, result.error
        (2, 'no-such-config.toml: cannot read: No such file or directory')
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("esc_eval.run() cannot start an event loop inside a running one (a notebook): use await esc_eval.run_async(...)")
    return run_loop(run_async(config, store, resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change, ray=ray,
                              backends=backends, on_progress=on_progress, progress_interval=progress_interval, preflight=preflight,
                              cache=cache, cache_mode=cache_mode, cost_limit=cost_limit))


async def run_async(config: str | Path | Config, store: str | Path, *, resume: bool = False, retry_failed: bool = False,
                    allow_config_change: bool = False, ray: str | None = None, backends: Mapping[str, ChatBackend] | None = None,
                    on_progress: ProgressCallback | None = None, progress_interval: float = 5.0, preflight: bool = True,
                    cache: str | Path | None = None, cache_mode: str | None = None, cost_limit: float | None = None) -> RunResult:
    """``run`` on the running event loop (a notebook, an async application); the same arguments and result."""
    store_path = Path(store)
    try:
        loaded = config if isinstance(config, Config) else load_config(config)
        result = await execute(loaded, store_path, resume=resume, retry_failed=retry_failed, allow_config_change=allow_config_change,
                               ray=ray, backends=backends, drive=_reporting(on_progress, progress_interval) if on_progress else None,
                               preflight=preflight, cache=cache, cache_mode=cache_mode, cost_limit=cost_limit)
    except BAD_INPUT_ERRORS as exc:
        return RunResult(store_path, RunProgress(), error=str(exc))
    result.scores = _scores(report(store_path))
    return result


def report(store: str | Path, *, by: str | Sequence[str] = (), compare: bool = False, corrected: bool = False,
           power: float | None = None, agreement: str | Path | bool | None = None, supporter: str | None = None,
           language: str | None = None, plot: str | Path | None = None) -> dict[str, Any]:
    """``esc-eval report STORE --format json`` with the same options, as the dict its JSON holds.

    Args:
        by: group columns (``"language"``, ``["seeker", "supporter"]``, ``"supporter,language"``): ``--by``.
        compare, corrected, power: ``--compare``, ``--corrected``, ``--power DELTA``.
        agreement: a human score file, or ``True`` for the store's annotations: ``--agreement``.
        supporter, language: only these episodes.
        plot: also draw the chart to this PNG (needs ``esc-eval[plot]``).

    Raises:
        StoreError: the store cannot be opened. ReportError: a bad option (group column, score file, power delta).
    """
    from esc_eval.runs.analysis.report import report_command

    columns = [by] if isinstance(by, str) else list(by)
    text = report_command(Path(store), "json", Path(plot) if plot is not None else None, columns,
                          agreement if isinstance(agreement, bool) or agreement is None else Path(agreement), supporter, language,
                          compare=compare, corrected=corrected, power_delta=power)
    data: dict[str, Any] = json.loads(text)
    return data


def estimate(config: str | Path | Config, *, calibrate: str | Path | None = None, resume: str | Path | None = None,
             retry_failed: bool = False, allow_config_change: bool = False) -> dict[str, Any]:
    """``esc-eval run CONFIG --dry-run --format json [--calibrate PILOT_STORE] [--store STORE --resume]``: the dict its JSON holds
    (docs/cost.md).

    Contacts no endpoint and writes nothing: the plan's episodes, requests and tokens per role, ``cost_usd``
    (expected; from the pilot store ``calibrate`` when given) and ``cost_usd_max`` (an upper bound), costs ``None`` without prices.
    With ``resume`` (a store), only of the episodes ``run(config, resume, resume=True, retry_failed=...)`` would play;
    ``already_done`` and ``failed_left_out`` count those it leaves out.

    Raises:
        ConfigError, CardError, PersonaError, ProtocolError: bad input, as ``run``. StoreError: ``calibrate`` or ``resume``
        is no store; ValueError: ``calibrate`` has no finished episode. ConfigError: ``resume`` holds another config's run
        (unless ``allow_config_change``). RunOptionError: ``retry_failed`` or ``allow_config_change`` without ``resume``.
    """
    from esc_eval.runs.execution.estimate import Calibration, Resumed
    from esc_eval.runs.execution.estimate import estimate as paper_run
    from esc_eval.runs.execution.launch import check_options
    from esc_eval.runs.execution.plan import RunPlan

    check_options(resume=resume is not None, retry_failed=retry_failed, allow_config_change=allow_config_change)
    plan = RunPlan.prepare(config if isinstance(config, Config) else load_config(config))
    resumed = (Resumed.read(plan, Path(resume), retry_failed=retry_failed, allow_config_change=allow_config_change)
               if resume is not None else None)
    return paper_run(plan, Calibration.read(Path(calibrate)) if calibrate is not None else None, resumed).to_json()


def _reporting(on_progress: ProgressCallback, interval: float) -> Callable[[Runner | DistributedRunner], Any]:
    """A ``drive`` that calls ``on_progress`` every ``interval`` seconds while the runner runs, and once when it ends."""

    async def drive(runner: Runner | DistributedRunner) -> RunResult:
        running = asyncio.ensure_future(runner.run())
        try:
            while not running.done():
                await asyncio.wait({running}, timeout=interval)
                on_progress(runner.progress)
        finally:
            if not running.done():  # the callback raised: stop the run, and let the runner close the store
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        return running.result()

    return drive


def _scores(data: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The leaderboard's values by group (``supporter``, or ``seeker / supporter``) and dimension; groups without a value left out."""
    found: dict[str, dict[str, float]] = {}
    for row in data["rows"]:
        values = {key: score["value"] for key, score in row["scores"].items() if score["value"] is not None}
        if values:
            found[" / ".join(row["group"].values())] = values
    return found


__all__ = ["BAD_INPUT_ERRORS", "ProgressCallback", "estimate", "load_config", "report", "run", "run_async"]
