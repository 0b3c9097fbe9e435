"""Cutting a group's events column by column gives exactly what flattening them one by one
gives: the same rows, users / accounts updates and discards (with their reasons)."""

from __future__ import annotations

import random

import pytest

from millpond.warehouses.batch import StoredEvent
from millpond.warehouses.columns import CHUNK, Columns, cut_columns, from_rows, group_columns
from millpond.warehouses.flatten import flatten_batch, partition_events
from millpond.warehouses.types import infer, infer_column, widen

KEYS = ["a", "a_b", "b", "B", "userId", "context_x", "$$", "_timestamp", "id", "name",
        "fooBar", "foo_bar", "c", "d"]
LEAVES = [None, 1, 2.5, "x", "2024-01-01T00:00:00Z", True, [1], "", 2**70]
TYPES = ["track", "identify", "page", "screen", "group", "alias"]


def shape(rnd: random.Random, depth: int = 0) -> dict:
    """Keys to nested shapes, ``"leaf"`` (any value) or ``"null"`` (always null)."""
    return {rnd.choice(KEYS): shape(rnd, depth + 1) if depth < 2 and rnd.random() < 0.3
            else rnd.choice(["leaf", "leaf", "null"]) for _ in range(rnd.randrange(5))}


def fill(rnd: random.Random, template: dict, odd: float) -> dict:
    """An object of ``template``'s shape; with probability ``odd`` a value of another shape."""
    out: dict = {}
    for key, sub in template.items():
        if rnd.random() < odd:
            out[key] = rnd.choice([*LEAVES, {}, {"z": 1}])
        else:
            out[key] = rnd.choice(LEAVES) if sub == "leaf" else None if sub == "null" \
                else fill(rnd, sub, odd)
    if rnd.random() < odd:
        out[rnd.choice(KEYS)] = 1
    return out


def event(rnd: random.Random, seq: int, kind: str, shapes: dict, odd: float) -> StoredEvent:
    usual = rnd.random() > odd
    body = {
        "type": kind,
        "messageId": f"m{seq}" if usual else rnd.choice([None, 5, "", f"m{seq % 3}"]),
        "userId": rnd.choice(["u1", "u2", None, "", 3]),
        "anonymousId": rnd.choice(["a", None]), "timestamp": "2024-01-01T00:00:00Z",
        "receivedAt": rnd.choice(["2024-01-01T00:00:01Z", "", None]),
        "received_at": "2023-01-01T00:00:00Z",
        "event": rnd.choice(["A", "a"]) if usual else rnd.choice(["", None, "Identifies"]),
        "groupId": rnd.choice(["g1", "g2"]) if rnd.random() > odd else rnd.choice(["", None, 7]),
        "previousId": "p", "name": rnd.choice(["n", None]),
    }
    for part, template in shapes.items():
        if template is not None:
            body[part] = fill(rnd, template, odd)
    return StoredEvent(seq, rnd.choice(["web", "app"]), body)


def as_lists(cols: Columns) -> tuple:
    return cols.seqs, cols.message_ids, {c: list(v) for c, v in cols.values.items()}


def update(u) -> tuple:
    return u.table, u.key, u.seq, u.message_id, u.time, u.received_at, u.values


@pytest.mark.parametrize("seed", range(4))
def test_cut_columns_equal_flattened_rows(seed):
    rnd = random.Random(seed)
    cut = 0
    for _ in range(40):
        kind = rnd.choice(TYPES)
        shapes = {p: shape(rnd) if rnd.random() < 0.8 else None
                  for p in ("context", "properties", "traits")}
        odd = rnd.choice([0, 0, 0.002, 0.2])  # one shape; a rare odd event; many shapes
        events = [event(rnd, seq, kind, shapes, odd) for seq in range(rnd.randrange(1, 1300))]
        groups, _ = partition_events(events)
        for logical, group in groups.items():
            flat = flatten_batch(group)
            rows: dict = {}
            for row in flat.rows:
                rows.setdefault(row.table, []).append(row)
            tables, updates, discards = group_columns(group, logical)
            assert {t: as_lists(c) for t, c in tables.items()} == \
                {t: as_lists(from_rows(r)) for t, r in rows.items()}
            assert list(map(update, updates)) == list(map(update, flat.traits))
            assert discards == flat.discards
            cut += logical != "tracks" and cut_columns(group[:CHUNK], logical) is not None
    assert cut >= 5, cut  # the column path itself was exercised, not only the fallback


def test_column_inference_is_widened_value_inference():
    rnd = random.Random(7)
    pool = [None, True, 0, -(1 << 63), 1 << 63, 2.5, "x", "", "2024-05-01T12:00:00Z",
            "2024-05-01 12:00:00.123+02:00", "2024-05-01", "2024-13-01T00:00:00Z", [1], {}]
    for _ in range(3000):
        values = [rnd.choice(pool) for _ in range(rnd.randrange(1, 6))]
        if rnd.random() < 0.5:  # homogeneous columns take the fast paths
            kind = type(rnd.choice(values))
            values = [v for v in values if type(v) is kind or v is None] or [None]
        want = None
        for value in values:
            if value is not None:
                want = infer(value) if want is None else widen(want, infer(value))
        assert infer_column(values) == want, values
