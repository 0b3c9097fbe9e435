"""The worker pool runs calls in other processes, in order, and recovers from a dead worker."""

from __future__ import annotations

import gc
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from millpond import heap
from millpond.workers import WorkerPool


def test_calls_run_in_other_processes_and_come_back_in_order():
    pool = WorkerPool(2)
    try:
        got = pool.map(divmod, [(n, 7) for n in range(20)])
        pids = set(pool.map(os.getpid, [()] * 8))
    finally:
        pool.close()
    assert got == [divmod(n, 7) for n in range(20)]
    assert os.getpid() not in pids


def test_a_worker_that_dies_fails_the_call_and_the_next_call_works():
    pool = WorkerPool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            pool.map(os._exit, [(3,)])
        assert pool.map(abs, [(-4,)]) == [4]
    finally:
        pool.close()


def test_pids_are_the_live_workers():
    pool = WorkerPool(2)
    try:
        assert pool.pids() == []
        worker_pids = set(pool.map(os.getpid, [()] * 6))
        assert worker_pids <= set(pool.pids()) and len(pool.pids()) <= 2
    finally:
        pool.close()
    assert pool.pids() == []


def test_workers_start_with_their_heap_settled():
    """What a worker loaded at start is out of the cyclic GC (millpond.heap), as in the
    server (a worker forked from the fork server would otherwise have nothing frozen)."""
    pool = WorkerPool(1, preload=["millpond.replays.preview"])
    try:
        frozen, thresholds = pool.map(_gc_state, [()])[0]
    finally:
        pool.close()
    assert frozen > 10_000
    assert thresholds[0] == heap.YOUNG_THRESHOLD


def _gc_state() -> tuple[int, tuple[int, int, int]]:
    return gc.get_freeze_count(), gc.get_threshold()
