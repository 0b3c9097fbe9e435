"""The cluster backend's archive tier beyond the contract suite (``contract/test_archive.py``):
what comes of several processes sharing one manifest, and of a seal interrupted at each
of its steps."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from millpond.storage.archive import files as archive_files
from millpond.storage.models import Window
from millpond.storage.postgres.archive import StaleArchiver
from tests.storage.contract.conftest import ClusterBackend
from tests.storage.helpers import ev


@pytest.fixture
def place(dev_cluster, tmp_path, monkeypatch) -> Iterator[ClusterBackend]:
    """A stream, a schema and a bucket of this test's own on the session's cluster."""
    from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY

    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY), ("AWS_REGION", REGION)):
        monkeypatch.setenv(name, value)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    dev_cluster.s3.client().create_bucket(Bucket=bucket)
    backend = ClusterBackend(tmp_path, dev_cluster.nats.urls, dev_cluster.postgres.dsn(),
                             s3=dev_cluster.s3.endpoint, bucket=bucket)
    yield backend
    backend.cleanup()


def _ids(events) -> list[str]:
    return [json.loads(e.body)["messageId"] for e in events]


def test_a_process_whose_manifest_is_stale_still_reads_every_event(place):
    reader = place.open_archived(10)  # opened before anything was archived
    archiver = place.open_archived(10)
    try:
        archiver.log.submit([ev(f"m{i}", ts=100 - i) for i in range(25)]).result(10)
        everything = asyncio.run(archiver.log.read(0, 1000))
        while archiver.archive.seal_once() is not None:
            pass
        assert archiver.tiers()[0].events == 5  # purged from the stream
        assert reader.archive.archived_upto() == 0  # it has not looked since
        assert asyncio.run(reader.log.get(4)) == everything[3]
        assert reader.archive.archived_upto() == 20  # a miss read the manifest again
        reader.archive._listed([])  # stale again: each read path finds its way back
        assert asyncio.run(reader.log.read(0, 1000)) == everything
        reader.archive._listed([])
        assert asyncio.run(reader.log.find("src_a", "m7")) == everything[7]
        reader.archive._listed([])

        async def scan():
            return [e async for c in reader.index.scan(Window(0, 1000), chunk=7) for e in c]

        assert asyncio.run(scan()) == sorted(everything, key=lambda e: (e.ts_ms, e.seq))
        # a file rewritten by another process since: the reader's cached name is gone
        stale = list(reader.archive.files())
        archiver.log.delete([2])
        reader.archive._listed(stale)
        assert _ids(asyncio.run(reader.log.read(0, 1000))) == [
            i for i in _ids(everything) if i != "m1"]
    finally:
        reader.close()
        archiver.close()


def test_a_seal_interrupted_before_its_purge_is_finished_by_the_next(place, monkeypatch):
    storage = place.open_archived(10)
    try:
        storage.log.submit([ev(f"m{i}", ts=i) for i in range(15)]).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))

        def crash(_seq: int) -> None:
            raise RuntimeError("killed before the purge")

        purge = storage.log.purge_upto
        monkeypatch.setattr(storage.log, "purge_upto", crash)
        with pytest.raises(RuntimeError):
            storage.archive.seal_once()
        # listed, and still in the stream: each event is read once, from the archive
        assert storage.archive.archived_upto() == 10
        assert storage.tiers()[0].events == 15
        assert asyncio.run(storage.log.read(0, 1000)) == everything
        monkeypatch.setattr(storage.log, "purge_upto", purge)
        assert storage.archive.seal_once() is None  # no range sealed: only the purge
        assert storage.tiers()[0].events == 5
        assert asyncio.run(storage.log.read(0, 1000)) == everything
    finally:
        storage.close()


def test_a_file_written_but_never_listed_is_removed_and_never_read(place, monkeypatch):
    storage = place.open_archived(10)
    try:
        storage.log.submit([ev(f"m{i}", ts=i) for i in range(15)]).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))

        write = storage.archive.place.write

        def crash(*args):
            write(*args)
            raise RuntimeError("killed after the upload, before the manifest's commit")

        monkeypatch.setattr(storage.archive.place, "write", crash)
        with pytest.raises(RuntimeError):
            storage.archive.seal_once()
        monkeypatch.setattr(storage.archive.place, "write", write)
        [left] = storage.archive.place.names()
        assert left.startswith("log-000000000000001-000000000000010.")
        assert storage.archive.archived_upto() == 0
        assert asyncio.run(storage.log.read(0, 1000)) == everything  # all from the stream
        # the next archiver: no archiver before it can list a file any more, so every
        # unlisted one is an interrupted write's
        storage.archive.take_over()
        assert storage.archive.place.names() == set()
        assert storage.archive.seal_once() is not None
        assert asyncio.run(storage.log.read(0, 1000)) == everything
    finally:
        storage.close()


def _stalled_after_reading(storage, monkeypatch, meanwhile) -> None:
    """Make ``storage``'s next seal run ``meanwhile()`` once its file is written (its range
    read), before it lists the file: an archiver that stalled past its lease."""
    write = storage.archive.place.write

    def write_then_stall(*args):
        monkeypatch.setattr(storage.archive.place, "write", write)  # once
        stats = write(*args)
        meanwhile()
        return stats

    monkeypatch.setattr(storage.archive.place, "write", write_then_stall)


def test_a_stalled_seal_cannot_list_a_range_another_process_removed_events_from(
        place, monkeypatch):
    stale, new = place.open_archived(10), place.open_archived(10)  # two connections
    try:
        stale.log.submit([ev(f"m{i}", ts=i, userId=f"u{i}") for i in range(15)]).result(10)
        everything = asyncio.run(stale.log.read(0, 1000))
        stale.archive.take_over()
        # while the stale archiver holds the range it read, the new process erases u3
        _stalled_after_reading(stale, monkeypatch, lambda: new.eraser.events(["u3"]))
        assert stale.archive.seal_once() is None  # refused: a removal ran since its read
        assert stale.archive.place.names() == set()  # its file removed, never listed
        assert stale.tiers()[0].events == 14  # nothing purged
        stats = stale.archive.seal_once()  # tried again: the range as it is now
        assert stats is not None and stats.events == 9
        kept = [e for e in everything if e.seq != 4]
        for storage in (stale, new):
            assert asyncio.run(storage.log.read(0, 1000)) == kept
            assert asyncio.run(storage.log.find("src_a", "m3")) is None
        assert archive_files.seqs_count(stale.archive.path(stats), [4]) == 0
    finally:
        stale.close()
        new.close()


def test_an_archiver_taken_over_lists_nothing_and_its_upload_is_removed(place, monkeypatch):
    stale, new = place.open_archived(10), place.open_archived(10)
    try:
        stale.log.submit([ev(f"m{i}", ts=i) for i in range(25)]).result(10)
        everything = asyncio.run(stale.log.read(0, 1000))
        stale.archive.take_over()
        # the jobs lease changed hands while the stale one was uploading; the new holder
        # takes over (removing the upload it finds unlisted) and seals both ranges
        def new_holder_seals() -> None:
            new.archive.take_over()
            assert new.archive.seal_once() is not None

        _stalled_after_reading(stale, monkeypatch, new_holder_seals)
        with pytest.raises(StaleArchiver):
            stale.archive.seal_once()
        with pytest.raises(StaleArchiver):  # and it seals no more
            stale.archive.seal_once()
        assert new.archive.seal_once() is not None
        listed = {f.name for f in new.archive.files()}
        assert len(listed) == 2 and new.archive.place.names() == listed
        for storage in (stale, new):
            assert asyncio.run(storage.log.read(0, 1000)) == everything
    finally:
        stale.close()
        new.close()


def test_an_event_the_index_lacks_is_indexed_before_its_range_is_sealed(place):
    storage = place.open_archived(10)
    try:
        storage.log.submit([ev(f"m{i}", ts=i, userId=f"u{i}") for i in range(12)]).result(10)
        everything = asyncio.run(storage.log.read(0, 1000))
        # as a process killed between its PubAck and its index row leaves it
        with psycopg.connect(place.dsn, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {place.stream}.events WHERE seq = 4")  # type: ignore[arg-type]
        stats = storage.archive.seal_once()
        assert stats is not None and stats.events == 10
        assert archive_files.seqs_count(storage.archive.path(stats), [4]) == 1
        assert asyncio.run(storage.log.read(0, 1000)) == everything
        assert asyncio.run(storage.index.person_events(["u3"])) == [everything[3]]
    finally:
        storage.close()


def test_a_stale_archivers_upload_never_replaces_the_file_another_listed(place, monkeypatch):
    stale, new = place.open_archived(10), place.open_archived(10)
    try:
        stale.log.submit([ev(f"m{i}", ts=i) for i in range(15)]).result(10)
        everything = asyncio.run(stale.log.read(0, 1000))
        stale.archive.take_over()
        write = stale.archive.place.write

        def new_holder_first(*args):
            # the stale one stalled before reading its range; meanwhile the new holder
            # sealed it and purged the stream, so the stale one's file comes out empty
            monkeypatch.setattr(stale.archive.place, "write", write)
            new.archive.take_over()
            assert new.archive.seal_once() is not None
            return write(*args)

        monkeypatch.setattr(stale.archive.place, "write", new_holder_first)
        with pytest.raises(StaleArchiver):
            stale.archive.seal_once()
        [listed] = new.archive.files()
        assert listed.events == 10 and new.archive.place.names() == {listed.name}
        assert archive_files.seqs_count(new.archive.path(listed), range(1, 11)) == 10
        for storage in (stale, new):
            assert asyncio.run(storage.log.read(0, 1000)) == everything
    finally:
        stale.close()
        new.close()
