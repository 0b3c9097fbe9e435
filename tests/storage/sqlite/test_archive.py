"""The SQLite log's archive tier: sealed ranges move to Parquet files and every read sees
archive + hot as one log; dedupe stays exact; a SIGKILL at any point loses and duplicates
nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import Window
from tests.storage.helpers import ev


def open_archived(tmp_path: Path, size: int = 10):
    return open_storage(StorageConfig(data_dir=str(tmp_path / "data"), synchronous="NORMAL",
                                      archive_range=size))


def seal_all(storage) -> int:
    n = 0
    while storage.archive.seal_once() is not None:
        n += 1
    return n


def test_only_the_unsealed_range_stays_in_log_db(tmp_path):
    # what every backend's archive does is the contract suite's (contract/test_archive.py);
    # this is the embedded store's own: the rows leave log.db, and the part scanner,
    # which reads log.db only, is off once part of the log is archived
    storage = open_archived(tmp_path)
    try:
        storage.log.submit([ev(f"m{i}", ts=i) for i in range(35)]).result(10)
        seal_all(storage)
        with storage.log.reading() as conn:
            assert conn.execute("SELECT min(seq), count(*) FROM events").fetchone() == (31, 5)
        assert storage.index.part_scanner() is None
        listed = {f.name for f in storage.archive.files()}
        assert {p.name for p in (tmp_path / "data" / "archive").iterdir()} == listed
    finally:
        storage.close()


def test_the_sealer_wakes_for_a_full_range_not_for_every_commit(tmp_path, monkeypatch):
    # every commit used to wake the sealer thread, which took the GIL from the collector
    # to find nothing to seal; now commits that fill no range leave it to its
    # once-a-second look
    storage = open_archived(tmp_path, size=1000)
    try:
        looks: list[int] = []
        real = storage.archive.seal_once
        monkeypatch.setattr(storage.archive, "seal_once",
                            lambda: looks.append(1) or real())
        started = time.monotonic()
        for i in range(40):
            storage.log.submit([ev(f"m{i}")]).result(10)
        assert len(looks) <= 1 + int(time.monotonic() - started), looks
        storage.log.submit([ev(f"n{i}") for i in range(960)]).result(10)
        deadline = time.monotonic() + 10
        while storage.archive.archived_upto() < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert storage.archive.archived_upto() == 1000  # the full range woke it
    finally:
        storage.close()


def test_a_seal_lets_checkpoints_pass_between_its_row_groups(tmp_path, monkeypatch):
    # A seal that read its whole range in one read transaction kept every checkpoint from
    # passing its snapshot, and the WAL grew by all the writer committed meanwhile. Each
    # row group is now a read of its own: between two, a truncating checkpoint completes
    # even though events were committed after the seal began. (The sealing process reads
    # with range_rows; here it runs in this process, to checkpoint between its reads.)
    import sqlite3

    from millpond.storage.archive import files
    from millpond.storage.sqlite.seal_process import range_rows

    monkeypatch.setattr(files, "ROW_GROUP", 10)
    storage = open_archived(tmp_path, size=1000)
    db = tmp_path / "data" / "log.db"
    try:
        storage.log.submit([ev(f"m{i}", ts=(i * 37) % 100) for i in range(100)]).result(10)
        busy: list[int] = []
        read: list[tuple[int, int]] = []
        for i, chunk in enumerate(range_rows(str(db), 0, 100)):
            read += [(row[1], row[0]) for row in chunk]
            if i == 0:
                storage.log.submit([ev(f"late{j}", ts=j) for j in range(5)]).result(10)
                conn = sqlite3.connect(db)
                busy.append(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
                conn.close()
        assert busy == [0]
        assert read == sorted(read) and sorted(seq for _, seq in read) == list(range(1, 101))
    finally:
        storage.close()


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_file_is_written_by_a_sealing_process_that_is_replaced_if_it_dies(tmp_path):
    # the seal's CPU (reading a range, Arrow, zstd) must not hold the server's GIL; a
    # sealer killed by someone is replaced at the next seal, which still succeeds
    import os

    storage = open_archived(tmp_path)
    try:
        storage.archive.close()  # sealed here, not by the thread
        storage.log.submit([ev(f"m{i}", ts=i) for i in range(25)]).result(10)
        assert storage.archive.seal_once() is not None
        [sealer] = storage.archive.sealer_pids()
        assert sealer != os.getpid() and _comm(sealer) == "millpond-sealer"
        os.kill(sealer, signal.SIGKILL)
        assert storage.archive.seal_once() is not None
        assert storage.archive.sealer_pids() != [sealer]
        assert storage.archive.archived_upto() == 20
        rows = asyncio.run(storage.log.read(0, 100))
        assert [json.loads(e.body)["messageId"] for e in rows] == [f"m{i}" for i in range(25)]
    finally:
        storage.close()


_WRITER = """
import sys, time
from millpond.storage import StorageConfig, open_storage
from tests.storage.helpers import ev
storage = open_storage(StorageConfig(data_dir=sys.argv[1], synchronous="NORMAL",
                                     archive_range=int(sys.argv[2])))
