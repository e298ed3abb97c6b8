"""Which store a run writes into: a new one, or an earlier one resumed under the fingerprint rules.

A resumed store must have been started with the same plan (``RunPlan.fingerprint``: config
and personas); a changed plan is refused unless allowed, and an allowed change is recorded
in the store's ``config_history`` and as a ``config-change`` event. A refusal writes nothing.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from esc_eval.runs.config import ConfigError
from esc_eval.runs.execution.plan import RunPlan
from esc_eval.runs.store import Store, StoreError


@dataclass
class RunStore:
    """The open, writable store of a run and what an earlier attempt left failed."""

    store: Store
    earlier_failed: int
    """Failed episodes of an earlier attempt the runner will skip (0 with ``retry_failed`` or a new store)."""


def resume_skips(retry_failed: bool) -> frozenset[str]:
    """The episode statuses a resumed run does not play again: ``done``, and ``failed`` unless ``retry_failed``.

    The one rule the runners (local and Ray) and the dry run's estimate of a resume (``--dry-run --resume``) share;
    ``planned`` and ``running`` (an interrupted attempt's) episodes are played.
    """
    return frozenset({"done"} if retry_failed else {"done", "failed"})


def check_run_store(plan: RunPlan, store_path: Path, *, resume: bool, allow_config_change: bool = False) -> str | None:
    """``open_run_store``'s checks, writing nothing; returns the fingerprint a resumed store recorded.

    Raises:
        ConfigError: resuming with a changed plan without ``allow_config_change``.
        StoreError: a new store's file exists already, or the store cannot be opened.
    """
    if not resume:
        if store_path.is_dir():
            raise StoreError(f"{store_path}: is a directory, not a store file; give a file path for --store (e.g. {store_path / 'run.sqlite'})")
        if store_path.exists():
            raise StoreError(f"{store_path}: store already exists; pass --resume to continue it or choose another --store")
        blocking = next((parent for parent in store_path.parents if parent.exists() and not parent.is_dir()), None)
        if blocking is not None:  # as Store.create would say, before the endpoints are probed
            raise StoreError(f"{store_path}: {blocking} is a file, not a folder")
        return None
    with Store.open(store_path, readonly=True) as checked:  # a writable open switches the journal mode: a refusal must write nothing
        recorded: str | None = checked.meta("fingerprint")
    if recorded != plan.fingerprint() and not allow_config_change:
        raise ConfigError(
            f"{plan.config.path}: differs from the config {store_path} was started with "
            "(cards, models, rounds, seed or judge changed); start a new store, or pass --allow-config-change"
        )
    return recorded


def open_run_store(plan: RunPlan, store_path: Path, *, resume: bool, retry_failed: bool = False,
                   allow_config_change: bool = False) -> RunStore:
    """Create the run's store, or reopen it for ``resume`` after checking the fingerprint (``check_run_store``)."""
    config = plan.config
    recorded = check_run_store(plan, store_path, resume=resume, allow_config_change=allow_config_change)
    if not resume:
        store = Store.create(store_path, config=config.to_dict(), fingerprint=plan.fingerprint(), personas=plan.personas(),
                             plugins=plan.plugins(), seed=config.run.seed, versions=versions(), created_at=time.time())
        return RunStore(store, 0)
    store = Store.open(store_path)
    if recorded != plan.fingerprint():  # allowed: the store keeps every config it has run under
        history = store.meta("config_history") or [{"fingerprint": recorded, "config": store.meta("config"), "at": store.meta("created_at")}]
        history.append({"fingerprint": plan.fingerprint(), "config": config.to_dict(), "at": time.time()})
        store.set_meta(config=config.to_dict(), fingerprint=plan.fingerprint(), plugins=plan.plugins(), config_history=history)
        store.add_event("config-change", f"old={recorded} new={plan.fingerprint()}")
    else:  # the same results; prices, budget, cache or endpoints may have changed: the report prices the whole store with these
        store.set_meta(config=config.to_dict())
    # without retry_failed the runner skips these, so they are still failed when it ends
    return RunStore(store, 0 if retry_failed else store.counts().get("failed", 0))


RECORDED = ("esc-eval", "autogen-core", "aiohttp", "tenacity", "transformers", "torch")
"""The distributions a store records the versions of."""


def versions(dists: Sequence[str] = RECORDED) -> dict[str, str]:
    """The Python and library versions (of those installed) a store records at creation: numbers depend on them."""
    found = {"python": platform.python_version()}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found

