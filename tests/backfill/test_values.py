"""Cell typing, timestamps, messageIds and delimiter sniffing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millpond.backfill.csvfile import sniff_delimiter
from millpond.backfill.ids import csv_row_ids, jsonl_line_ids
from millpond.backfill.values import (
    MAYBE_TYPED,
    infer_value,
    iso_from_epoch,
    make_converter,
    parse_timestamp,
    trait_timestamp,
)
from millpond.timeutil import MAX_SECONDS, format_seconds


@pytest.mark.parametrize(("cell", "expected"), [
    ("42", 42), ("-7", -7), ("0", 0), ("3.25", 3.25), ("-0.5", -0.5),
    ("true", True), ("FALSE", False), ("True", True),
    ("2024-01-05", "2024-01-05"),
    ("2024-01-05T10:00:00Z", "2024-01-05T10:00:00.000Z"),
    ("2024-01-05 10:00:00", "2024-01-05T10:00:00.000Z"),
    ("2024-01-05T12:00:00+02:00", "2024-01-05T10:00:00.000Z"),
])
def test_infer_types_what_it_safely_can(cell, expected):
    value = infer_value(cell)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("cell", [
    "00123",                    # zip code: the leading zero matters
    "9007199254740993",         # beyond 2**53: a JS consumer would round it
    "1e5", "NaN", "inf", "-inf",  # float() accepts these; a CSV author did not mean numbers
    "+33612345678", "1,5", "1.2.3", ".5", "5.",
    "yes", "no", "t", "2024-13-45", "2024-01-05x", "Paris", "-", "١٢٣",
])
def test_inference_leaves_ambiguous_cells_as_text(cell):
    assert infer_value(cell) == cell


@given(st.text(min_size=1).map(str.strip).filter(bool))
def test_cells_outside_maybe_typed_are_never_typed(cell):
    # The row loop skips the converter for cells not starting with MAYBE_TYPED.
    if cell[0] not in MAYBE_TYPED:
        assert infer_value(cell) == cell


def test_text_mode_and_memo():
    assert make_converter("text")("42") == "42"
    convert = make_converter("infer")
    for _ in range(3):
        assert convert("42") == 42
    for i in range(10_000):  # the memo is bounded and still right after clearing
        assert convert(str(i)) == i
    with pytest.raises(ValueError):
        make_converter("guess")


@pytest.mark.parametrize(("value", "expected"), [
    ("1714564800", 1714564800.0),
    (1714564800, 1714564800.0),
    ("1714564800.5", 1714564800.5),
    ("2024-05-01T12:00:00Z", 1714564800.0),
    ("2024-05-01T14:00:00+02:00", 1714564800.0),
    ("2024-05-01T12:00:00", 1714564800.0),   # naive = UTC
    ("2024-05-01", 1714521600.0),
])
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(("value", "reason"), [
    ("yesterday", "unparseable timestamp 'yesterday'"),
    ("05/01/2024", "unparseable"),
    ("", "empty"),
    ("1714564800000", "milliseconds"),
    ("1e300", "out of range"),
    (True, "not a time"),
])
def test_parse_timestamp_explains_refusals(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(value)


@given(st.integers(min_value=0, max_value=int(MAX_SECONDS)))
def test_fast_iso_formatting_matches_the_profile_store(seconds):
    assert iso_from_epoch(seconds) == format_seconds(seconds)
    assert iso_from_epoch(float(seconds)) == format_seconds(float(seconds))


@given(st.floats(min_value=-1e10, max_value=MAX_SECONDS, allow_nan=False))
def test_iso_formatting_of_any_instant_matches(seconds):
    assert iso_from_epoch(seconds) == format_seconds(seconds)


def test_trait_timestamp_is_whole_seconds_when_it_can_be():
    assert trait_timestamp(1714564800.0) == 1714564800
    assert type(trait_timestamp(1714564800.0)) is int
    assert trait_timestamp(1.5) == 1.5


def test_row_ids_are_deterministic_uuids_of_the_row_itself():
    header = ["id", "email", "plan"]
    ids = csv_row_ids("people", {"types": "infer"}, header)
    rows = [[str(i), f"u{i}@example.com", "pro"] for i in range(5000)]
    first = [ids(row) for row in rows]
    assert first == [csv_row_ids("people", {"types": "infer"}, header)(row) for row in rows]
    assert len(set(first)) == len(first)
    parsed = uuid.UUID(first[0])
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
    assert str(parsed) == first[0]
    # the row's content decides, not where it is: the same cells give the same id...
    assert ids(["7", "u7@example.com", "pro"]) == first[7]
    # ...and columns in another order too
    swapped = csv_row_ids("people", {"types": "infer"}, ["plan", "id", "email"])
    assert swapped(["pro", "7", "u7@example.com"]) == first[7]
    # a changed cell, or other event-shaping options, is another event
    assert ids(["7", "u7@example.com", "free"]) != first[7]
    assert csv_row_ids("people", {"types": "text"}, header)(rows[7]) != first[7]
    assert csv_row_ids("events", {"types": "infer"}, header)(rows[7]) != first[7]
    # cells are length-prefixed, so moving text across a boundary is another row
    assert ids(["7", "u7@example.comp", "ro"]) != first[7]


def test_row_ids_are_the_ids_earlier_versions_gave():
    # Stored events carry these ids and a re-import dedupes by them: a faster row_id must
    # give the very same strings (values from the version before the itemgetter one).
    header = ["id", "email", "plan"]
    assert (csv_row_ids("people", {"types": "infer"}, header)(["7", "u7@example.com", "pro"])
            == "4024209c-388d-8c3b-8590-72c1b48fad80")
    assert csv_row_ids("people", {"types": "infer"}, ["id"])(["7"]) == (
        "030e09cc-e390-8cb0-95f9-7132894d15d1")
    assert csv_row_ids("events", {}, ["b", "a", "a2"])(["é", "", "x"]) == (
        "f5cd0423-973b-82c8-8858-362945f6a86d")
    assert jsonl_line_ids("events", {"format": "jsonl"})(b'{"event": "A"}') == (
        "57d52e98-1226-872f-8c06-8cc1af1ce335")


def test_jsonl_line_ids_ignore_surrounding_space():
    ids = jsonl_line_ids("events", {"format": "jsonl"})
    assert ids(b'{"event": "A"}\n') == ids(b'  {"event": "A"}  ')
    assert ids(b'{"event": "A"}') != ids(b'{"event": "B"}')


@pytest.mark.parametrize(("sample", "delimiter"), [
    ("id,name,plan\n1,Ann,gold\n2,Bob,free\n", ","),
    ("id;name;plan\n1;Ann;gold\n2;Bob;free\n", ";"),
    ("id\tname\tplan\n1\tAnn\tgold\n2\tBob\tfree\n", "\t"),
    ("id|name|plan\n1|Ann|gold\n2|Bob|free\n", "|"),
    ('id;name;note\n1;"Smith, Ann";"a, b, c"\n2;Bob;x\n', ";"),
    ("email\na@example.com\nb@example.com\n", ","),   # one column: nothing to sniff
    ("id;name", ";"),                                  # header only
])
def test_sniff_delimiter(sample, delimiter):
    assert sniff_delimiter(sample) == delimiter
