"""The log sink stores exactly what the collector's ``normalize`` would, byte for byte.

``prepare_batch`` skips the parts of ``normalize`` that are no-ops for the events the
importer builds and splices the fields it appends onto the runner's JSON; these tests
hold it to ``normalize`` on importer events, on every perturbation of their shape, and
end to end through a real SQLite log (and through the memory backend, which keeps no
dedupe key).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import millpond.backfill.prepare as prepare
from millpond.backfill import ImportOptions, SinkResult, run_import
from millpond.backfill.log_sink import LogSink
from millpond.collector.validation import MessageRejected, normalize
from millpond.storage import StorageConfig, open_storage
from millpond.storage.sqlite.log import SQLiteEventLog
from millpond.timeutil import format_ms

SOURCE = "src_import"
RECEIVED_MS = 1_714_564_800_123
FIXED_UUID = uuid.UUID("00000000-0000-4000-8000-000000000000")


def reference(event: Any) -> tuple[str, Any]:
    """What the collector does with one message: ("ok", NewEvent) or ("rejected", reason)."""
    with mock.patch("millpond.collector.validation.uuid.uuid4", return_value=FIXED_UUID):
        try:
            return "ok", normalize(copy.deepcopy(event), source_id=SOURCE,
                                   received_ms=RECEIVED_MS,
                                   received_at=format_ms(RECEIVED_MS))
        except MessageRejected as exc:
            return "rejected", f"{exc.code}: {exc.reason}"


def prepared(events: list[Any], encoded: list[bytes] | None) -> list[tuple[str, Any]]:
    with mock.patch("millpond.collector.validation.uuid.uuid4", return_value=FIXED_UUID):
        valid, rejected = prepare.prepare_batch(copy.deepcopy(events), encoded, SOURCE, RECEIVED_MS)
    reasons = dict(rejected)
    out, stored = [], iter(valid)
    for index in range(len(events)):
        out.append(("rejected", reasons[index]) if index in reasons else ("ok", next(stored)))
    return out


class Capture:
    """A pipelined sink that keeps what the runner hands over: the events and their JSON."""

    max_in_flight = 2

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.encoded: list[bytes] = []

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        raise AssertionError("a pipelined sink gets submit()")

    def submit(self, events: list[dict[str, Any]], encoded: list[bytes]) -> Future[SinkResult]:
        self.events += copy.deepcopy(events)
        self.encoded += encoded
        done: Future[SinkResult] = Future()
        done.set_result(SinkResult(len(events)))
        return done


PEOPLE = (
    "id,email,plan,age,vip,score,signed_up,updated_at,note\n"
    "u1,a@x.io,pro,42,true,1.5,2024-01-05,1714564800,\"quoted, \"\"text\"\"\"\n"
    "u2,b@x.io,free,007,FALSE,-0.25,2024-01-05T10:00:00+02:00,0,émoji 🎉\n"
    "u3,,,,,,,2024-05-01T12:00:00Z,\n"
    "u4,c@x.io,,,,,,1714564800.5,tab\there\n"
    "u5,d@x.io,,,,,,0999-06-01T00:00:00Z,old\n"
    "u6,e@x.io,,,,,,99999999999,far\n"
    "u7,f@x.io,,,,,,2024-05-01,date only\n"
    "u8,g@x.io,,,,,, 1714564800 ,spaces\n"
    f"{'x' * 1025},h@x.io,,,,,,1714564800,long id\n"
    f"u10,{'y' * 33_000},,,,,,1714564800,too large for the collector\n"
    "\u00a0u11,i@x.io,,,,,,1714564801,nbsp id\n"
)


@pytest.mark.parametrize(("text", "options"), [
    (PEOPLE, {"timestamp_column": "updated_at"}),
    (PEOPLE, {"timestamp_column": "updated_at", "types": "text", "empty": "clear"}),
    (PEOPLE, {}),                                    # no timestamp: receivedAt is used
    ("user_id,event,timestamp,price\n"
     "u1,Clicked,1714564800,9.99\n"
     "u2,Bought,2024-05-01T12:00:00.250Z,\n"
     "u3,Viewed,1500000000.25,1\n"
     "u4,Left,0001-01-01T00:00:00Z,2\n", {"kind": "events"}),
])
def test_importer_events_are_stored_as_normalize_would(write, tmp_path, text, options):
    path = write(text)
    capture = Capture()
    run_import(path, ImportOptions(state_dir=tmp_path / "state", max_event_bytes=40_000,
                                   max_batch_bytes=100_000, **options), capture)
    assert capture.events and capture.encoded == [msgspec.json.encode(e)
                                                  for e in capture.events]
    expected = [reference(e) for e in capture.events]
    assert prepared(capture.events, capture.encoded) == expected
    assert prepared(capture.events, None) == expected
    assert {kind for kind, _ in expected} == {"ok", "rejected"} or "kind" in options


CANONICAL = "2024-05-01T12:00:00.000Z"
TIMESTAMPS = st.sampled_from([
    CANONICAL, "1999-12-31T23:59:59.000Z", "0999-01-01T00:00:00.000Z", "9999-12-31T23:59:59.000Z",
    "2024-05-01 12:00:00.000Z", "2024-W18-3T12:00:00.000Z", "2024-05-01T12:00:00.123Z",
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000+00:00", "2024-02-30T12:00:00.000Z",
    "2024-05-01T24:00:00.000Z", "２０２４-05-01T12:00:00.000Z", "2024-05-01T12:00:00.000z",
    "+024-05-01T12:00:00.000Z", "2024-05-01T12:00:60.000Z", 1714564800, None, "", "soon",
])
ABSENT = object()


def field(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just(ABSENT), values)


@st.composite
def importer_like(draw: st.DrawFn) -> dict[str, Any]:
    """An importer-shaped message, perturbed in every way normalize cares about."""
    kind = draw(st.sampled_from(["identify", "identify", "track", "track", "page", "bogus", 5]))
    payload_key = "traits" if draw(st.booleans()) == (kind == "identify") else "properties"
    items = {
        "type": kind,
        "messageId": draw(field(st.sampled_from(
            ["7f1e5a3c-0000-8000-8000-000000000002", "", "m" * 200, "m" * 201, 12, None]))),
        "userId": draw(field(st.sampled_from(["u1", "", "x" * 1024, "x" * 1025, 42, None,
                                              "Zoë 🎉", 'q"uote\\']))),
        "timestamp": draw(field(TIMESTAMPS)),
        payload_key: draw(field(st.sampled_from([
            {"plan": "pro", "n": 1, "_timestamp": 1714564800}, {}, [], "x",
            {"big": "z" * 33_000}, {"nested": {"a": [1, 2.5, None, True]}}]))),
        "context": draw(field(st.sampled_from([
            {"library": {"name": "millpond-import", "version": "1"},
             "import": {"file": "p.csv", "row": 2}},
            {}, {"traits": {"email": "a@x.io"}}, {"traits": {}}, "ctx"]))),
    }
    if kind != "identify" or draw(st.booleans()):
        items["event"] = draw(field(st.sampled_from(["Clicked", "", 7, None])))
    for extra in draw(st.lists(st.sampled_from(
            ["writeKey", "anonymousId", "sentAt", "receivedAt", "integrations",
             "originalTimestamp", "source_id", "whatever"]), max_size=2, unique=True)):
        items[extra] = draw(st.sampled_from(["2024-05-01T12:00:00.000Z", "a1", {}, None]))
    keys = draw(st.permutations([k for k, v in items.items() if v is not ABSENT]))
    return {key: items[key] for key in keys}


@settings(max_examples=600, deadline=None)
@given(st.lists(importer_like(), min_size=1, max_size=4))
def test_any_message_gets_exactly_what_normalize_gives(events):
    expected = [reference(e) for e in events]
    assert prepared(events, [msgspec.json.encode(e) for e in events]) == expected
    assert prepared(events, None) == expected


def test_the_fast_path_is_taken_for_importer_events():
    event = {"type": "identify", "messageId": "m1", "userId": "u1", "timestamp": CANONICAL,
             "traits": {"plan": "pro"}, "context": {"import": {"row": 2}}}
    with mock.patch.object(prepare, "normalize", side_effect=AssertionError("slow path")):
        [stored], rejected = prepare.prepare_batch([event], None, SOURCE, RECEIVED_MS)
    assert not rejected
    assert stored == reference(event)[1]


class ReferenceSink:
    """The collector's path: normalize each message, then append_sync the batch."""

    def __init__(self, log: SQLiteEventLog):
        self.log = log

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        valid, rejected = [], []
        for index, event in enumerate(events):
            try:
                valid.append(normalize(event, source_id=SOURCE, received_ms=RECEIVED_MS,
                                       received_at=format_ms(RECEIVED_MS)))
            except MessageRejected as exc:
                rejected.append((index, f"{exc.code}: {exc.reason}"))
        result = self.log.submit(valid).result()
        return SinkResult(result.stored, rejected, result.duplicates)


