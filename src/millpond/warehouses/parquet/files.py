"""Stored events -> Arrow tables -> Parquet bytes, one file per partition of a batch.

Schema: the standard Segment fields as typed columns, for pruning and quick queries, plus
``body``, the event's stored JSON verbatim, so nothing is lost whatever the event holds (a
reader can flatten properties however it likes, e.g. DuckDB's ``json_extract``):

``seq`` int64, ``source_id``, ``message_id``, ``type``, ``event`` (a track's event, a page's or
screen's name), ``user_id``, ``anonymous_id``, ``group_id`` strings, ``timestamp``,
``received_at``, ``sent_at``, ``original_timestamp`` as ``timestamp[us, UTC]``, ``body`` string.

Partitions (Hive style, by *arrival*, so a file never changes partition when late events come):
``source=<id>/date=YYYY-MM-DD/hour=HH/``, from ``receivedAt`` in UTC. An event without a usable
arrival time goes to Hive's null partition ``__HIVE_DEFAULT_PARTITION__``.

Files: zstd, rows sorted by ``(timestamp, seq)`` so each row group's min/max statistics on
``timestamp`` are tight (pyarrow writes statistics for every column), named
``<first_seq>-<last_seq>.parquet`` from the seqs they hold.

Timestamps are parsed by Arrow's ISO 8601 cast (fast, vectorised); only a column holding a
value Arrow rejects is parsed value by value with :func:`millpond.warehouses.types.
parse_timestamp` (no offset = UTC), and an unparseable value becomes null (``body`` keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from millpond.warehouses.batch import StoredEvent
from millpond.warehouses.types import parse_timestamp

__all__ = ["SCHEMA", "NULL_PARTITION", "Partition", "partition_batch", "to_parquet"]

TS = pa.timestamp("us", tz="UTC")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("source_id", pa.string()),
    pa.field("message_id", pa.string()),
    pa.field("type", pa.string()),
    pa.field("event", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("anonymous_id", pa.string()),
    pa.field("group_id", pa.string()),
    pa.field("timestamp", TS),
    pa.field("received_at", TS),
    pa.field("sent_at", TS),
    pa.field("original_timestamp", TS),
    pa.field("body", pa.string()),
])
_TEXT = ("messageId", "type", "userId", "anonymousId", "groupId")
_TIMES = (("timestamp", "timestamp"), ("receivedAt", "received_at"), ("sentAt", "sent_at"),
          ("originalTimestamp", "original_timestamp"))
_encode = msgspec.json.Encoder().encode


class Partition(msgspec.Struct):
    """The rows of one partition of a batch, as an Arrow table sorted for writing."""

    source_id: str
    date: str
    hour: str
    table: pa.Table

    @property
    def directory(self) -> str:
        return f"source={_escape(self.source_id)}/date={self.date}/hour={self.hour}"


def _escape(value: str) -> str:
    """Hive partition values must not hold ``/``, ``=`` or control characters."""
    out = []
    for ch in value:
        if ch.isalnum() or ch in "-_.":
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out) or NULL_PARTITION


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _timestamps(values: list[Any]) -> pa.Array:
    strings = [v if isinstance(v, str) else None for v in values]
    try:
        return pa.array(strings, pa.string()).cast(TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([parse_timestamp(v) if v is not None else None for v in strings], TS)


def _table(events: Sequence[StoredEvent]) -> pa.Table:
    bodies = []
    columns: dict[str, list[Any]] = {k: [] for k in _TEXT}
    names: list[Any] = []
    times: dict[str, list[Any]] = {k: [] for k, _ in _TIMES}
    for stored in events:
        e = stored.event
        get = e.get
        for key, col in columns.items():
            col.append(get(key))
        names.append(get("event") if get("type") == "track" else get("name"))
        for key, col in times.items():
            col.append(get(key))
        bodies.append(stored.raw if stored.raw is not None else _encode(e))
    received = times["receivedAt"]
    for i, stored in enumerate(events):
        if received[i] is None:
            received[i] = stored.event.get("received_at")
    arrays = {
        "seq": pa.array([e.seq for e in events], pa.int64()),
        "source_id": pa.array([e.source_id for e in events], pa.string()),
        "message_id": pa.array([_text(v) for v in columns["messageId"]], pa.string()),
        "type": pa.array([_text(v) for v in columns["type"]], pa.string()),
        "event": pa.array([_text(v) for v in names], pa.string()),
        "user_id": pa.array([_text(v) for v in columns["userId"]], pa.string()),
        "anonymous_id": pa.array([_text(v) for v in columns["anonymousId"]], pa.string()),
        "group_id": pa.array([_text(v) for v in columns["groupId"]], pa.string()),
    }
    for key, name in _TIMES:
        arrays[name] = _timestamps(times[key])
    arrays["body"] = pa.array(bodies, pa.binary()).cast(pa.string())
    return pa.Table.from_pydict(arrays, schema=SCHEMA)


def partition_batch(events: Sequence[StoredEvent]) -> list[Partition]:
    """Split a batch by (source, arrival date, arrival hour); rows sorted by (timestamp, seq)."""
    if not events:
        return []
    table = _table(events)
    strftime = pc.strftime  # pyright: ignore[reportAttributeAccessIssue] - generated at import
    labels = strftime(table["received_at"], format="%Y-%m-%d/%H").to_pylist()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (source, label) in enumerate(zip(table["source_id"].to_pylist(), labels,
                                            strict=True)):
        groups.setdefault((source, label or ""), []).append(i)
    out = []
    for (source, label), indexes in sorted(groups.items()):
        part = table.take(pa.array(indexes, pa.int64())) if len(groups) > 1 else table
        part = part.sort_by([("timestamp", "ascending"), ("seq", "ascending")])
        date, _, hour = label.partition("/")
        out.append(Partition(source, date or NULL_PARTITION, hour or NULL_PARTITION, part))
    return out


def to_parquet(table: pa.Table, *, row_group_size: int, compression_level: int | None) -> bytes:
    """The Parquet bytes of ``table``: zstd, statistics on, ``row_group_size`` rows per group."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=compression_level,
                   row_group_size=row_group_size, write_statistics=True)
    return sink.getvalue().to_pybytes()
