"""Segment's naming, flattening and typing rules, without a database."""

from __future__ import annotations

import itertools
import random

import pytest

from millpond.warehouses.batch import StoredEvent
from millpond.warehouses.flatten import flatten_batch
from millpond.warehouses.naming import event_table_name, fit_identifier, snakecase
from millpond.warehouses.schema import FIXED_TABLES
from millpond.warehouses.types import (
    ColumnType,
    Misfit,
    coerce,
    coerce_column,
    infer,
    widen,
)

T = ColumnType

# segmentio/go-snakecase snake_test.go, the reference Segment's warehouses cite.
GO_SNAKECASE_SAMPLES = [
    ("sample text", "sample_text"), ("sample-text", "sample_text"),
    ("sample_text", "sample_text"), ("sample___text", "sample_text"),
    ("sampleText", "sample_text"),
    ("inviteYourCustomersAddInvites", "invite_your_customers_add_invites"),
    ("sample 2 Text", "sample_2_text"), ("   sample   2    Text   ", "sample_2_text"),
    ("   $#$sample   2    Text   ", "sample_2_text"), ("SAMPLE 2 TEXT", "sample_2_text"),
    ("___$$Base64Encode", "base64_encode"), ("FOO:BAR$BAZ", "foo_bar_baz"),
    ("FOO#BAR#BAZ", "foo_bar_baz"), ("something.com", "something_com"),
    ("$something%", "something"), ("•¶§ƒ˚foo˙∆˚¬", "foo"),
]


@pytest.mark.parametrize(("name", "snake"), GO_SNAKECASE_SAMPLES)
def test_snakecase_matches_go_snakecase(name, snake):
    assert snakecase(name) == snake


def test_event_table_names():
    assert event_table_name("Order Completed", FIXED_TABLES) == "order_completed"
    assert event_table_name("Identifies", FIXED_TABLES) == "event_identifies"
    assert event_table_name("millpond discards", FIXED_TABLES) == "event_millpond_discards"
    odd = event_table_name("日本語", FIXED_TABLES)
    assert odd.startswith("event_") and odd == event_table_name("日本語", FIXED_TABLES)
    assert odd != event_table_name("中文", FIXED_TABLES)
    long = "x" * 80
    assert len(fit_identifier(long)) == 63
    assert fit_identifier(long) != fit_identifier("x" * 81)


def test_inference_and_widening():
    assert infer(True) is T.BOOLEAN
    assert infer(3) is T.BIGINT and infer(2**70) is T.TEXT
    assert infer(2.5) is T.DOUBLE
    assert infer("2024-05-01T12:00:00Z") is T.TIMESTAMP
    assert infer("2024-05-01 12:00:00.123+02:00") is T.TIMESTAMP
    assert infer("2024-05-01") is T.TEXT            # a date is not an instant
    assert infer("2024-W01-1T12:00") is T.TEXT      # fromisoformat takes it; we do not
    assert infer("12") is T.TEXT and infer([1]) is T.TEXT
    assert widen(T.BIGINT, T.DOUBLE) is T.DOUBLE
    assert widen(T.TIMESTAMP, T.TEXT) is T.TEXT
    assert widen(T.BOOLEAN, T.BIGINT) is T.TEXT
    # A join: the result does not depend on order.
    kinds = list(T)
    for a, b, c in itertools.product(kinds, repeat=3):
        assert widen(widen(a, b), c) is widen(a, widen(b, c))
        assert widen(a, b) is widen(b, a)


def test_fitting_values_to_columns():
    assert coerce(3.0, T.BIGINT) == 3
    assert coerce(3, T.DOUBLE) == 3.0
    assert coerce(True, T.TEXT) == "true" and coerce([1, "a"], T.TEXT) == '[1,"a"]'
    assert coerce("2024-05-01T12:00:00", T.TIMESTAMP).tzinfo is not None  # no offset: UTC
    for value, ctype in [(3.5, T.BIGINT), ("3", T.BIGINT), (2**64, T.BIGINT),
                         ("true", T.BOOLEAN), (1, T.BOOLEAN), (True, T.DOUBLE),
                         ("yesterday", T.TIMESTAMP), (5, T.TIMESTAMP), ("a\x00b", T.TEXT)]:
        with pytest.raises(Misfit):
            coerce(value, ctype)


