"""The JSON the viewer page shows, built from the typed store API and ``esc_eval.runs.analysis``.

Three shapes, the same for the live server and the HTML report:

* ``summary``: per store its leaderboard (``report_data`` of ``build_report``, grouped by
  supporter, with paired comparisons when there are two supporters or more: the numbers of
  ``report --format json --compare``; the live viewer shows a large store's leaderboard first and
  its comparisons when a worker thread has built them, and its ``cost``: docs/cost.md), the same per supporter
  and each facet column (so the page can filter the leaderboard by language, persona, category, source or
  outcome), and one row per episode (plan, outcome, timings, final judge labels, the seeker's distress per
  turn, its cost in USD: ``None`` when unknown);
* ``episode``: one episode's turns (with the seeker's hidden state), every judge score with its
  raw reply, and the events (retries, faults) about it;
* ``version``: a cheap mark per store that changes when anything is written, or the comparisons
  become ready (live follow).

Episode ids are ``"STORE_INDEX:KEY"`` so that several stores can be viewed at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from esc_eval.runs.analysis.cost import Cost, ReportCost, report_cost, store_cost
from esc_eval.runs.analysis.leaderboard import Report, StoreRead, build_report, read_store
from esc_eval.runs.analysis.render import report_data
from esc_eval.runs.analysis.safety import build_safety, comparison_data, safety_data
from esc_eval.runs.analysis.safety_agreement import agreement_data, safety_agreement
from esc_eval.runs.garbage import no_collections
from esc_eval.runs.store import EpisodeRecord, Store, TurnRecord
from esc_eval.runs.store import safety as safety_records

FACETS = ("language", "persona", "category", "source", "outcome")
"""Plan columns the leaderboard can be split by (``build_report``'s group columns besides supporter)."""


def episode_id(index: int, key: str) -> str:
    return f"{index}:{key}"


def _state(turn: TurnRecord) -> dict[str, Any] | None:
    return json.loads(turn.state) if turn.state else None


def _row(index: int, e: EpisodeRecord, labels: dict[str, int | None], turns: int, distress: list[float],
         cost: float | None = None) -> dict[str, Any]:
    """``distress``: the seeker's after each of its turns (``Store.turn_counts``), for the trajectory chart."""
    return {
        "id": episode_id(index, e.key), "store": index, "key": e.key, "supporter": e.supporter, "persona": e.persona,
        "card": e.card_id, "language": e.language, "category": e.category, "source": e.source, "repeat": e.repeat,
        "status": e.status, "outcome": e.outcome, "reason": e.reason, "attempts": e.attempts,
        "seconds": None if e.started_at is None or e.ended_at is None else round(e.ended_at - e.started_at, 3),
        "turns": turns, "scores": labels, "distress": distress, "cost_usd": cost,
    }


_CACHE: dict[str, tuple[tuple[int, int], dict[str, Any], Cost]] = {}
"""Store path -> (finished episodes, last score row), the leaderboards built at that mark and the store's cost they show."""
_PENDING: dict[str, tuple[tuple[int, int], dict[str, Any], Future[tuple[dict[str, Any], Cost]]]] = {}
"""Store path -> a mark, the leaderboards shown meanwhile (no comparisons, no costs), and the full ones and cost being built."""
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leaderboards")
LARGE_STORE = 5000
"""Episodes from which the live viewer shows the leaderboard before its comparisons and costs (they take seconds beyond)."""


def _mark(store: Store) -> tuple[int, int]:
    version = store.version()
    return version[1], version[3]


def leaderboards(store: Store, *, wait: bool = True, read: StoreRead | None = None) -> dict[str, Any]:
    """``build_leaderboards``, again only when the store's finished episodes or scores changed.

    The page polls a live store and reloads the summary whenever a turn was written; the
    leaderboards (five reports, the comparisons and the store's cost) take seconds on a large
    store and change only with finished episodes and scores. With ``wait`` false (the live viewer)
    a large store gets its leaderboards without comparisons and costs at once (``comparisons_pending``
    and ``cost_pending`` true), while a worker thread adds them from the same read of the store;
    ``version`` tells the page when they are ready. ``read``: the caller's ``read_store`` of the store.
    """
    mark, path = _mark(store), str(store.path)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == mark:
        return cached[1]
    pending = _PENDING.get(path)
    if pending is not None and pending[0] == mark and (wait or pending[2].done()):
        _CACHE[path] = (mark, *pending[2].result())
        del _PENDING[path]
        return _CACHE[path][1]
    if pending is not None and pending[0] == mark:
        return pending[1]
    read = read or read_store(store)
    if wait or len(read.episodes) < LARGE_STORE:
        cost = store_cost(store, read.episodes)
        _CACHE[path] = (mark, build_leaderboards(store, read, cost=cost), cost)
        return _CACHE[path][1]
    quick = build_leaderboards(store, read, compare=False, costed=False)
    quick["overall"]["comparisons_pending"] = len({e.supporter for e in read.episodes}) > 1
    quick["overall"]["cost_pending"] = True
    _PENDING[path] = (mark, quick, _BUILDER.submit(_completed, store, read))
    return quick


def shown_cost(store: Store) -> Cost | None:
    """The store's cost as its current leaderboards show it; ``None`` while a worker thread computes it (``leaderboards``)."""
    cached = _CACHE.get(str(store.path))
    return cached[2] if cached is not None and cached[0] == _mark(store) else None


def complete(leaderboard: dict[str, Any]) -> bool:
    """Whether a store summary's ``leaderboard`` has everything (no comparisons or costs still being computed)."""
    return not (leaderboard["overall"].get("comparisons_pending") or leaderboard["overall"].get("cost_pending"))


def ready(store: Store) -> bool:
    """Whether the leaderboards shown for the store's current mark are complete (comparisons and costs included)."""
    pending = _PENDING.get(str(store.path))
    return pending is None or pending[0] != _mark(store) or pending[2].done()


def build_leaderboards(store: Store, read: StoreRead | None = None, *, compare: bool = True,
                       cost: Cost | None = None, costed: bool = True) -> dict[str, Any]:
    """The leaderboard by supporter (``report --format json`` numbers; with ``--compare`` when 2+ supporters) and by each facet.

    ``cost``: the store's ``store_cost`` when the caller holds it; ``costed`` false: without costs (priced later).
    """
    read = read or read_store(store)                # read once: the six reports share it (and its score arrays)
    if costed and cost is None:
        cost = store_cost(store, read.episodes)     # priced once: the six reports group it
    report, overall = _overall(store, read, compare, cost)
    safety = build_safety(store)
    if safety is not None:  # the safety gate and rates per supporter (docs/safety.md)
        overall["safety"], overall["safety_comparisons"] = safety_data(safety), comparison_data(safety)
        humans = safety_agreement(store)    # judge vs the human answers to the safety items (docs/safety.md#humans-in-the-loop)
        if humans is not None:
            overall["safety_agreement"] = agreement_data(humans)
    facets = {f: _facet(store, read, f, report) for f in FACETS}
    return {"overall": overall, "facets": {f: report_data(r, _cost(store, r, read, cost)) for f, r in facets.items()}}


def _cost(store: Store, report: Report, read: StoreRead, cost: Cost | None) -> ReportCost | None:
    return None if cost is None else report_cost(store, report, episodes=read.episodes, cost=cost)   # docs/cost.md


def _overall(store: Store, read: StoreRead, compare: bool, cost: Cost | None) -> tuple[Report, dict[str, Any]]:
    supporters = {e.supporter for e in read.episodes}
    report = build_report(store, compare=compare and len(supporters) > 1, read=read)
    return report, report_data(report, _cost(store, report, read, cost))


def _facet(store: Store, read: StoreRead, column: str, overall: Report) -> Report:
    """The leaderboard by supporter and ``column``; where every episode has one value there, it splits nothing: the
    overall rows with that value, without building the report again (a large store's first view waits for it)."""
    values = {str(getattr(e, column)) for e in read.episodes}
    if len(values) != 1 or overall.by != ("supporter",):
        return build_report(store, by=("supporter", column), read=read)
    (value,) = values
    return replace(overall, by=("supporter", column), rows=tuple(replace(row, group={**row.group, column: value}) for row in overall.rows),
                   comparisons=None, ranks=None, power=None, delta=None)


def _completed(store: Store, read: StoreRead) -> tuple[dict[str, Any], Cost]:
    """The leaderboards with comparisons and costs, and the cost, from the read the quick ones were built from."""
    with no_collections():
        cost = store_cost(store, read.episodes)
        return build_leaderboards(store, read, cost=cost), cost


_ROWS: dict[str, tuple[tuple[int, ...], list[dict[str, Any]], Cost | None]] = {}
"""Store path -> (its index and ``version``, the episode rows built then, the cost they show): an unchanged store's
rows are not built again, only given their costs once these are known."""


def store_summary(index: int, path: Path, store: Store, *, wait: bool = True) -> dict[str, Any]:
    """One store's leaderboards (``leaderboards``) and episode rows, from one read of the store, again only when it changed."""
    mark = (index, *store.version())
    cached = _ROWS.get(str(store.path))
    read = None
    if cached is None or cached[0] != mark:
        read = read_store(store, first_labels=True)     # one read of the scores: the rows' labels and the leaderboards
        turns = store.turn_counts()     # counted in SQL: no turn's text is read
        cached = (mark, [_row(index, e, dict(read.first.get(e.key, {})), *turns.get(e.key, (0, []))) for e in read.episodes], None)
    boards = leaderboards(store, wait=wait, read=read)
    cost = shown_cost(store)
    if cost is not None and cached[2] is not cost:
        cached = (mark, [{**row, "cost_usd": cost.usd(cost.episodes.get(row["key"]))} for row in cached[1]], cost)
    _ROWS[str(store.path)] = cached
    return {"index": index, "name": path.name, "path": str(path), "leaderboard": boards, "episodes": cached[1]}


def summary(stores: Sequence[tuple[Path, Store]], *, wait: bool = True) -> dict[str, Any]:
    """Every store's summary, and the judge dimensions (key and paper name) in report order (``wait``: see ``leaderboards``)."""
    with no_collections():      # a large store's rows, labels and reports: ~2 million objects and no cycles among them
        parts = [store_summary(i, path, store, wait=wait) for i, (path, store) in enumerate(stores)]
    dimensions: dict[str, str] = {}
    for part in parts:
        dimensions.update({d["key"]: d["name"] for d in part["leaderboard"]["overall"]["dimensions"]})
    return {"stores": parts, "dimensions": [{"key": k, "name": v} for k, v in dimensions.items()]}


def episode(index: int, store: Store, key: str) -> dict[str, Any] | None:
    """One episode in full, or ``None`` when the store has no such key."""
    if store.episode(key) is None:
        return None
    turns = store.turns(key)
    return {
        "id": episode_id(index, key),
        "turns": [{"idx": t.idx, "role": t.role, "text": t.text, "state": _state(t), "latency": t.latency,
                   "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens, "usage": t.usage, "cached": bool(t.cached)}
                  for t in turns],
        "scores": [{"dimension": s.dimension, "round": s.round, "sample": s.sample, "label": s.label, "raw": s.raw,
                    "model": s.model, "latency": s.latency, "status": s.status, "error": s.error} for s in store.scores(key)],
        "events": [{"at": ev.at, "kind": ev.kind, "endpoint": ev.endpoint, "detail": ev.detail} for ev in store.events(episode=key)],
        "safety": [{"sample": r.sample, "kind": r.kind, "status": r.status, "items": r.items, "risk": r.risk,
                    "disclosure_round": r.disclosure_round, "disclosure_turn": r.disclosure_turn, "raw": r.raw}
                   for r in safety_records.records(store) if r.episode_key == key],
    }


def version(stores: Sequence[tuple[Path, Store]]) -> list[list[int]]:
    """Per store its version and 1 once its leaderboards are complete: the page reloads when either changes."""
    return [[*store.version(), int(ready(store))] for _, store in stores]


def search(stores: Sequence[tuple[Path, Store]], query: str) -> list[str]:
    """Ids of the episodes whose dialogue contains ``query`` (case-insensitive)."""
    needle = query.casefold()
    return [episode_id(i, key) for i, (_, store) in enumerate(stores)
            for key, lines in store.transcripts() if any(needle in text.casefold() for _, text in lines)]