n = int(sys.argv[3])
for start in range(0, n, 50):
    batch = [ev(f"m{i}", ts=(i * 7919) % 10_000) for i in range(start, start + 50)]
    storage.log.submit(batch).result(10)
print("appended", flush=True)
while True:
    time.sleep(0.01)
"""


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def test_the_sealing_process_dies_with_the_server(tmp_path):
    # a sealer outliving a SIGKILLed server could finish a file after the next server
    # removed the unlisted ones
    data = tmp_path / "data"
    root = Path(__file__).resolve().parents[3]
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(data), "100", "1000"],
                             cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "appended\n"
        deadline = time.monotonic() + 30
        sealers: list[int] = []
        while not sealers and time.monotonic() < deadline:
            sealers = [c for c in _children(child.pid) if _comm(c) == "millpond-sealer"]
            time.sleep(0.05)
        assert sealers
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 10
    while _alive(sealers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sealers[0])


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_while_archiving_loses_and_duplicates_nothing(tmp_path):
    data = tmp_path / "data"
    root = Path(__file__).resolve().parents[3]
    total = 0
    for round_, kill_after in enumerate((0.0, 0.05, 0.15, 0.3)):
        n = 1000 * (round_ + 1)
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(data), "37", str(n)],
                                 cwd=root, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "appended\n"
        time.sleep(kill_after)  # the archiver thread is sealing ranges meanwhile
        child.send_signal(signal.SIGKILL)
        child.wait()
        total = n
        storage = open_archived(tmp_path, 37)
        try:
            rows = asyncio.run(storage.log.read(0, 100_000))
            ids = [json.loads(e.body)["messageId"] for e in rows]
            assert sorted(ids) == sorted(f"m{i}" for i in range(total))
            assert [e.seq for e in rows] == sorted({e.seq for e in rows})
            listed = {f.name for f in storage.archive.files()}
            on_disk = {p.name for p in (data / "archive").iterdir()} if (
                data / "archive").is_dir() else set()
            assert on_disk == listed  # an interrupted seal's file was removed
        finally:
            storage.close()


def test_an_s3_archive_is_read_like_a_local_one(tmp_path, monkeypatch):
    from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3

    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_REGION", REGION)):
        monkeypatch.setenv(name, value)
    s3 = MotoS3().start()
    try:
        bucket = s3.new_bucket()
        config = StorageConfig(data_dir=str(tmp_path / "data"), synchronous="NORMAL",
                               archive=f"s3://{bucket}/log", archive_endpoint=s3.endpoint,
                               archive_range=10)
        storage = open_storage(config)
        try:
            storage.log.submit([ev(f"m{i}", ts=1000 - i, received=1 if i < 5 else 10**13)
                                for i in range(25)]).result(10)
            everything = asyncio.run(storage.log.read(0, 1000))
            seal_all(storage)
            keys = sorted(o["Key"] for o in s3.client().list_objects_v2(
                Bucket=bucket)["Contents"])
            assert keys == [f"log/{f.name}" for f in storage.archive.files()] and len(keys) == 2
            assert not (tmp_path / "data" / "archive").exists()
            assert asyncio.run(storage.log.read(0, 1000)) == everything
            async def scan():
                return [e async for c in storage.index.scan(Window(0, 2000), chunk=4)
                        for e in c]

            assert asyncio.run(scan()) == sorted(everything, key=lambda e: (e.ts_ms, e.seq))
            assert asyncio.run(storage.index.count(Window(0, 2000))) == 25
            assert storage.log.submit([ev("m3")]).result(10).seqs == [None]
            while not asyncio.run(storage.log.expire("src_a", 2)).done:
                pass
            assert len(asyncio.run(storage.log.read(0, 1000))) == 20
            keys = sorted(o["Key"] for o in s3.client().list_objects_v2(
                Bucket=bucket)["Contents"])
            assert keys == [f"log/{f.name}" for f in storage.archive.files()]
            assert keys[0].endswith(".r1.parquet")
        finally:
            storage.close()
    finally:
        s3.stop()


_EXPIRER = """
import asyncio, sys
from millpond.storage import StorageConfig, open_storage
storage = open_storage(StorageConfig(data_dir=sys.argv[1], synchronous="NORMAL",
                                     archive_range=37))