def test_column_coercion_agrees_with_value_coercion():
    rnd = random.Random(5)
    pool = [None, 1, -2, 2**63, 2.5, 3.0, True, False, "x", "", "é", "a\x00", "\ud800",
            "2024-05-01T12:00:00Z", "2024-05-01", [1], {"a": 1}]
    # Date-time strings only (a column of them takes a C-level path): with and without an
    # offset, date-only, basic format, out of range.
    times = ["2024-05-01T12:00:00Z", "2024-05-01 12:00:00.5+02:00", "2024-05-01T12:00:00",
             "20240501T120000Z", "2024-05-01T12", "2024-13-01T12:00:00Z", "2024-05-01"]
    for ctype in T:
        for n in range(400):
            source = times if n % 2 and ctype is T.TIMESTAMP else pool
            values = [rnd.choice(source) for _ in range(rnd.randint(1, 6))]
            got, misfits = coerce_column(values, ctype)
            bad = {i for i, _, _ in misfits}
            for i, value in enumerate(values):
                if value is None:
                    assert got[i] is None
                    continue
                try:
                    want = coerce(value, ctype)
                except Misfit:
                    assert i in bad and got[i] is None
                else:
                    assert i not in bad and got[i] == want


def test_flattening_follows_segment():
    event = {
        "type": "identify", "messageId": "m1", "userId": 42, "timestamp": "2024-01-01T00:00:00Z",
        "context": {"app": {"version": "1.0.0"}, "traits": {"email": "a@b"}, "list": [1, 2]},
        "traits": {"firstName": "Ann", "address": {"street": "6th", "geo": {"lat": 1.5}},
                   "tags": ["a"], "empty": {}, "gone": None, "_timestamp": 1700000000,
                   "userId": "spoof"},
    }
    flat = flatten_batch([StoredEvent(3, "src", event)])
    row = flat.rows[0]
    assert row.table == "identifies"
    assert row.values["user_id"] == 42
    assert row.values["context_app_version"] == "1.0.0"
    assert row.values["context_traits_email"] == "a@b"
    assert row.values["context_list"] == [1, 2]
    assert row.values["first_name"] == "Ann"
    assert row.values["address_street"] == "6th" and row.values["address_geo_lat"] == 1.5
    assert row.values["tags"] == ["a"]
    assert "empty" not in row.values and "gone" not in row.values
    assert "_timestamp" not in row.values and "timestamp" in row.values
    assert [(d.column, d.table) for d in flat.discards] == [("user_id", "identifies")]
    update = flat.traits[0]
    assert update.table == "users" and update.key == "42" and update.time == 1700000000.0
    assert update.values["gone"] is None  # a null clears the trait in users


def test_duplicate_message_ids_in_a_batch_keep_the_lowest_seq():
    a = StoredEvent(9, "web", {"type": "page", "messageId": "same"})
    b = StoredEvent(4, "app", {"type": "page", "messageId": "same"})
    flat = flatten_batch([a, b])
    assert [r.seq for r in flat.rows] == [4]
    assert flat.discards[0].seq == 9 and "seq 4 (source app)" in flat.discards[0].reason


def test_a_message_id_is_unique_per_table_not_per_batch():
    page = StoredEvent(1, "web", {"type": "page", "messageId": "same"})
    track = StoredEvent(2, "app", {"type": "track", "event": "A", "messageId": "same"})
    other = StoredEvent(3, "app", {"type": "track", "event": "B", "messageId": "same"})
    flat = flatten_batch([page, track, other])
    assert [(r.table, r.seq) for r in flat.rows] == [("pages", 1), ("tracks", 2), ("a", 2)]
    assert [(d.seq, d.table) for d in flat.discards] == [(3, "tracks")]  # both would be tracks