def stored_rows(path: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, source_id, type, event, user_id, anonymous_id,"
                            " message_id, ts, received, body FROM events ORDER BY seq").fetchall()


#: A picklable clock stopped at RECEIVED_MS, so the reader process sees it too.
STOPPED_CLOCK = partial(float, RECEIVED_MS / 1000)


# 1,200-event batches: the reader process prepares each in chunks (batching.CHUNK_EVENTS).
@pytest.mark.parametrize(("reader_process", "batch_size", "batches"),
                         [(True, 400, 7), (False, 400, 7), (True, 1200, 3)])
def test_the_log_holds_the_same_rows_as_through_normalize(write, tmp_path, reader_process,
                                                          batch_size, batches):
    rows = "".join(f"u{i},{i % 5},{1_700_000_000 + i * 37}\n" for i in range(2_500))
    path = write("id,plan,updated_at\n" + rows + ",orphan,1\nu1,again,1700000000\n")
    summaries = {}
    for name in ("fast", "reference"):
        log = SQLiteEventLog(tmp_path / f"{name}.db")
        sink = (LogSink(log, SOURCE, batch_size=batch_size, reader_process=reader_process,
                        clock=STOPPED_CLOCK) if name == "fast" else ReferenceSink(log))
        summaries[name] = run_import(path, ImportOptions(
            timestamp_column="updated_at", state_dir=tmp_path / name, batch_size=None
            if name == "fast" else batch_size), sink)
        log.close()
    assert stored_rows(tmp_path / "fast.db") == stored_rows(tmp_path / "reference.db")
    fast, ref = summaries["fast"], summaries["reference"]
    assert (fast.rows_read, fast.events_accepted, fast.rows_rejected, fast.batches) == (
        ref.rows_read, ref.events_accepted, ref.rows_rejected, ref.batches) == (
        2_502, 2_501, 1, batches)


