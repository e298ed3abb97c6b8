"""Why episodes failed, said in a few lines: failure kinds with counts and one example message each.

A run whose episodes fail must say why where the user looks (the run's summary, the
export's refusal), not only in the store. Each failed episode's ``reason`` is reduced to a
*kind* (``failure_kind``): its role and fault without what varies between episodes, so
662 refused connections are one line, not 662.

Examples:
    >>> failure_kind("supporter backend: http://127.0.0.1:9/v1: gave up after 6 attempts: reset: ClientConnectorError: refused")
    'supporter backend: reset (http://127.0.0.1:9/v1)'
    >>> failure_kind("supporter backend: HTTP 400: {'error': 'temperature must be in [0, 2]'}")
    'supporter backend: HTTP 400'
    >>> [(k.kind, k.episodes) for k in failure_kinds(["seeker agent error: ValueError: x", "seeker agent error: ValueError: y"])]
    [('seeker agent error: ValueError', 2)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from esc_eval.runs.store import Store

TOP_KINDS = 5
"""Failure kinds a summary lists; the rest are counted in one line."""
EXAMPLE_CHARS = 200
"""An example message is cut to this many characters (one line)."""

_GAVE_UP = re.compile(r"^(?P<role>[^:]+): (?P<endpoint>\S+): gave up after \d+ attempts: (?P<fault>[\w-]+)")


class FailureKind(NamedTuple):
    kind: str
    episodes: int
    example: str
    """The first message of this kind, on one line, at most ``EXAMPLE_CHARS`` characters."""


def failure_kind(reason: str) -> str:
    """The kind of a failure ``reason``: retries given up on an endpoint become ``ROLE: FAULT (ENDPOINT)``, else its first two parts."""
    gave_up = _GAVE_UP.match(reason)
    if gave_up:
        return f"{gave_up['role']}: {gave_up['fault']} ({gave_up['endpoint'].rstrip(':')})"
    return ": ".join(re.split(r": (?!//)", reason, maxsplit=2)[:2]).strip() or "(no reason recorded)"


def failure_kinds(reasons: Iterable[str | None]) -> list[FailureKind]:
    """Kinds by count (most first, then first seen), each with its first message."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for reason in reasons:
        kind = failure_kind(reason or "")
        counts[kind] = counts.get(kind, 0) + 1
        examples.setdefault(kind, _one_line(reason or ""))
    order = sorted(counts, key=lambda k: -counts[k])  # stable: ties keep first-seen order
    return [FailureKind(k, counts[k], examples[k]) for k in order]


def failure_lines(kinds: list[FailureKind], top: int = TOP_KINDS) -> list[str]:
    """The summary's lines: ``COUNT x KIND  e.g. MESSAGE`` for the ``top`` kinds, then how many kinds are left out."""
    lines = [f"  {k.episodes} x {k.kind}  e.g. {k.example}" for k in kinds[:top]]
    rest = kinds[top:]
    if rest:
        lines.append(f"  ... {len(rest)} more kinds ({sum(k.episodes for k in rest)} episodes; the store keeps every message)")
    return lines


def stored_failures(store: Store) -> list[FailureKind]:
    """The failure kinds of the store's failed episodes."""
    return failure_kinds(e.reason for e in store.episodes(status="failed"))


def nothing_finished(store: Store) -> str:
    """Why a store holds no finished dialogue: its failures by kind, or that it holds no episode at all."""
    counts = store.counts()
    failed = counts.get("failed", 0)
    if not failed:
        held = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no episodes"
        return f"{store.path}: no finished dialogue to export ({held}); nothing written"
    kinds = stored_failures(store)
    top = kinds[0]
    more = f"; {len(kinds) - 1} other kinds" if len(kinds) > 1 else ""
    return (f"{store.path}: no finished dialogue to export: all {failed} episodes failed ({top.episodes} x {top.kind}, "
            f"e.g. {top.example}{more}); nothing written")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXAMPLE_CHARS else flat[:EXAMPLE_CHARS - 3] + "..."
