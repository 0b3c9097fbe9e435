"""The archive tier's contract over every backend that has one (the embedded store with
its files in the data dir, the cluster with its files on S3): sealed ranges move to
Parquet files, every read sees archive + hot as one log, dedupe stays exact, retention
and deletions reach into the files, and ``tiers()`` shows both."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator

import pyarrow.parquet as pq

from millpond.storage.archive import files as archive_files
from millpond.storage.models import EventQuery, Window, WindowCursor, add_owners

from ..helpers import ev

DAY = 86_400_000


def seal_all(storage) -> int:
    n = 0
    while storage.archive.seal_once() is not None:
        n += 1
    return n


def _body(e):
    return json.loads(e.body)


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """The archive files opened meanwhile, by name (``pq`` is one module: every reader of
    ``archive/files.py`` opens through it)."""
    opened: list[str] = []
    real = archive_files.pq.ParquetFile

    def counted(path, *args, **kwargs):
        opened.append(str(getattr(path, "name", path)))
        return real(path, *args, **kwargs)

    archive_files.pq.ParquetFile = counted
    try:
        yield opened
    finally:
        archive_files.pq.ParquetFile = real


def test_reads_see_archive_and_hot_as_one_log(archive_backend):
    rng = random.Random(7)
    storage = archive_backend.open_archived(10)
    try:
        events = [ev(f"m{i}", "src_a" if i % 3 else "src_b", ts=rng.randrange(0, 50_000),
                     userId=f"u{i % 4}") for i in range(35)]
        for start in range(0, 35, 7):
            storage.log.submit(events[start:start + 7]).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))
        seal_all(storage)  # (the embedded store may have sealed some in its thread)
        files = storage.archive.files()
        assert [(f.first_seq, f.last_seq, f.events) for f in files] == [
            (1, 10, 10), (11, 20, 10), (21, 30, 10)]
        meta = pq.ParquetFile(storage.archive.path(files[0])).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert meta.row_group(0).column(1).statistics.has_min_max  # ts
        in_file = pq.read_table(storage.archive.path(files[1]), columns=["ts", "seq"])
        assert list(zip(in_file["ts"].to_pylist(), in_file["seq"].to_pylist(), strict=True)) \
            == sorted((e.ts_ms, e.seq) for e in everything[10:20])  # sorted by event time
        hot, archived = storage.tiers()
        assert (hot.events, archived.events) == (5, 30) and hot.bytes > 0
        assert archived.bytes == sum(len(b) for b in archive_backend.archive_bytes(storage))
        assert (archived.ts_min, archived.ts_max) == (
            min(e.ts_ms for e in everything[:30]), max(e.ts_ms for e in everything[:30]))
        assert (hot.ts_min, hot.ts_max) == (
            min(e.ts_ms for e in everything[30:]), max(e.ts_ms for e in everything[30:]))

        assert asyncio.run(storage.log.read(0, 1000)) == everything
        assert asyncio.run(storage.log.read(8, 5)) == everything[8:13]
        assert asyncio.run(storage.log.read(27, 6)) == everything[27:33]  # across the tiers
        tracks = asyncio.run(storage.log.read(0, 1000, upto_seq=25, types=frozenset({"track"})))
        assert tracks == everything[:25]
        assert asyncio.run(storage.log.get(3)) == everything[2]
        assert asyncio.run(storage.log.get(33)) == everything[32]
        assert asyncio.run(storage.log.find("src_b", "m3")) == everything[3]
        assert asyncio.run(storage.log.find("src_a", "m3")) is None

        def by_time(window):
            return sorted((e for e in everything if window.ts_from <= e.ts_ms < window.ts_to
                           and (window.max_seq is None or e.seq <= window.max_seq)
                           and (window.source_ids is None
                                or _body(e)["source_id"] in window.source_ids)),
                          key=lambda e: (e.ts_ms, e.seq))

        async def scan(window, after=None, chunk=4):
            return [e async for c in storage.index.scan(window, after=after, chunk=chunk)
                    for e in c]

        for window in (Window(0, 50_000), Window(10_000, 30_000, max_seq=27),
                       Window(0, 50_000, source_ids=("src_b",))):
            expected = by_time(window)
            assert asyncio.run(scan(window)) == expected
            assert asyncio.run(storage.index.count(window)) == len(expected)
            middle = expected[len(expected) // 2]
            after = WindowCursor(middle.ts_ms, middle.seq)
            assert asyncio.run(scan(window, after)) == expected[len(expected) // 2 + 1:]

        person = asyncio.run(storage.index.person_events(["u1"], limit=100))
        assert {e.seq for e in person} == {e.seq for e in everything
                                           if _body(e)["userId"] == "u1"}
        # dedupe is exact for archived events, and a new id is still new
        again = storage.log.submit([ev("m1"), ev("m3", "src_b"), ev("m1", "src_b")]).result(10)
        assert again.seqs[:2] == [None, None] and again.seqs[2] is not None
    finally:
        storage.close()
    reopened = archive_backend.open_archived(10)
    try:
        assert len(reopened.archive.files()) == 3
        assert len(asyncio.run(reopened.log.read(0, 1000))) == 36
        assert asyncio.run(reopened.log.find("src_b", "m3")) == everything[3]
    finally:
        reopened.close()


def test_read_all_reads_each_archived_file_once_then_the_hot_store(archive_backend):
    rng = random.Random(11)
    storage = archive_backend.open_archived(10)
    try:
        # Event times unrelated to arrival: a file sorted by time holds every seq range.
        events = [ev(f"m{i}", ts=rng.randrange(0, 50_000)) for i in range(35)]
        storage.log.submit(events).result(10)
        seal_all(storage)
        everything = asyncio.run(storage.log.read(0, 1000))
        async def all_upto(upto):
            return [e async for part in storage.log.read_all(upto, 4) for e in part]

        with files_opened() as read_files:
            got = asyncio.run(all_upto(33))
        assert sorted(got, key=lambda e: e.seq) == [e for e in everything if e.seq <= 33]
        assert len(read_files) == 3  # each archived file opened once, not once a page
        # The archived part comes a file at a time, in the file's own (event time) order.
        first_file = [e.seq for e in got[:10]]
        assert sorted(first_file) == list(range(1, 11)) and first_file != sorted(first_file)
        assert asyncio.run(all_upto(7)) and all(e.seq <= 7 for e in asyncio.run(all_upto(7)))
    finally:
        storage.close()


def test_a_persons_archived_events_are_read_with_each_file_opened_once(archive_backend):
    """A person's activity, and the events a segment re-evaluation reads, come through
    the per-person index: an archived event used to be read on its own, opening its file
    and decoding every row group its seq might be in (5 s for one person's 26 events in
    a million)."""
    rng = random.Random(5)
    storage = archive_backend.open_archived(10)
    try:
        events = [ev(f"m{i}", ts=rng.randrange(0, 50_000), userId=f"u{i % 3}")
                  for i in range(35)]
        storage.log.submit(events).result(10)
        seal_all(storage)
        everything = asyncio.run(storage.log.read(0, 1000))
        with files_opened() as opened:
            person = asyncio.run(storage.index.person_events(["u1"], limit=100))
        mine = [e for e in everything if _body(e)["userId"] == "u1"]
        assert sorted(person, key=lambda e: e.seq) == mine and len(mine) == 12
        assert len(opened) <= 3, opened  # 3 files, 10 of u1's events among them
    finally:
        storage.close()


def test_the_events_query_reads_both_tiers(archive_backend):
    storage = archive_backend.open_archived(10)
    try:
        events = [ev(f"m{i}", "src_a" if i % 2 else "src_b", ts=i * 10, kind=(
            "identify" if i % 5 == 0 else "track"), userId=f"u{i % 3}", event="Clicked")
            for i in range(35)]
        storage.log.submit(events).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))
        seal_all(storage)
        assert len(storage.archive.files()) == 3

        for q, keep in (
                (EventQuery(limit=1000), lambda e: True),
                (EventQuery(descending=True, limit=12), lambda e: True),
                (EventQuery(source_ids=["src_a"], types=["track"], limit=1000),
                 lambda e: _body(e)["source_id"] == "src_a" and _body(e)["type"] == "track"),
                (EventQuery(user_id="u1", ts_from=50, ts_to=300, limit=1000),
                 lambda e: _body(e)["userId"] == "u1" and 50 <= e.ts_ms < 300),
                (EventQuery(after_seq=8, before_seq=33, descending=True, limit=7),
                 lambda e: 8 < e.seq < 33)):
            expected = [e for e in everything if keep(e)]
            if q.descending:
                expected.reverse()
            assert asyncio.run(storage.index.query(q)) == expected[:q.limit], q
    finally:
        storage.close()


def test_retention_reaches_into_the_archive(archive_backend):
    storage = archive_backend.open_archived(10)
    try:
        # src_a's first 12 events arrived on day 1, the rest on day 5; src_b all on day 1
        events = [ev(f"m{i}", "src_a" if i % 2 else "src_b", ts=1000 - i,
                     received=(DAY if i < 24 or i % 2 == 0 else 5 * DAY), userId=f"u{i}")
                  for i in range(40)]
        storage.log.submit(events).result(10)
        seal_all(storage)
        # u1 again, hot and as an anonymousId: still a userId in the owners
        storage.log.submit([ev("h1", "src_a", ts=1000, received=DAY, anonymousId="u1")]
                           ).result(10)
        before = asyncio.run(storage.log.read(0, 1000))
        owners: dict[str, bool] = {}
        while not (step := asyncio.run(storage.log.expire("src_a", 2 * DAY))).done:
            add_owners(owners, step.owners)
        add_owners(owners, step.owners)
        assert owners == {f"u{i}": True for i in range(24) if i % 2}
        after = asyncio.run(storage.log.read(0, 1000))
        gone = {f"m{i}" for i in range(24) if i % 2} | {"h1"}
        assert [_body(e)["messageId"] for e in after] == [
            _body(e)["messageId"] for e in before if _body(e)["messageId"] not in gone]
        assert asyncio.run(storage.index.count(Window(0, 2000))) == 28
        assert storage.log.submit([ev("m1", "src_a")]).result(10).expired == [0]
        assert sum(e.events for e in asyncio.run(storage.log.expired(Window(0, 2000)))) == 13
        listed = {f.name for f in storage.archive.files()}
        assert storage.archive.place.names() == listed  # the old files are gone
        assert all(".r1." in name for name in sorted(listed)[:2])  # rewritten files
    finally:
        storage.close()


def test_a_deletion_rewrites_the_archived_files_that_held_the_person(archive_backend):
    storage = archive_backend.open_archived(10)
    try:
        events = [ev(f"m{i}", ts=i, userId="gone-person" if i % 7 == 3 else f"u{i}",
                     properties={"secret": "trait-xyzzy" if i % 7 == 3 else "plain"})
                  for i in range(25)]
        storage.log.submit(events).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))
        seal_all(storage)
        # u5's only event is archived: read from its file
        assert storage.eraser.event_owners(["gone-person", "u5"]) == {"gone-person": True,
                                                                     "u5": True}
        assert storage.eraser.events(["gone-person"]) == 4  # 3, 10, 17 archived; 24 hot
        assert storage.eraser.events(["gone-person"]) == 0  # idempotent
        left = asyncio.run(storage.log.read(0, 1000))
        assert left == [e for e in everything if _body(e)["userId"] != "gone-person"]
        assert asyncio.run(storage.log.get(4)) is None
        listed = {f.name for f in storage.archive.files()}
        assert storage.archive.place.names() == listed
        for f in storage.archive.files():
            assert archive_files.people_count(storage.archive.path(f), ["gone-person"]) == 0
            table = pq.read_table(storage.archive.path(f))
            assert not any(b"trait-xyzzy" in body for body in table["body"].to_pylist())
        assert sorted(listed)[0].endswith(".r1.parquet")
    finally:
        storage.close()
