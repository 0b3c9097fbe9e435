"""The event log's contract, over every backend: durable on return, forever dedupe per
source, seq strictly increasing, gaps tolerated, waits, submissions, close."""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from millpond.errors import Overloaded
from millpond.storage.models import StoredEvent

from ..helpers import ev


def ids(events: list[StoredEvent]) -> list[tuple[str, str]]:
    return [(json.loads(e.body)["source_id"], json.loads(e.body)["messageId"]) for e in events]


def stored(storage) -> list[StoredEvent]:
    return asyncio.run(storage.log.read(0, 100_000))


def append(storage, events):
    return storage.log.submit(events).result(10)


# -- dedupe ----------------------------------------------------------------------------
def test_retry_of_a_stored_message_is_not_stored_again(storage):
    first = asyncio.run(storage.log.append([ev("m1"), ev("m2")]))
    assert first.seqs[0] < first.seqs[1]
    retry = asyncio.run(storage.log.append([ev("m2"), ev("m1"), ev("m3")]))
    assert retry.seqs[:2] == [None, None] and retry.seqs[2] > first.seqs[1]
    assert (retry.stored, retry.duplicates) == (1, 2)
    assert ids(stored(storage)) == [("src_a", "m1"), ("src_a", "m2"), ("src_a", "m3")]


def test_same_message_id_from_two_sources_is_two_events(storage):
    assert None not in append(storage, [ev("m1", "src_a"), ev("m1", "src_b")]).seqs
    assert append(storage, [ev("m1", "src_b")]).seqs == [None]
    assert ids(stored(storage)) == [("src_a", "m1"), ("src_b", "m1")]


def test_duplicates_inside_one_append(storage):
    seqs = append(storage, [ev("m1"), ev("m1"), ev("m2"), ev("m1")]).seqs
    assert seqs[1] is None and seqs[3] is None and seqs[0] < seqs[2]


def test_dedupe_is_forever_even_for_removed_events(backend, storage):
    first = append(storage, [ev(f"m{i}") for i in range(5)])
    backend.remove_events(storage, first.seqs[:3])  # retention took the oldest
    assert append(storage, [ev("m0"), ev("m4"), ev("m5")]).seqs[:2] == [None, None]


def test_dedupe_survives_a_reopen(durable_backend):
    storage = durable_backend.open()
    first = append(storage, [ev(f"m{i}") for i in range(5)])
    storage.close()
    storage = durable_backend.open()
    try:
        assert storage.log.last_seq() == first.seqs[-1]
        again = append(storage, [ev("m4"), ev("m5")])
        assert again.seqs[0] is None and again.seqs[1] > first.seqs[-1]
        assert storage.log.last_seq() == again.seqs[1]
    finally:
        storage.close()


def test_a_precomputed_dedupe_key_dedupes_like_the_log_own(storage):
    keyer = storage.log.dedupe_keyer()
    if keyer is None:  # the backend keeps no key: producers leave it empty
        assert append(storage, [ev("m1"), ev("m1")]).seqs[1] is None
        return
    keyer = pickle.loads(pickle.dumps(keyer))  # it crosses into an import's reader process
    keyed = ev("m1")
    keyed.dedupe_key = keyer("src_a", "m1")
    first = append(storage, [keyed, ev("m2")])
    again = [ev("m1"), ev("m2"), ev("m3")]
    again[1].dedupe_key = keyer("src_a", "m2")
    again[2].dedupe_key = keyer("src_a", "m3")
    assert None not in first.seqs
    assert append(storage, again).seqs[:2] == [None, None]


# -- durability --------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[3]  # the writer imports tests.storage.helpers
WRITER = """
import asyncio, json, sys
from tests.storage.contract.conftest import Backend
from tests.storage.helpers import ev

storage = Backend.from_spec(json.loads(sys.argv[1])).open()

async def main():
    i = 0
    while True:
        batch = [ev(f"m{i}-{k}") for k in range(20)]
        result = await storage.log.append(batch)
        print(json.dumps([e.message_id for e, s in zip(batch, result.seqs) if s]), flush=True)
        i += 1

asyncio.run(main())
"""


