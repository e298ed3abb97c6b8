"""When Python's cyclic garbage collector runs: rarely during a run, not at all while a large store is read.

Both are measured in docs/performance.md. Reference counting frees what esc-eval makes (rows,
records, label lists hold no cycles), so the collector's passes over everything alive are pure
cost when objects are made by the hundred thousand: a run's live episodes, a report's score rows.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RUN_GC_THRESHOLDS = (200_000, 50, 1_000)


@contextmanager
def few_collections() -> Iterator[None]:
    """Python's cyclic garbage collector tuned for thousands of live episodes, for the run's duration.

    At the default thresholds (700, 10, 10) a run collects every few hundred allocations and
    rescans everything the live episodes hold: measured, a third of a run's CPU at C = 1,000
    and nearly half at C = 5,000 (docs/performance.md). Reference counting frees almost all
    of a run's garbage anyway (measured: ~0.3 objects in cycles per request), so a young
    generation of 200,000 costs no memory we could see, while each young collection rescans
    what the live episodes hold: at 50,000 those rescans were still 3 % of a run's CPU.
    Cycles (tasks, exceptions) wait a little longer.
    """
    previous = gc.get_threshold()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def no_collections() -> Iterator[None]:
    """No cyclic collection while a large store is read into rows, labels and reports (a bounded, cycle-free burst).

    The paper's study (39,214 episodes, 274,498 scores) makes ~2 million tuples, lists and dicts;
    the collector's passes over them were a third of the viewer's first leaderboard (3.2–4.0 →
    2.1–2.9 s). Nests and overlaps across threads (the viewer's reader and its worker): the
    collector is enabled again, if it was, when the last holder leaves.
    """
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