def test_a_failed_commit_fails_the_batch_and_the_import_resumes(write, tmp_path):
    path = write("id,n\n" + "".join(f"u{i},{i}\n" for i in range(50)))
    log = SQLiteEventLog(tmp_path / "log.db")
    sink = LogSink(log, SOURCE, batch_size=10)
    real_submit, calls = log.submit, []

    def flaky(events):
        calls.append(len(events))
        future = real_submit(events)
        if len(calls) == 3:
            future.result()
            failed: Future = Future()
            failed.set_exception(OSError("disk I/O error"))
            return failed
        return future

    log.submit = flaky  # type: ignore[method-assign]
    options = ImportOptions(state_dir=tmp_path / "state")
    with pytest.raises(Exception, match="disk I/O error"):
        run_import(path, options, sink)
    log.submit = real_submit  # type: ignore[method-assign]
    summary = run_import(path, options, sink)
    assert summary.resumed_after_row == 21
    assert summary.events_accepted + summary.duplicates == summary.rows_read == 50
    log.close()
    assert len(stored_rows(tmp_path / "log.db")) == 50


@pytest.mark.parametrize("reader_process", [True, False])
def test_a_backend_without_dedupe_keys_imports_the_same_events(write, tmp_path,
                                                                reader_process):
    path = write("id,plan\n" + "".join(f"u{i},{i % 5}\n" for i in range(300)) + "u1,9\n")
    storage = open_storage(StorageConfig(backend="memory"))
    try:
        assert storage.log.dedupe_keyer() is None
        sink = LogSink(storage.log, SOURCE, batch_size=50, reader_process=reader_process,
                       clock=STOPPED_CLOCK)
        first = run_import(path, ImportOptions(state_dir=tmp_path / "state"), sink)
        again = run_import(path, ImportOptions(state_dir=tmp_path / "again"), sink)
        stored = asyncio.run(storage.log.read(0, 1000))
    finally:
        storage.close()
    assert (first.rows_read, first.events_accepted, again.duplicates) == (301, 301, 301)
    assert sorted(msgspec.json.decode(e.body)["userId"] for e in stored) == sorted(
        [f"u{i}" for i in range(300)] + ["u1"])
