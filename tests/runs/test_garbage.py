"""When the cyclic collector runs (esc_eval.runs.garbage): tuned for a run, off while a large store is read, and restored."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from esc_eval.runs.garbage import RUN_GC_THRESHOLDS, few_collections, no_collections


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_a_run_collects_garbage_rarely_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    with few_collections():
        assert gc.get_threshold() == RUN_GC_THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(KeyError), few_collections():
        raise KeyError("boom")
    assert gc.get_threshold() == before


def test_no_collections_nests_and_enables_the_collector_again_after_the_last_holder() -> None:
    with no_collections():
        assert not gc.isenabled()
        with no_collections():
            assert not gc.isenabled()
        assert not gc.isenabled()                   # the outer holder still reads
    assert gc.isenabled()
    with pytest.raises(KeyError), no_collections():
        raise KeyError("boom")
    assert gc.isenabled()


def test_no_collections_leaves_a_collector_the_caller_disabled_off() -> None:
    gc.disable()
    with no_collections():
        pass
    assert not gc.isenabled()


def test_overlapping_holders_on_two_threads_keep_it_off_until_both_leave() -> None:
    """The viewer's reader and its worker thread overlap: the first to leave must not turn the collector back on."""
    entered, leave = threading.Event(), threading.Event()
    seen: list[bool] = []

    def worker() -> None:
        with no_collections():
            entered.set()
            leave.wait(10)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=worker)
    with no_collections():
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()                       # this thread left; the worker still holds it
    leave.set()
    thread.join(10)
    assert seen == [False] and gc.isenabled()
