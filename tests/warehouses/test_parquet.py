"""The parquet writer, in a local directory and in S3 (moto server): every event exactly once."""

from __future__ import annotations

import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from millpond.destinations.errors import SettingsError
from millpond.warehouses.batch import Loaded, Reject, Retry, from_log_rows
from millpond.warehouses.parquet import ParquetWriter, parse_settings, read_table
from millpond.warehouses.parquet.manifest import read_manifests
from millpond.warehouses.parquet.stores import StoreError
from tests.support.postgres import free_port
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.warehouses.events import every_type


class CrashBeforeManifest:
    """A store that dies (like the process would) when the manifest is about to be written."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key.startswith("_manifests/"):
            raise KeyboardInterrupt("simulated crash before the manifest")
        return self.inner.put_if_absent(key, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def seqs_of(table: pa.Table) -> Counter:
    return Counter(table["seq"].to_pylist())


def test_every_event_exactly_once_partitioned_by_arrival(location):
    events = every_type(10_000)
    writer = ParquetWriter(parse_settings(location))
    for start in range(0, len(events), 3_000):
        result = writer.load(events[start:start + 3_000])
        assert isinstance(result, Loaded) and result.clean
        assert result.files[-1].startswith("_manifests/")
    table = read_table(writer.store)
    assert seqs_of(table) == Counter(e.seq for e in events)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    # Partitions by arrival (receivedAt), file names from the seq range they hold.
    keys = [entry.key for _, m in read_manifests(writer.store) for entry in m.files]
    assert "source=src_web/date=2026-11-20/hour=09/1-1800.parquet" in keys
    assert any(k.startswith("source=src_web/date=2026-11-20/hour=10/") for k in keys)
    data = writer.store.get(keys[0])
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    column = meta.schema.names.index("timestamp")
    stats = meta.row_group(0).column(column).statistics
    assert stats.has_min_max and stats.min <= stats.max
    assert meta.row_group(0).column(column).compression == "ZSTD"
    hours = pq.read_table(pa.BufferReader(data))["received_at"].to_pylist()
    assert {h.hour for h in hours} == {9}
    # The raw JSON body keeps everything.
    row = table.filter(pa.compute.equal(table["seq"], 1)).to_pylist()[0]
    assert '"campaign":{"source":"news","tags":["a","b"]}' in row["body"].replace(" ", "")
    assert row["message_id"] == events[0].event["messageId"]


def test_a_crash_before_the_manifest_then_a_reupload_duplicates_nothing(location):
    events = every_type(2_000)
    settings = parse_settings(location)
    first = ParquetWriter(settings)
    assert isinstance(first.load(events[:1_000]), Loaded)
    crashing = ParquetWriter(settings, store=CrashBeforeManifest(first.store))
    with pytest.raises(KeyboardInterrupt):
        crashing.load(events[1_000:])
    orphans = set(first.store.list("source="))
    # Readers of the manifests see only the committed batch, never the orphan files.
    assert seqs_of(read_table(first.store)) == Counter(e.seq for e in events[:1_000])
    # The process restarts: a new writer re-sends the same batch.
    restarted = ParquetWriter(settings)
    result = restarted.load(events[1_000:])
    assert isinstance(result, Loaded) and result.already_loaded == 0
    assert seqs_of(read_table(restarted.store)) == Counter(e.seq for e in events)
    assert set(restarted.store.list("source=")) == orphans  # orphans reused, none overwritten
    # Sending everything again, cut differently, adds nothing.
    again = ParquetWriter(settings)
    for part in (events[:700], events[500:1_700], events[1_600:]):
        outcome = again.load(part)
        assert isinstance(outcome, Loaded) and outcome.already_loaded == len(part)
        assert outcome.files == ()
    assert seqs_of(read_table(again.store)) == Counter(e.seq for e in events)


def test_a_reupload_cut_differently_after_a_crash_keeps_every_event_once(location):
    events = every_type(900)
    settings = parse_settings(location)
    writer = ParquetWriter(settings)
    crashing = ParquetWriter(settings, store=CrashBeforeManifest(writer.store))
    with pytest.raises(KeyboardInterrupt):
        crashing.load(events[:600])
    # The retry is a different cut (first 300 only), then the rest.
    fresh = ParquetWriter(settings)
    for part in (events[:300], events[300:]):
        assert isinstance(fresh.load(part), Loaded)
    assert seqs_of(read_table(fresh.store)) == Counter(e.seq for e in events)
    # Shuffled redelivery of old events (e.g. a dead-letter redrive) adds nothing either.
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    assert fresh.load(shuffled[:200]).already_loaded == 200
    assert seqs_of(read_table(fresh.store)) == Counter(e.seq for e in events)


def test_put_if_absent_never_overwrites(location):
    store = ParquetWriter(parse_settings(location)).store
    assert store.put_if_absent("a/b.bin", b"one") is True
    assert store.put_if_absent("a/b.bin", b"two") is False
    assert store.get("a/b.bin") == b"one"
    assert store.get("a/missing.bin") is None
    assert store.list("a/") == ["a/b.bin"]


def test_raw_log_rows_are_kept_verbatim(tmp_path):
    rows = [(7, b'{"type":"track","event":"X","messageId":"m7","source_id":"s",'
                b'"receivedAt":"2026-11-20T10:00:00.000Z","timestamp":"2026-11-20T10:00:00Z",'
                b'"properties":{"b":1,  "a":2}}')]
    writer = ParquetWriter(parse_settings({"path": str(tmp_path)}))
    assert isinstance(writer.load(from_log_rows(rows)), Loaded)
    table = read_table(writer.store)
    assert table["body"].to_pylist() == [rows[0][1].decode()]
    assert table["event"].to_pylist() == ["X"] and table["source_id"].to_pylist() == ["s"]


def test_storage_errors_are_classified(moto_s3, tmp_path):
    gone = parse_settings({"path": "s3://no-such-bucket-here/x", "endpoint_url": moto_s3.endpoint,
                           "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                           "region": REGION})
    outcome = ParquetWriter(gone).load(every_type(5))
    assert isinstance(outcome, Reject) and "NoSuchBucket" in outcome.reason
    down = parse_settings({"path": "s3://b/x", "endpoint_url": f"http://127.0.0.1:{free_port()}",
                           "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                           "region": REGION})
    outcome = ParquetWriter(down).load(every_type(5))
    assert isinstance(outcome, Retry)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    outcome = ParquetWriter(parse_settings({"path": str(blocked)})).load(every_type(5))
    assert isinstance(outcome, Reject | Retry) and str(blocked) in outcome.reason
    assert isinstance(StoreError("x", transient=True), Exception)


def test_settings_validation():
    for raw, field in [({"path": "relative/dir"}, "path"),
                       ({"path": "s3://"}, "path"),
                       ({"path": "/tmp/x", "endpoint_url": "http://e"}, "endpoint_url"),
                       ({"path": "s3://b", "access_key_id": "a"}, "secret_access_key"),
                       ({"path": "s3://b", "endpoint_url": "ftp://e"}, "endpoint_url"),
                       ({"path": "/tmp/x", "batch_interval_seconds": 2}, "batch_interval_seconds")]:
        with pytest.raises(SettingsError) as info:
            parse_settings(raw)
        assert info.value.field == field, raw


def test_check_explains_bad_locations(moto_s3, tmp_path):
    from millpond.warehouses.parquet import check

    good = moto_s3.new_bucket()
    s3 = {"endpoint_url": moto_s3.endpoint, "access_key_id": ACCESS_KEY,
          "secret_access_key": SECRET_KEY, "region": REGION}
    check(parse_settings({"path": f"s3://{good}/x", **s3}))
    check(parse_settings({"path": str(tmp_path / "new" / "lake")}))
    with pytest.raises(SettingsError) as info:
        check(parse_settings({"path": "s3://no-such-bucket-at-all/x", **s3}))
    assert "NoSuchBucket" in info.value.message and info.value.field == "path"
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(SettingsError) as info:
        check(parse_settings({"path": str(blocked / "lake")}))
    assert str(blocked) in info.value.message
