"""Cell typing, timestamps, messageIds and delimiter sniffing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millpond.backfill.csvfile import sniff_delimiter
from millpond.backfill.ids import import_fingerprint, message_id_factory
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


def test_message_ids_are_deterministic_unique_uuids():
    fp = import_fingerprint("c" * 64, "people", {"types": "infer"})
    first, again = message_id_factory(fp), message_id_factory(fp)
    ids = [first(row) for row in range(2, 5000)]
    assert ids == [again(row) for row in range(2, 5000)]
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
    assert str(parsed) == ids[0]
    other = message_id_factory(import_fingerprint("c" * 64, "people", {"types": "text"}))
    assert other(2) != first(2)
    assert message_id_factory(import_fingerprint("d" * 64, "people", {"types": "infer"}))(2) \
        != first(2)


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
