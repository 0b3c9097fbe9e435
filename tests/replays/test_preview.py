"""The replay preview split over worker processes counts exactly what one process counts
(and a backend without a part scanner counts the same in process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from millpond.collector.validation import normalize
from millpond.replays import preview
from millpond.replays.preview import PreviewJob, run_preview
from millpond.storage import StorageConfig, open_storage
from millpond.timeutil import format_ms
from millpond.workers import Stopped, WorkerPool

BASE = 1_700_000_000_000
ACTIONS = [
    {"name": "orders", "trigger": 'type = "track" and event = "Order Completed"',
     "mapping": {"order": {"@path": "$.properties.order_id"},
                 "total": {"@path": "$.properties.total"}, "user": {"@path": "$.userId"}}},
    {"name": "pages", "trigger": 'type = "page"', "mapping": {"@path": "$.properties.missing"}},
    {"name": "everything", "trigger": 'type = "track"', "mapping": {"@path": "$."}},
]


def events(n: int):
    out = []
    for i in range(n):
        kind = ("track", "track", "page", "group", "identify")[i % 5]
        msg = {"type": kind, "messageId": f"m{i}", "userId": f"u{i % 7}",
               "timestamp": format_ms(BASE + (i * 7919) % n * 1000)}
        if kind == "track":
            msg["event"] = "Order Completed" if i % 3 else f"Viewed {i % 11}"
            msg["properties"] = {"order_id": f"o{i}", "total": i}
        elif kind == "group":
            msg["groupId"] = "acme"
        elif kind == "page":
            msg["properties"] = {"path": "/"}
        source = "src_crm" if i % 13 == 0 else "src_web"
        out.append(normalize(msg, source_id=source, received_ms=int(time.time() * 1000)))
    return out


def a_plan(flt: str | None) -> dict:
    return {"destination": "d", "destination_name": "hook", "sources": ["src_web"],
            "source_names": {"src_web": "web"}, "all_sources": False,
            "excluded_sources": [{"id": "src_crm", "name": "crm",
                                  "reason": "source crm is not replayable"}],
            "ts_from": BASE, "ts_to": BASE + 10**9, "from": "", "to": None,
            "max_seq": 900, "include_live": False, "filter": flt, "rate": 100.0}


@pytest.fixture(scope="module")
def pool():
    workers = WorkerPool(2, preload=["millpond.replays.preview"])
    yield workers
    workers.close()


def open_test_storage(tmp_path, backend: str = "sqlite"):
    """``archived``: SQLite whose older part (a range of 600 events) is in the archive."""
    archived = backend == "archived"
    storage = open_storage(StorageConfig(backend="sqlite" if archived else backend,
                                         data_dir=str(tmp_path / "data"),
                                         synchronous="NORMAL",
                                         archive_range=600 if archived else 0))
    storage.log.submit(events(1000)).result()
    if archived:
        archive = storage.archive  # type: ignore[attr-defined]
        while archive.seal_once() is not None:
            pass
        assert [f.last_seq for f in archive.files()] == [600]
    return storage


@pytest.mark.parametrize("backend", ["sqlite", "memory", "archived"])
@pytest.mark.parametrize("flt", [None, 'userId != "u3"'])
def test_parallel_preview_equals_the_single_process_one(tmp_path, monkeypatch, pool, flt,
                                                        backend):
    storage = open_test_storage(tmp_path, backend)
    try:
        job = PreviewJob(a_plan(flt), "webhook", {"url": "http://vendor.invalid/"}, ACTIONS)
        alone = asyncio.run(run_preview(storage.index, job, {"src_web": "web"}))
        monkeypatch.setattr(preview, "MIN_PART_EVENTS", 100)
        split = asyncio.run(run_preview(storage.index, job, {"src_web": "web"}, pool))
    finally:
        storage.close()
    assert split["scan"]["scanned"] == alone["scan"]["scanned"] == 900
    split.pop("scan"), alone.pop("scan")
    assert split == alone
    # and the counts are the right ones, not merely equal
    kept = [e for e in events(1000)[:900] if e.source_id == "src_web"
            and (flt is None or e.user_id != "u3")]
    tracks = [e for e in kept if e.type == "track"]
    assert alone["would_send"] == len(tracks) + sum(1 for e in tracks
                                                     if e.event_name == "Order Completed")
    assert alone["excluded"][0]["events"] == sum(1 for e in events(1000)[:900]
                                                 if e.source_id == "src_crm")
    [err] = alone["mapping_errors"]
    assert err["action"] == "pages" and err["events"] == sum(1 for e in kept
                                                             if e.type == "page")
    assert len(err["samples"]) == 3
    assert {u["type"] for u in alone["unhandled"]} == {"group", "identify"}


def test_a_preview_without_a_pool_or_with_a_small_window_stays_in_process(tmp_path, pool):
    storage = open_storage(StorageConfig(data_dir=str(tmp_path / "data")))
    try:
        storage.log.submit(events(200)).result()
        job = PreviewJob(a_plan(None), "webhook", {"url": "http://vendor.invalid/"}, ACTIONS)
        before = pool._executor
        # 200 events: below MIN_PART_EVENTS
        result = asyncio.run(run_preview(storage.index, job, {}, pool))
    finally:
        storage.close()
    assert result["events"] > 0 and pool._executor is before


def test_the_preview_workers_preload_leaves_the_http_client_out():
    """Each preview worker holds what ``millpond.replays.preview`` imports (the service
    preloads it in the fork server): the HTTP client and its parsers are ~10 MiB a worker
    that a dry run never uses."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, millpond.replays.preview;"
         " print(sorted(m for m in ('aiohttp', 'yarl', 'multidict') if m in sys.modules))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"



class _StopAfterFirstChunk:
    """A part scanner that counts the chunks it gives and sets ``stop`` after the first:
    as a client leaving while the first chunk is tallied."""

    def __init__(self, inner, stop: threading.Event) -> None:
        self.inner, self.stop, self.given = inner, stop, 0

    def parts(self, *args):
        return self.inner.parts(*args)

    def scan(self, *args):
        for chunk in self.inner.scan(*args):
            self.given += 1
            self.stop.set()
            yield chunk


def test_a_preview_in_process_stops_at_the_next_chunk(tmp_path, monkeypatch):
    storage = open_test_storage(tmp_path)
    try:
        monkeypatch.setattr(preview, "CHUNK", 10)
        job = PreviewJob(a_plan(None), "webhook", {"url": "http://vendor.invalid/"}, ACTIONS)
        stop = threading.Event()
        scanner = _StopAfterFirstChunk(storage.index.part_scanner(), stop)
        with pytest.raises(Stopped):
            preview._tally_parts(scanner, job, None, stop)  # type: ignore[arg-type]
    finally:
        storage.close()
    assert scanner.given == 1  # of 90
