"""The embedded store's deletion leaves no bytes of the person in any file of the data dir
(free pages, write-ahead logs), even among many other people's events."""

from __future__ import annotations

import asyncio
from pathlib import Path

from millpond.storage import StorageConfig, open_storage

from ..helpers import ev

SECRET = b"zq-unique-trait-7f3a"


def _bytes_found(data_dir: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            found += [f"{path.name}: {n!r}" for n in needles if n in blob]
    return found


def _others_and_ada(n: int) -> tuple[list[dict], list[dict]]:
    """``n`` events of other people (padded, so pages fill), and 50 of Ada's with the
    secret: the bytes a scrub must leave nowhere."""
    others = [ev(f"o{i}", userId=f"user-{i}", properties={"pad": "x" * 200})
              for i in range(n)]
    mine = [ev(f"m{i}", userId="ada-9c1", anonymousId="anon-ada-9c1",
               properties={"secret": SECRET.decode()}) for i in range(50)]
    return others, mine


def test_deleted_people_leave_no_bytes_in_the_data_dir(tmp_path):
    data = tmp_path / "data"
    storage = open_storage(StorageConfig(backend="sqlite", data_dir=str(data)))
    try:
        others, mine = _others_and_ada(3000)
        storage.log.submit(others[:1500] + mine + others[1500:]).result(30)
        assert asyncio.run(storage.index.count_person_events(["ada-9c1"])) == 50
        needles = [b"ada-9c1", SECRET]
        assert _bytes_found(data, needles)  # the search can find them before
        assert storage.eraser.events(["ada-9c1", "anon-ada-9c1"]) == 50
        storage.eraser.scrub()
        assert _bytes_found(data, needles) == []
        assert len(asyncio.run(storage.log.read(0, 10_000))) == 3000
    finally:
        storage.close()
    assert _bytes_found(data, [b"ada-9c1", SECRET]) == []


def _archived_text(data: Path) -> list[str]:
    """Every value of every archived row, decoded (a Parquet file is compressed, so a
    byte search of it proves nothing; the reader's view does)."""
    import pyarrow.parquet as pq

    values: list[str] = []
    for path in sorted((data / "archive").glob("*.parquet")):
        table = pq.read_table(path, columns=["user_id", "anonymous_id", "body"])
        for column in table.columns:
            values.extend(v if isinstance(v, str) else bytes(v).decode()
                          for v in column.to_pylist() if v is not None)
    return values


def test_deleted_people_are_written_out_of_the_archive(tmp_path):
    data = tmp_path / "data"
    storage = open_storage(StorageConfig(backend="sqlite", data_dir=str(data),
                                         archive_range=500))
    try:
        others = [ev(f"o{i}", userId=f"user-{i}") for i in range(1200)]
        mine = [ev(f"m{i}", userId="ada-9c1", anonymousId="anon-ada-9c1",
                    properties={"secret": SECRET.decode()}) for i in range(30)]
        storage.log.submit(others[:300] + mine[:20] + others[300:] + mine[20:]).result(30)
        while storage.archive.seal_once() is not None:
            pass
        assert len(storage.archive.files()) == 2
        before = _archived_text(data)
        assert any("ada-9c1" in v for v in before) and any(SECRET.decode() in v for v in before)

        assert storage.eraser.events(["ada-9c1", "anon-ada-9c1"]) == 30
        after = _archived_text(data)
        assert not [v for v in after if "ada-9c1" in v or SECRET.decode() in v]
        assert len(asyncio.run(storage.log.read(0, 10_000))) == 1200
        assert sum(f.events for f in storage.archive.files()) == 1000 - 20
        storage.eraser.scrub()
        assert _bytes_found(data, [b"ada-9c1", SECRET]) == []
    finally:
        storage.close()


def test_a_log_too_large_to_vacuum_keeps_no_bytes_a_seal_freed(tmp_path, monkeypatch):
    # A seal frees the pages of archived rows without zeroing them (secure_delete=FAST):
    # when the person is deleted later and the log is too large to vacuum, scrub must
    # overwrite the free pages instead. The sizes here are small, so "too large" is
    # forced; the search finds the bytes in log.db's free pages before the scrub.
    from millpond.storage.sqlite import eraser

    monkeypatch.setattr(eraser, "VACUUM_LOG_BYTES", 0)
    data = tmp_path / "data"
    storage = open_storage(StorageConfig(backend="sqlite", data_dir=str(data),
                                         archive_range=1000))
    try:
        others, mine = _others_and_ada(1500)
        storage.log.submit(others[:400] + mine + others[400:]).result(30)
        while storage.archive.seal_once() is not None:
            pass
        with storage.log.reading() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with storage.log.reading() as conn:  # every row of theirs is archived...
            assert conn.execute("SELECT count(*) FROM events WHERE instr(body, ?)",
                                (SECRET,)).fetchone() == (0,)
        assert SECRET in (data / "log.db").read_bytes()  # ...yet their bytes are in free pages

        assert storage.eraser.events(["ada-9c1", "anon-ada-9c1"]) == 50
        storage.eraser.scrub()
        assert _bytes_found(data, [b"ada-9c1", SECRET]) == []
        assert len(asyncio.run(storage.log.read(0, 10_000))) == 1500
        with storage.log.reading() as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (550,)
    finally:
        storage.close()
