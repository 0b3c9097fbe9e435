"""HttpSink against a real loopback HTTP server implementing the ``/v1/import`` contract."""

from __future__ import annotations

import socket
import time

import pytest

from millpond.backfill import HttpSink, ImportAborted, SinkError
from millpond.backfill.sinks import parse_retry_after
from tests.backfill.fakes import WRITE_KEY, read_report

ROWS = 250


@pytest.fixture
def people(write):
    return write("id,n,plan\n" + "".join(f"u{i},{i},{'gold' if i % 2 else 'free'}\n"
                                         for i in range(ROWS)))


def test_import_over_http_with_throttling_and_rerun_without_duplicates(people, run, collector):
    collector.throttle_next = [(503, "1")]
    with HttpSink(collector.url, WRITE_KEY) as sink:
        started = time.monotonic()
        summary = run(people, sink, batch_size=100)
        waited = time.monotonic() - started
        assert sink.retries == 1
    assert waited >= 1.0                                  # Retry-After was honoured
    assert [r["events"] for r in collector.requests] == [100, 100, 100, 50]  # first one retried
    assert all(r["gzip"] and r["content_type"] == "application/json" for r in collector.requests)
    assert summary.events_accepted == ROWS and summary.duplicates == 0
    assert len(collector.stored) == ROWS
    first_ids = collector.stored_ids()
    stored = collector.stored[next(iter(collector.stored))]
    assert stored["type"] == "identify" and stored["traits"]["plan"] in ("gold", "free")

    # The same file again, from scratch: same messageIds, the server stores nothing new.
    with HttpSink(collector.url, WRITE_KEY) as sink:
        again = run(people, sink, batch_size=100, resume=False)
    assert (again.events_accepted, again.duplicates) == (0, ROWS)
    assert collector.stored_ids() == first_ids


def test_429_with_http_date_retry_after(people, run, collector):
    collector.throttle_next = [(429, "Wed, 21 Oct 2015 07:28:00 GMT"), (429, "0")]
    sleeps: list[float] = []
    with HttpSink(collector.url, WRITE_KEY, sleep=sleeps.append) as sink:
        summary = run(people, sink, batch_size=1000)
    assert sleeps == [0.0, 0.0]          # a date in the past means "now"
    assert summary.events_accepted == ROWS


def test_server_rejections_go_to_the_error_report(write, run, collector):
    path = write("id,server_rejects\nu1,false\nu2,true\nu3,false\n")
    with HttpSink(collector.url, WRITE_KEY) as sink:
        summary = run(path, sink)
    assert summary.events_accepted == 2
    [row] = read_report(summary.error_report)
    assert (row["row"], row["code"], row["reason"]) == (
        "3", "invalid_field", "the server says no (field traits)")


def test_client_error_raises_with_the_server_message(people, run, collector):
    collector.fail_status = 400
    with HttpSink(collector.url, WRITE_KEY) as sink, pytest.raises(
            ImportAborted, match="refused the batch: the batch is wrong"):
        run(people, sink)
    assert len(collector.requests) == 1   # a 4xx is not retried


def test_wrong_write_key(people, run, collector):
    with HttpSink(collector.url, "nope") as sink, pytest.raises(
            ImportAborted, match="unknown write key"):
        run(people, sink)


def test_persistent_5xx_gives_up_after_bounded_retries(collector):
    collector.throttle_next = [(503, "")] * 10
    sleeps: list[float] = []
    sink = HttpSink(collector.url, WRITE_KEY, max_attempts=4, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(SinkError, match=r"failed after 4 attempts \(HTTP 503: slow down\)"):
        sink.send([{"type": "identify", "userId": "u1", "messageId": "m1"}])
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0
    sink.close()


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    sink = HttpSink(f"http://127.0.0.1:{port}", WRITE_KEY, max_attempts=3, sleep=sleeps.append)
    with pytest.raises(SinkError, match="failed after 3 attempts.*ConnectError"):
        sink.send([{"type": "identify", "userId": "u1", "messageId": "m1"}])
    assert len(sleeps) == 2
    sink.close()


def test_413_splits_the_batch(people, run, collector):
    collector.max_batch_events = 40
    with HttpSink(collector.url, WRITE_KEY) as sink:
        summary = run(people, sink, batch_size=100)
    assert summary.events_accepted == ROWS and summary.rows_rejected == 0
    assert len(collector.stored) == ROWS
    assert max(r["events"] for r in collector.requests if r["events"] <= 40) <= 40


@pytest.mark.parametrize(("header", "expected"), [
    ("3", 3.0), (" 10 ", 10.0), (None, None), ("", None), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header) == expected


def test_parse_retry_after_future_date():
    assert parse_retry_after("Thu, 01 Jan 2099 00:00:10 GMT", now=4070908800.0) == 10.0