def test_acknowledged_appends_survive_sigkill(durable_backend):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(durable_backend.spec())],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    acked: list[str] = []
    try:
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "the writer stopped"
            acked.extend(json.loads(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    storage = durable_backend.open()
    try:
        found = {json.loads(e.body)["messageId"] for e in stored(storage)}
        assert set(acked) <= found
        assert append(storage, [ev(acked[-1]), ev(acked[0])]).seqs == [None, None]
    finally:
        storage.close()


# -- seq ---------------------------------------------------------------------------------
def test_seq_strictly_increases_under_concurrent_writers(storage):
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(30):
            result = append(storage, [ev(f"t{n}-{i}-{k}") for k in range(3)])
            assert result.seqs == sorted(result.seqs) and None not in result.seqs
            with lock:
                seqs.extend(result.seqs)

    async def tasks() -> None:
        async def one(n: int) -> None:
            for i in range(30):
                result = await storage.log.append([ev(f"a{n}-{i}-{k}") for k in range(3)])
                with lock:
                    seqs.extend(result.seqs)
        await asyncio.gather(*(one(n) for n in range(4)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join(30)
    assert len(seqs) == len(set(seqs)) == 8 * 30 * 3
    assert storage.log.last_seq() == max(seqs)
    assert [e.seq for e in stored(storage)] == sorted(seqs)


def test_submissions_from_one_thread_commit_in_order(storage):
    futures = [storage.log.submit([ev(f"m{i}")]) for i in range(50)]
    seqs = [f.result(10).seqs[0] for f in futures]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50


def test_read_bounds_and_types(storage):
    seqs = append(storage, [ev("a"), ev("b", kind="identify"), ev("c"),
                            ev("d", kind="group"), ev("e", kind="identify")]).seqs
    log = storage.log

    async def reads():
        return (await log.read(seqs[0], 2), await log.read(0, 10, upto_seq=seqs[2]),
                await log.read(0, 10, types=frozenset({"identify", "group"})),
                await log.read(seqs[1], 10, upto_seq=seqs[3], types=frozenset({"identify"})),
                await log.read(seqs[-1], 10))

    after, upto, typed, both, tail = asyncio.run(reads())
    assert [e.seq for e in after] == seqs[1:3]
    assert [e.seq for e in upto] == seqs[:3]
    assert [e.seq for e in typed] == [seqs[1], seqs[3], seqs[4]]
    assert both == [] and tail == []


def test_stored_events_keep_their_body_and_time_and_show_their_seq(storage):
    [seq] = append(storage, [ev("m1", ts=-5, userId="u1", event="Clicked")]).seqs
    [event] = stored(storage)
    assert (event.seq, event.ts_ms) == (seq, -5)
    assert json.loads(event.json()) == {"seq": seq, "type": "track", "messageId": "m1",
                                        "source_id": "src_a", "userId": "u1",
                                        "event": "Clicked"}


def test_get(storage):
    seqs = append(storage, [ev("m1"), ev("m1", "src_b"), ev("m2")]).seqs

    async def lookups():
        log = storage.log
        return await log.get(seqs[1]), await log.get(seqs[-1] + 1), await log.get(0)

    got, beyond, zero = asyncio.run(lookups())
    assert got.seq == seqs[1] and json.loads(got.body)["source_id"] == "src_b"
    assert beyond is None and zero is None


def test_find(storage):
    seqs = append(storage, [ev("m1"), ev("m1", "src_b"), ev("m2")]).seqs

    async def lookups():
        log = storage.log
        return (await log.get(seqs[1]), await log.find("src_b", "m1"),
                await log.find("src_b", "m2"), await log.find("src_a", "m2"))

    got, found, missing, other = asyncio.run(lookups())
    assert found == got and missing is None and other.seq == seqs[2]


def test_removed_events_are_not_found(backend, storage):
    seqs = append(storage, [ev("m1"), ev("m2")]).seqs
    backend.remove_events(storage, [seqs[1]])
    assert asyncio.run(storage.log.find("src_a", "m2")) is None
    assert asyncio.run(storage.log.find("src_a", "m1")).seq == seqs[0]


def test_gaps_in_seq_are_tolerated_by_every_read(backend, storage):
    seqs = append(storage, [ev(f"m{i}") for i in range(10)]).seqs
    gone = {seqs[1], seqs[2], seqs[5], seqs[9]}
    backend.remove_events(storage, gone)
    kept = [s for s in seqs if s not in gone]

    async def reads():
        log = storage.log
        return ([e.seq for e in await log.read(0, 100)],
                [e.seq for e in await log.read(seqs[0], 2)],
                [e.seq for e in await log.read(0, 100, upto_seq=seqs[6])],
                await log.get(seqs[2]), (await log.get(seqs[3])).seq)

    everything, next_two, upto, removed, present = asyncio.run(reads())
    assert everything == kept
    assert next_two == kept[1:3]
    assert upto == [s for s in kept if s <= seqs[6]]
    assert removed is None and present == seqs[3]
    assert storage.log.last_seq() >= seqs[8]
    later = append(storage, [ev("new")]).seqs[0]
    assert later > seqs[-1]  # a seq is never reused, not even a removed one


def test_read_all_gives_every_event_up_to_a_seq_once(backend, storage):
    seqs = append(storage, [ev(f"m{i}") for i in range(25)]).seqs
    backend.remove_events(storage, {seqs[3], seqs[17]})

    async def all_upto(upto, chunk):
        return [[e.seq for e in part] async for part in storage.log.read_all(upto, chunk)]

    everything = stored(storage)
    parts = asyncio.run(all_upto(seqs[20], 4))
    assert sorted(s for part in parts for s in part) == [e.seq for e in everything
                                                          if e.seq <= seqs[20]]
    assert all(0 < len(part) <= 4 for part in parts)
    assert asyncio.run(all_upto(0, 10)) == []


# -- reading on in chunks (what a backend may read ahead) ------------------------------------
def test_a_scan_in_chunks_sees_what_was_appended_while_it_read(storage):
    first = append(storage, [ev(f"m{i}") for i in range(250)]).seqs

    async def scan():
        log = storage.log
        chunks = [await log.read(0, 100)]
        chunks.append(await log.read(chunks[-1][-1].seq, 100))
        # 50 events are left: a read now returns those; one after this append, 100
        later = (await asyncio.to_thread(append, storage, [ev(f"n{i}") for i in range(100)]))
        while chunks[-1]:
            chunks.append(await log.read(chunks[-1][-1].seq, 100))
        return chunks, later.seqs

    chunks, later = asyncio.run(scan())
    assert [len(c) for c in chunks] == [100, 100, 100, 50, 0]
    assert [e.seq for c in chunks for e in c] == first + later


def test_a_cancelled_scan_leaves_the_log_readable(storage):
    seqs = append(storage, [ev(f"m{i}") for i in range(1200)]).seqs

    async def scan(after: int) -> list[int]:
        out: list[int] = []
        while rows := await storage.log.read(after, 100):
            out += [e.seq for e in rows]
            after = rows[-1].seq
        return out

    async def scenario() -> list[int]:
        first = await storage.log.read(0, 100)
        reader = asyncio.ensure_future(scan(first[-1].seq))
        await asyncio.sleep(0)  # its first read is under way
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return [e.seq for e in first] + await scan(first[-1].seq)

    assert asyncio.run(scenario()) == seqs


# -- waiting -------------------------------------------------------------------------------
def test_wait_wakes_on_commit_and_times_out_otherwise(storage):
    async def scenario() -> tuple[int, float, int, float]:
        started = time.monotonic()
        idle = await storage.log.wait(0, 0.2)
        idle_for = time.monotonic() - started
        waiter = asyncio.ensure_future(storage.log.wait(0, 10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        await asyncio.to_thread(append, storage, [ev("m1")])  # committed from a thread
        return idle, idle_for, await waiter, time.monotonic() - started

    idle, idle_for, seq, woke_after = asyncio.run(scenario())
    assert idle == 0 and idle_for >= 0.15
    assert seq == storage.log.last_seq() > 0 and woke_after < 5


def test_released_waiters_return_at_once_now_and_later(storage):
    async def scenario() -> float:
        waiter = asyncio.ensure_future(storage.log.wait(0, 30))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        storage.log.release_waiters()
        await waiter
        await storage.log.wait(0, 30)  # a later wait returns at once too
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5


def test_a_closed_log_refuses_with_overloaded_and_close_is_idempotent(backend):
    storage = backend.open()
    append(storage, [ev("m1")])
    storage.log.close()
    with pytest.raises(Overloaded) as refused:
        storage.log.submit([ev("m2")])
    assert refused.value.status == 503 and refused.value.retry_after > 0
    with pytest.raises(Overloaded):
        asyncio.run(storage.log.append([ev("m3")]))
    storage.log.close()
    storage.close()


@pytest.mark.parametrize("removal", ["erase", "expire"])
def test_a_seq_is_never_given_twice_after_the_newest_events_are_removed(durable_backend,
                                                                        removal):
    """Readers' cursors are seqs: a restart must not give a removed event's seq again."""
    storage = durable_backend.open()
    try:
        given = append(storage, [ev("m1", userId="bob"), ev("m2", userId="ada"),
                                 ev("m3", userId="ada")]).seqs
        if removal == "erase":
            assert storage.eraser.events(["ada"]) == 2
        else:
            asyncio.run(storage.log.expire("src_a", int(time.time() * 1000) + 60_000))
    finally:
        storage.close()
    storage = durable_backend.open()
    try:
        assert storage.log.last_seq() >= given[-1]
        new = append(storage, [ev("m4", userId="bob")]).seqs[0]
        assert new is not None and new > given[-1]
    finally:
        storage.close()
