"""A warehouse load that leaves a deleted person out at its commit: the delivery run records
those events as skipped with the screen's reason (``deleted``), never as sent.

The race, made deterministic: the pump screens a batch and hands it to the loader; a
deletion holds its side of the loader's lock (postgres: the exclusive advisory lock of
:mod:`millpond.warehouses.postgres.deletion_lock`; parquet: the location lock of
:mod:`millpond.warehouses.parquet.writer`), so the batch waits for it; the deletion is
accepted meanwhile and lets go; the batch is screened again at its commit and drops the
person's event. Real pump, sender, ledger and checkpoints over a real SQLite run store,
the real loader transport, a real PostgreSQL / Parquet directory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from millpond.actions import compile_action
from millpond.delivery.batcher import Batcher
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.ledger import Ledger
from millpond.delivery.pump import Pump
from millpond.delivery.rate_limit import RateLimiter
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.runs import Checkpoint
from millpond.delivery.sender import Deliverer
from millpond.delivery.slices import LogTail
from millpond.destinations.loaders import ParquetDestination, PostgresDestination
from millpond.regulations.blocklist import Blocklist
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Run, RunKind, RunState
from millpond.warehouses.parquet import read_table
from millpond.warehouses.parquet import writer as writer_module
from millpond.warehouses.parquet.settings import make_store
from millpond.warehouses.postgres import deletion_lock
from tests.delivery.helpers import new_event
from tests.support.locks import WatchedLock
from tests.support.regulations import deletion

#: Events in the batch; one is the deleted person's.
N = 5
ADA = "ada-5c1e"


@dataclass
class Held:
    """A deletion under way, as the loader sees it: its lock is taken."""

    settings: dict
    #: True once the batch waits for the lock.
    waiting: Callable[[], bool]
    release: Callable[[], None]
    #: The message ids the destination holds after the run.
    stored: Callable[[], list[str]]




@pytest.fixture(params=["postgres", "parquet"])
def held(request, tmp_path: Path, monkeypatch) -> Iterator[Held]:
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        deletion = psycopg.connect(dsn)  # a transaction: the lock lasts until it ends
        deletion_lock.take(deletion, "millpond")
        watch = psycopg.connect(dsn, autocommit=True)

        def waiting() -> bool:
            return bool(watch.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                                      " AND NOT granted").fetchall())

        def stored() -> list[str]:
            return [r[0] for r in watch.execute("SELECT id FROM millpond.tracks ORDER BY id")]

        yield Held({"dsn": dsn}, waiting, deletion.rollback, stored)
        deletion.close()
        watch.close()
        return
    settings = {"path": str(tmp_path / "lake")}
    lock = WatchedLock()
    store = make_store(ParquetDestination.parse_settings(settings))  # type: ignore[arg-type]
    monkeypatch.setitem(writer_module._LOCKS, store.describe(), lock)
    lock.inner.acquire()
    yield Held(settings, lock.contended.is_set, lock.inner.release,
               lambda: sorted(read_table(store)["message_id"].to_pylist()))


def test_a_person_deleted_while_the_batch_waits_is_skipped_not_sent(held, request,
                                                                     tmp_path: Path):
    kind = request.node.callspec.params["held"]
    dtype_class = PostgresDestination if kind == "postgres" else ParquetDestination
    dtype = dtype_class(dtype_class.parse_settings(held.settings))
    storage = open_storage(StorageConfig(data_dir=str(tmp_path / "data")))
    blocklist = Blocklist()
    try:
        storage.log.submit([new_event(i, user=ADA if i == 3 else f"u{i}")
                            for i in range(1, N + 1)]).result(10)
        run = storage.runs.create(Run("r1", "wh", RunKind.LIVE, RunState.RUNNING))
        transport = dtype.transport(None, screen=blocklist)
        deliverer = Deliverer(dtype, transport, RateLimiter(1e5), RetryPolicy(), screen=blocklist)
        tail = LogTail(storage.log, 0)
        pump = Pump(tail, Evaluator(dtype, [compile_action(a) for a in dtype.presets]),
                    deliverer, Batcher(N, 1 << 20, 0.0), Ledger(0),
                    Checkpoint(storage.runs, run, tail, start=0))

        async def deliver() -> None:
            task = asyncio.create_task(pump.run())
            try:
                await asyncio.to_thread(_wait, held.waiting, "the batch to wait for the lock")
                blocklist.load([deletion([ADA], N)])  # the deletion is accepted...
                held.release()  # ...and lets go: the batch is screened with it in force
                await asyncio.to_thread(
                    _wait, lambda: storage.runs.get("r1").cursor == N, "the batch's end")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await transport.aclose()

        asyncio.run(deliver())
        counts = storage.runs.get("r1").counts
        assert counts == {("Load event", "sent", ""): N - 1,
                          ("Load event", "skipped", "deleted"): 1}, counts
        skipped = storage.runs.outcome_events(["r1"], [("Load event", "skipped", "deleted")])
        assert skipped.seqs == [3], skipped
        assert held.stored() == [f"m{i}" for i in range(1, N + 1) if i != 3]
    finally:
        storage.close()


def _wait(condition: Callable[[], bool], what: str) -> None:
    event = threading.Event()
    for _ in range(1200):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")
