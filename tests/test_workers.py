"""The worker pool runs calls in other processes, in order, and recovers from a dead worker."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

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
