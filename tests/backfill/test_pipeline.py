"""Pipelined sinks: batches in flight, checkpoints only over the durable prefix, in order."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgspec
import pytest

from millpond.backfill import ImportAborted, ImportProgress, SinkResult
from millpond.backfill.sinks import PipelinedSink
from tests.backfill.fakes import ListSink, read_report

ROWS = 95
CHECKPOINT = "people.csv.millpond-import.json"


class PipelinedListSink(ListSink):
    """A ListSink whose batches complete when the test says so, possibly out of order.

    ``hold`` maps a batch number (1-based, in submission order) to the batch number
    whose submission settles it: ``{3: 4}`` leaves batch 3 pending until batch 4 has
    been submitted *and stored*, then resolves batch 3 -- with ``fail`` (a set of batch
    numbers) deciding whether it failed. A failed batch stores nothing.
    """

    def __init__(self, max_in_flight: int = 3, hold: dict[int, int] | None = None,
                 fail: set[int] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_in_flight = max_in_flight
        self.hold = hold or {}
        self.fail = fail or set()
        self.submitted = 0
        self.waiting: dict[int, tuple[list[dict], Future[SinkResult]]] = {}
        self.encoded_ok = True

    def submit(self, events: list[dict[str, Any]], encoded: list[bytes]) -> Future[SinkResult]:
        self.submitted += 1
        number = self.submitted
        self.encoded_ok &= encoded == [msgspec.json.encode(e) for e in events]
        future: Future[SinkResult] = Future()
        if number in self.hold:
            self.waiting[number] = (events, future)
        else:
            self._settle(number, events, future)
        for held, (after) in list(self.hold.items()):
            if after == number and held in self.waiting:
                self._settle(held, *self.waiting.pop(held))
        return future

    def _settle(self, number: int, events: list[dict], future: Future[SinkResult]) -> None:
        if number in self.fail:
            future.set_exception(ConnectionError(f"batch {number} was lost"))
            return
        try:
            future.set_result(self.send(events))
        except Exception as exc:  # noqa: BLE001 - ListSink's own failure knobs
            future.set_exception(exc)


@pytest.fixture
def people(write):
    return write("id,n\n" + "".join(f"u{i},{i}\n" for i in range(ROWS)))


def checkpoint(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "state" / CHECKPOINT).read_text())


def test_the_test_sink_is_a_pipelined_sink():
    assert isinstance(PipelinedListSink(), PipelinedSink)
    assert not isinstance(ListSink(), PipelinedSink)


def test_a_failed_batch_stops_the_checkpoint_even_if_a_later_one_committed(people, run,
                                                                           tmp_path):
    # Batch 3 (rows 22-31) fails only after batch 4 (rows 32-41) was stored.
    sink = PipelinedListSink(max_in_flight=3, hold={3: 4}, fail={3})
    with pytest.raises(ImportAborted, match="import stopped at row 22: batch 3 was lost") as err:
        run(people, sink, batch_size=10)
    assert sorted(int(e["userId"][1:]) for e in sink.events) == list(range(20)) + list(
        range(30, 40))                                  # batch 4 is durable in the sink...
    partial = err.value.summary
    assert (partial.last_row, partial.events_accepted, partial.rows_read) == (21, 20, 20)
    state = checkpoint(tmp_path)                        # ...but the checkpoint stops at 2
    assert state["last_row"] == 21 and not state["completed"]
    assert state["counters"]["events_accepted"] == 20 and state["counters"]["batches"] == 2

    sink.hold, sink.fail = {}, set()
    summary = run(people, sink, batch_size=10)
    assert summary.completed and summary.resumed_after_row == 21
    assert summary.duplicates == 10                     # batch 4, sent again, deduped
    assert summary.events_accepted + summary.duplicates == summary.rows_read == ROWS
    ids = [e["messageId"] for e in sink.events]
    assert len(ids) == len(set(ids)) == ROWS            # every row stored exactly once
    assert sorted(e["traits"]["n"] for e in sink.events) == list(range(ROWS))
    assert sink.encoded_ok


class ThreadedSink(ListSink):
    """Completes each batch on its own thread after a random delay: any order at all.

    Records which rows are durable, so a progress callback can check every checkpoint.
    """

    def __init__(self, seed: int, max_in_flight: int = 4, fail_batch: int | None = None):
        super().__init__()
        self.max_in_flight = max_in_flight
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.durable_rows: set[int] = set()
        self.fail_batch = fail_batch
        self.submitted = 0
        self.futures: list[Future[SinkResult]] = []

    def submit(self, events: list[dict[str, Any]], encoded: list[bytes]) -> Future[SinkResult]:
        self.submitted += 1
        number = self.submitted
        future: Future[SinkResult] = Future()
        self.futures.append(future)
        delay = self.rng.random() * 0.01

        def work() -> None:
            time.sleep(delay)
            if number == self.fail_batch:
                future.set_exception(ConnectionError("disk full"))
                return
            with self.lock:
                result = self.send(events)
                self.durable_rows.update(e["context"]["import"]["row"] for e in events)
            future.set_result(result)

        threading.Thread(target=work).start()
        return future


def every_row_up_to_the_checkpoint_is_settled(sink: ThreadedSink, tmp_path: Path,
                                              bad_rows: set[int]):
    def check(progress: ImportProgress) -> None:
        path = tmp_path / "state" / CHECKPOINT
        if not path.exists():
            return
        last = json.loads(path.read_text())["last_row"]
        with sink.lock:
            missing = [r for r in range(2, last + 1)
                       if r not in sink.durable_rows and r not in bad_rows]
        assert not missing, f"checkpoint at row {last} covers rows not yet durable: {missing}"

    return check


@pytest.mark.parametrize("seed", range(4))
def test_checkpoints_cover_only_durable_rows_with_batches_completing_in_any_order(
        write, run, tmp_path, seed):
    # Rows with no id are the runner's own rejections: held back while batches are in
    # flight, they must land in the report once, in row order, exactly as without pipelining.
    lines = "".join(f"u{i},{i}\n" if i % 7 else f",{i}\n" for i in range(300))
    path = write("id,n\n" + lines)
    bad_rows = {i + 2 for i in range(300) if i % 7 == 0}

    reference = ListSink()
    expected = run(path, reference, batch_size=10, state_dir=tmp_path / "reference")

    sink = ThreadedSink(seed, fail_batch=9 + seed)
    check = every_row_up_to_the_checkpoint_is_settled(sink, tmp_path, bad_rows)
    with pytest.raises(ImportAborted):
        run(path, sink, progress=check, batch_size=10)
    assert all(future.done() for future in sink.futures)  # nothing left committing
    sink.fail_batch = None
    summary = run(path, sink, progress=check, batch_size=10)

    assert summary.completed
    assert summary.rows_read == expected.rows_read == 300
    assert summary.events_accepted + summary.duplicates == expected.events_accepted
    assert summary.rows_rejected == expected.rows_rejected == len(bad_rows)
    assert summary.rejected_by_reason == expected.rejected_by_reason
    assert read_report(summary.error_report) == read_report(expected.error_report)
    assert sorted(e["messageId"] for e in sink.events) == sorted(
        e["messageId"] for e in reference.events)


class LazyFuture(Future):
    """Settles only when someone waits for it: a batch that stays in flight until then."""

    def __init__(self, settle: Any):
        super().__init__()
        self._settle_now = settle

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            self._settle_now(self)
        return super().result(timeout)


class LazySink(ListSink):
    max_in_flight = 3

    def submit(self, events: list[dict[str, Any]], encoded: list[bytes]) -> Future[SinkResult]:
        return LazyFuture(lambda future: future.set_result(self.send(events)))


def test_a_long_run_of_bad_rows_does_not_pile_up_while_batches_are_in_flight(
        write, run, monkeypatch):
    import millpond.backfill.runner as runner

    monkeypatch.setattr(runner, "_MAX_HELD_REJECTIONS", 5)
    held: list[int] = []
    original = runner._Runner._reject_row

    def spy(self: Any, error: Any) -> None:
        original(self, error)
        held.append(len(self.held))

    monkeypatch.setattr(runner._Runner, "_reject_row", spy)
    lines = "".join(f"u{i},{i}\n" for i in range(12)) + "".join(f",{i}\n" for i in range(40))
    path = write("id,n\n" + lines + "u99,99\n")
    summary = run(path, LazySink(), batch_size=10)
    assert 0 < max(held) < 5              # held back while batch 1 was in flight, then written
    assert summary.rows_rejected == 40 and summary.events_accepted == 13
    assert summary.rows_read == 53
    report = read_report(summary.error_report)
    assert [int(r["row"]) for r in report] == list(range(14, 54))


def test_a_submit_that_raises_fails_its_batch_after_the_earlier_ones(people, run, tmp_path):
    class Refusing(LazySink):
        submitted = 0

        def submit(self, events: list[dict], encoded: list[bytes]) -> Future[SinkResult]:
            self.submitted += 1
            if self.submitted == 3:
                raise ConnectionError("queue full")
            return super().submit(events, encoded)  # settles once the runner waits for it

    sink = Refusing()
    with pytest.raises(ImportAborted, match="import stopped at row 22: queue full"):
        run(people, sink, batch_size=10)
    assert sink.submitted == 3                   # nothing more sent after the refusal
    assert checkpoint(tmp_path)["last_row"] == 21   # batches 1 and 2 settled first, in order
    sink = PipelinedListSink(max_in_flight=2)
    summary = run(people, sink, batch_size=10)
    assert summary.resumed_after_row == 21 and summary.rows_read == ROWS
    assert [e["traits"]["n"] for e in sink.events] == list(range(20, ROWS))


def test_plain_sinks_still_get_one_batch_at_a_time(people, run):
    sink = ListSink()
    run(people, sink)
    assert sink.batches == [ROWS]  # the default batch of 1000 events
