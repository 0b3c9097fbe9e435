"""The log's read-ahead for sequential readers (``storage/sqlite/prefetch.py``), over a
read function that records which thread asked for what. What a read returns through the
real log, whatever was read ahead, is in ``tests/storage/contract``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from millpond.storage.models import StoredEvent
from millpond.storage.sqlite.prefetch import Prefetcher, Read

THREAD = "millpond-log-read-ahead"


class Log:
    """Rows 1..``n`` and a read that notes each call (its read and thread); ``hold``
    makes read-ahead threads wait until it is set."""

    def __init__(self, n: int):
        self.rows = [StoredEvent(seq, 0, b"{}") for seq in range(1, n + 1)]
        self.calls: list[tuple[Read, str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.holding = threading.Event()  # a held read-ahead is waiting
        self.ahead_done = threading.Event()  # a read-ahead returned

    def last_seq(self) -> int:
        return self.rows[-1].seq if self.rows else 0

    def read(self, read: Read) -> list[StoredEvent]:
        name = threading.current_thread().name
        self.calls.append((read, name))
        if name.startswith(THREAD) and not self.hold.is_set():
            self.holding.set()
            self.hold.wait(10)
        out = [e for e in self.rows if e.seq > read.after_seq
               and (read.upto_seq is None or e.seq <= read.upto_seq)][:read.limit]
        if name.startswith(THREAD):
            self.ahead_done.set()
        return out


async def read(prefetch: Prefetcher, log: Log, after: int, limit: int,
               upto: int | None = None) -> list[StoredEvent]:
    """What ``SQLiteEventLog.read`` does: a read-ahead's answer, or a read of its own."""
    asked = Read(after, limit, upto, None)
    rows = await prefetch.take(asked)
    if rows is None:
        rows = log.read(asked)
    if rows:
        prefetch.follow(asked._replace(after_seq=rows[-1].seq), rows)
    return rows


@pytest.fixture
def log() -> Log:
    return Log(5000)


@pytest.fixture
def prefetch(log):
    opened = Prefetcher(log.read, log.last_seq, ahead_rows=2000)
    yield opened
    opened.close()


def ahead_threads() -> set[threading.Thread]:
    """Read-ahead threads alive (other tests' logs may have theirs: compare sets)."""
    return {t for t in threading.enumerate() if t.name.startswith(THREAD)}


def test_a_scan_reads_ahead_on_threads_a_span_of_chunks_at_a_time(log, prefetch):
    async def scan() -> list[int]:
        seqs, after = [], 0
        while rows := await read(prefetch, log, after, 500):
            seqs += [e.seq for e in rows]
            after = rows[-1].seq
        return seqs

    assert asyncio.run(scan()) == list(range(1, 5001))
    ahead = [(r.after_seq, r.limit) for r, name in log.calls if name.startswith(THREAD)]
    own = [r.after_seq for r, name in log.calls if not name.startswith(THREAD)]
    assert ahead == [(500, 2000), (2500, 2000), (4500, 2000)]  # 9 chunks in 3 reads
    assert own == [0, 5000]  # the first chunk, and the end of the log


def test_a_short_tail_read_ahead_is_read_again_once_more_was_committed(log, prefetch):
    log.rows = log.rows[:700]

    async def scan() -> list[list[StoredEvent]]:
        first = await read(prefetch, log, 0, 500)  # the rest (200) is read ahead
        assert await asyncio.to_thread(log.ahead_done.wait, 10)
        log.rows += [StoredEvent(seq, 0, b"{}") for seq in range(701, 1001)]
        return [first, await read(prefetch, log, 500, 500)]

    first, second = asyncio.run(scan())
    assert len(first) == 500 and [e.seq for e in second] == list(range(501, 1001))


def test_a_reader_up_to_a_moving_end_is_answered_while_that_holds(log, prefetch):
    """The profile follower's way: each read up to the log's last seq, which grows."""
    log.rows = log.rows[:2800]

    async def follow() -> list[int]:
        seqs, after = [], 0
        while after < log.last_seq():
            rows = await read(prefetch, log, after, 500, upto=log.last_seq())
            seqs += [e.seq for e in rows]
            after = rows[-1].seq
            if after == 2500:  # what is read ahead now ends at 2800
                log.rows += [StoredEvent(seq, 0, b"{}") for seq in range(2801, 3101)]
        return seqs

    assert asyncio.run(follow()) == list(range(1, 3101))
    own = [(r.after_seq, r.upto_seq) for r, name in log.calls
           if not name.startswith(THREAD)]
    # the first chunk; then only the one whose read-ahead ended short of the new end
    assert own == [(0, 2800), (2500, 3100)]


def test_what_was_read_ahead_before_a_removal_is_not_served(log, prefetch):
    async def scenario() -> list[int]:
        await read(prefetch, log, 0, 500)
        await read(prefetch, log, 500, 500)  # waits for the read-ahead: 1500 rows stay ahead
        log.rows = [e for e in log.rows if e.seq % 2]
        prefetch.removed()
        return [e.seq for e in await read(prefetch, log, 1000, 500)]

    assert asyncio.run(scenario()) == list(range(1001, 2001, 2))


def test_small_reads_are_looks_and_not_read_ahead(log, prefetch):
    async def looks() -> None:
        after = 0
        for _ in range(5):
            after = (await read(prefetch, log, after, 1))[-1].seq

    asyncio.run(looks())
    assert all(not name.startswith(THREAD) for _read, name in log.calls)


def test_more_readers_than_kept_leave_each_other_what_was_read_for_them(log):
    prefetch = Prefetcher(log.read, log.last_seq, kept=2)
    try:
        async def three_readers() -> list[list[StoredEvent]]:
            for after in (0, 1000, 2000):  # each reads its first chunk
                await read(prefetch, log, after, 500)
            log.calls.clear()
            return [await read(prefetch, log, after, 500) for after in (500, 1500, 2500)]

        chunks = asyncio.run(three_readers())
    finally:
        prefetch.close()
    assert [c[0].seq for c in chunks] == [501, 1501, 2501]
    own = [r.after_seq for r, name in log.calls if not name.startswith(THREAD)]
    assert own == [2500]  # the third found no room; the first two got theirs


def test_close_waits_for_a_running_read_ahead_and_leaves_no_thread(log):
    before = ahead_threads()
    prefetch = Prefetcher(log.read, log.last_seq)
    log.hold.clear()
    asyncio.run(read(prefetch, log, 0, 500))
    assert log.holding.wait(10)
    closing = threading.Thread(target=prefetch.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()  # the read-ahead still runs
    log.hold.set()
    closing.join(10)
    assert not closing.is_alive() and not ahead_threads() - before


def test_a_reader_cancelled_while_its_read_ahead_runs_is_cancelled(log):
    before = ahead_threads()
    prefetch = Prefetcher(log.read, log.last_seq)

    async def scenario() -> BaseException | list[StoredEvent]:
        await read(prefetch, log, 0, 500)
        waiting = asyncio.ensure_future(read(prefetch, log, 500, 500))
        await asyncio.to_thread(log.holding.wait, 10)
        waiting.cancel()
        (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
        return outcome

    log.hold.clear()
    outcome = asyncio.run(scenario())
    log.hold.set()
    prefetch.close()
    assert isinstance(outcome, asyncio.CancelledError)
    assert not ahead_threads() - before