print("open", flush=True)
while True:
    asyncio.run(storage.log.expire("src_a", 10**13, limit=7))
"""


def test_sigkill_while_retention_rewrites_the_archive(tmp_path):
    data = tmp_path / "data"
    storage = open_archived(tmp_path, 37)
    try:
        # odd messages are src_a's (all to expire), even ones src_b's (all kept)
        storage.log.submit([ev(f"m{i}", "src_a" if i % 2 else "src_b", ts=i % 97,
                               received=10**12) for i in range(4000)]).result(10)
        seal_all(storage)
    finally:
        storage.close()
    root = Path(__file__).resolve().parents[3]
    for kill_after in (0.2, 0.5, 1.0):
        child = subprocess.Popen([sys.executable, "-c", _EXPIRER, str(data)], cwd=root,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        time.sleep(kill_after)  # expiring, a file rewritten at a time, meanwhile
        child.send_signal(signal.SIGKILL)
        child.wait()
        storage = open_archived(tmp_path, 37)
        try:
            rows = asyncio.run(storage.log.read(0, 10_000))
            ids = [json.loads(e.body)["messageId"] for e in rows]
            assert len(ids) == len(set(ids))  # nothing twice
            assert {f"m{i}" for i in range(0, 4000, 2)} <= set(ids)  # nothing kept lost
            gone = {f"m{i}" for i in range(1, 4000, 2)} - set(ids)
            again = storage.log.submit([ev(m, "src_a") for m in sorted(gone)]).result(10)
            assert again.seqs == [None] * len(gone)  # expired ones stay deduped
            assert again.expired == list(range(len(gone)))
            listed = {f.name for f in storage.archive.files()}
            assert {p.name for p in (data / "archive").iterdir()} == listed
        finally:
            storage.close()


def test_a_log_archived_to_its_last_event_keeps_its_seqs_after_a_restart(tmp_path):
    """Every event sealed (a log of exactly a whole range): the hot table is empty, and a
    restart must still know the last seq, or it would give the archived seqs again."""
    storage = open_archived(tmp_path)
    try:
        storage.log.submit([ev(f"m{i}") for i in range(20)]).result(10)
        seal_all(storage)  # (the archiver may have sealed the first range already)
        assert storage.archive.archived_upto() == 20
    finally:
        storage.close()
    storage = open_archived(tmp_path)
    try:
        assert storage.log.last_seq() == 20
        assert storage.log.submit([ev("m20")]).result(10).seqs == [21]
        assert [e.seq for e in asyncio.run(storage.log.read(0, 100))] == list(range(1, 22))
    finally:
        storage.close()


def _ids(rows) -> list[str]:
    return [json.loads(e.body)["messageId"] for e in rows]


def _window_ids(storage) -> list[str]:
    async def scan() -> list[str]:
        out: list[str] = []
        async for chunk in storage.index.scan(Window(-(1 << 62), 1 << 62), chunk=7):
            out += _ids(chunk)
        return out

    return asyncio.run(scan())


def test_a_seal_deletes_the_hot_copies_in_short_transactions_that_reads_never_see(
        tmp_path, monkeypatch):
    # Deleting a listed range's rows in the listing's transaction held SQLite's write lock
    # for seconds per million events, and the log's writer waited. Now: listed first,
    # then deleted a chunk per transaction. Between two chunks the writer commits, and
    # every read (by seq, by window, counts, the tiers) sees each event once.
    from contextlib import contextmanager

    from millpond.storage.sqlite import archive as archive_module

    monkeypatch.setattr(archive_module, "DELETE_CHUNK", 10)
    storage = open_archived(tmp_path, size=100)
    seen: list[tuple] = []
    real = archive_module.immediate

    @contextmanager
    def between_chunks(conn):
        if len(seen) == 2:  # two chunks deleted, eight to go
            committed = storage.log.submit([ev("late", ts=5)]).result(5)
            seen.append((committed.seqs, _ids(asyncio.run(storage.log.read(0, 1000))),
                         sorted(_window_ids(storage)),
                         asyncio.run(storage.index.count(Window(-(1 << 62), 1 << 62))),
                         [t.events for t in storage.tiers()]))
        else:
            seen.append(())
        with real(conn):
            yield conn

    monkeypatch.setattr(archive_module, "immediate", between_chunks)
    try:
        storage.archive.close()  # sealed here, not by the thread
        storage.log.submit([ev(f"m{i}", ts=(i * 37) % 100) for i in range(105)]).result(10)
        assert storage.archive.seal_once() is not None
        [seqs, by_seq, by_window, counted, tiers] = seen[2]
        everything = [f"m{i}" for i in range(105)] + ["late"]
        assert seqs == [106]
        assert by_seq == everything and sorted(by_window) == sorted(everything)
        assert counted == 106 and tiers == [6, 100]  # hot, archive
        assert len(seen) == 10  # a transaction per 10 seqs
        with storage.log.reading() as conn:
            assert conn.execute("SELECT min(seq) FROM events").fetchone()[0] == 101
    finally:
        storage.close()


def test_hot_copies_a_crash_left_after_the_listing_are_deleted_at_open(tmp_path, monkeypatch):
    from millpond.storage.sqlite import archive as archive_module

    storage = open_archived(tmp_path, size=100)
    try:
        storage.archive.close()
        storage.log.submit([ev(f"m{i}", ts=i) for i in range(120)]).result(10)
        with monkeypatch.context() as patched:  # as if killed right after the listing
            patched.setattr(archive_module, "_delete_archived", lambda *args: None)
            assert storage.archive.seal_once() is not None
        with storage.log.reading() as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 120
        assert _ids(asyncio.run(storage.log.read(0, 1000))) == [f"m{i}" for i in range(120)]
    finally:
        storage.close()
    storage = open_archived(tmp_path, size=100)
    try:
        with storage.log.reading() as conn:
            assert conn.execute("SELECT min(seq), count(*) FROM events").fetchone() == (101, 20)
        assert sorted(_window_ids(storage)) == sorted(f"m{i}" for i in range(120))
    finally:
        storage.close()
