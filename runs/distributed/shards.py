"""How a run is cut for its workers: limits divided among them, episodes dealt round-robin."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from esc_eval.runs.config import Config


def split_limits(config: Config, workers: int) -> Config:
    """The config each of ``workers`` workers runs with: limits divided so the cluster keeps the config's totals.

    Every endpoint's ``max_connections`` (seeker, supporters, judge, whose limit is also the
    judge's concurrency) and ``[run] concurrency`` become ``value // workers``, at least 1.
    Whatever decides results is unchanged (``Config.fingerprint`` ignores these fields).
    """

    def share(value: int) -> int:
        return max(1, value // workers)

    def endpoint(section: Any) -> Any:
        return dataclasses.replace(section, max_connections=share(section.max_connections))

    return dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, concurrency=share(config.run.concurrency)),
        seeker=endpoint(config.seeker),
        seekers=tuple(endpoint(s) for s in config.seekers),
        supporters=tuple(endpoint(s) for s in config.supporters),
        judge=endpoint(config.judge) if config.judge is not None else None,
    )


def deal(items: Sequence[Any], shards: int) -> list[list[Any]]:
    """Round-robin: shard ``i`` gets items ``i, i+shards, ...`` (every supporter and persona spread evenly)."""
    return [list(items[i::shards]) for i in range(shards)]
