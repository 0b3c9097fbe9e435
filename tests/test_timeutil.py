"""Time primitives: the wire form, instants as seconds, window bounds and durations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millpond.errors import BadRequest
from millpond.timeutil import (
    MAX_MS,
    MAX_SECONDS,
    MIN_MS,
    MIN_SECONDS,
    BadTimestamp,
    datetime_to_seconds,
    format_ms,
    format_seconds,
    human_duration,
    iso_to_seconds,
    parse_duration,
    parse_iso_ms,
    parse_seconds,
    parse_time_bound,
    unix_seconds_to_ms,
)

MAY_1_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
MAY_1 = MAY_1_MS / 1000

#: Every instant ``datetime`` holds but the first second (``MIN_MS`` is out of range).
instants = st.datetimes(min_value=datetime(1, 1, 1, 0, 0, 1), max_value=datetime(9999, 12, 31),
                        timezones=st.just(UTC))


# -- milliseconds: the collector's wire form ---------------------------------------------
@pytest.mark.parametrize("text", [
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00.0009Z",
    "2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00", "2024-05-01 12:00:00+00:00",
])
def test_parse_iso_ms_reads_every_form_of_one_instant(text: str) -> None:
    assert parse_iso_ms(text) == MAY_1_MS


def test_parse_iso_ms_keeps_milliseconds() -> None:
    assert parse_iso_ms("2024-05-01T12:00:00.250Z") == MAY_1_MS + 250
    assert parse_iso_ms("1969-12-31T23:59:59.000Z") == -1000


@pytest.mark.parametrize(("value", "message"), [
    (1714564800, "must be an ISO 8601 string, got int"),
    (None, "got NoneType"),
    ("yesterday", "is not an ISO 8601 time, e.g. '2024-05-01T12:00:00.000Z'"),
    ("2024-13-01T00:00:00Z", "is not an ISO 8601 time"),
    ("0001-01-01T00:00:00Z", "out of range"),
])
def test_parse_iso_ms_refuses_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(BadTimestamp, match=message):
        parse_iso_ms(value)
    assert issubclass(BadTimestamp, ValueError)


def test_format_ms_is_the_wire_form() -> None:
    assert format_ms(MAY_1_MS) == "2024-05-01T12:00:00.000Z"
    assert format_ms(MAY_1_MS + 7) == "2024-05-01T12:00:00.007Z"
    assert format_ms(MAY_1_MS + 1999) == "2024-05-01T12:00:01.999Z"  # the cache moves on
    assert format_ms(MAY_1_MS + 999) == "2024-05-01T12:00:00.999Z"  # and back
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"
    assert format_ms(MAX_MS - 1) == "9999-12-31T23:59:59.999Z"
    assert format_ms(parse_iso_ms("0900-01-02T03:04:05.123Z")) == "0900-01-02T03:04:05.123Z"


@given(st.integers(min_value=MIN_MS + 1, max_value=MAX_MS - 1))
def test_format_ms_writes_what_datetime_does(ms: int) -> None:
    """Its date comes from a cache of days and its time from arithmetic: any instant,
    before 1970 and before year 1000 too, reads as ``datetime`` writes it."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert format_ms(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(instants)
def test_whole_seconds_round_trip_through_the_wire_form(moment: datetime) -> None:
    """What the importer's fast path relies on (``backfill/prepare._canonical_time``)."""
    ms = int(moment.timestamp()) * 1000
    text = format_ms(ms)
    assert parse_iso_ms(text) == ms and format_ms(parse_iso_ms(text)) == text
    assert MIN_MS < ms < MAX_MS


@pytest.mark.parametrize(("value", "ms"), [
    (1714564800, MAY_1_MS), (1714564800.25, MAY_1_MS + 250), ("1714564800", MAY_1_MS),
    (0, 0),
])
def test_unix_seconds_to_ms(value: object, ms: int) -> None:
    assert unix_seconds_to_ms(value) == ms


@pytest.mark.parametrize(("value", "message"), [
    (True, "got a boolean"), ("soon", "is not Unix seconds, e.g. 1714564800"),
    ([1], "got list"), (-1, "out of range"), (253402300800, "out of range"),
])
def test_unix_seconds_to_ms_refuses_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(BadTimestamp, match=message):
        unix_seconds_to_ms(value)


# -- seconds: instants compared and measured ---------------------------------------------
@pytest.mark.parametrize("value", [
    1714564800, 1714564800.0, "1714564800", " 1714564800.0 ", "2024-05-01T12:00:00Z",
    "2024-05-01T14:00:00+02:00", "2024-05-01 12:00:00", "20240501T120000Z",
    datetime(2024, 5, 1, 12, tzinfo=UTC), datetime(2024, 5, 1, 12),
])
def test_parse_seconds_reads_every_form_of_one_instant(value: object) -> None:
    assert parse_seconds(value) == MAY_1


@pytest.mark.parametrize("value", [
    None, True, "", " ", "yesterday", "nan", "inf", float("nan"), 1e20, [1], {"t": 1},
    "2024-13-01T00:00:00Z", MAX_SECONDS + 1, MIN_SECONDS - 1,
])
def test_parse_seconds_is_none_for_anything_else(value: object) -> None:
    assert parse_seconds(value) is None


def test_format_seconds_round_trips_through_parse_seconds() -> None:
    for seconds in (MIN_SECONDS, MAX_SECONDS, 0.0, MAY_1, MAY_1 + 0.5, MAY_1 + 0.123456, -1.5):
        assert parse_seconds(format_seconds(seconds)) == seconds
    assert format_seconds(MAY_1) == "2024-05-01T12:00:00.000Z"
    assert format_seconds(MAY_1 + 0.123456) == "2024-05-01T12:00:00.123456Z"
    assert format_seconds(MIN_SECONDS) == "0001-01-01T00:00:00.000Z"
    assert format_seconds(MAX_SECONDS) == "9999-12-31T23:59:59.000Z"


def test_datetime_to_seconds_is_exact_and_bounded() -> None:
    assert datetime_to_seconds(datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)) == (
        parse_seconds("1714564800.123456"))
    assert datetime_to_seconds(datetime(9999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)) is None


@given(instants, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_iso_to_seconds_is_what_datetime_timestamp_gives(moment: datetime, minutes: int) -> None:
    """The pumps read stored times with it; before timeutil they called ``.timestamp()``."""
    text = moment.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    assert iso_to_seconds(text) == datetime.fromisoformat(text).timestamp()


def test_iso_to_seconds_is_none_for_what_it_cannot_read() -> None:
    assert iso_to_seconds("2024-05-01T12:00:00.000Z") == MAY_1
    assert iso_to_seconds("2024-05-01T12:00:00") == MAY_1  # naive: UTC, as everywhere
    for value in (None, 1714564800, "", "yesterday", ["2024-05-01"]):
        assert iso_to_seconds(value) is None


# -- window bounds typed by people -------------------------------------------------------
def test_parse_time_bound_forms() -> None:
    assert parse_time_bound(None, "from") is None
    assert parse_time_bound("", "from") is None
    assert parse_time_bound("1714564800", "from") == MAY_1_MS
    assert parse_time_bound(" 1714564800.5 ", "from") == MAY_1_MS + 500
    assert parse_time_bound("2024-05-01T12:00:00Z", "from") == MAY_1_MS
    for text, seconds in (("-30s", 30), ("-7d", 7 * 86400), ("-2w", 14 * 86400)):
        expected = (time.time() - seconds) * 1000
        assert abs(parse_time_bound(text, "from") - expected) < 5_000


@pytest.mark.parametrize("text", ["yesterday", "-7y", "7d", "--7d", "2024-13-01"])
def test_parse_time_bound_names_the_field_and_the_forms(text: str) -> None:
    with pytest.raises(BadRequest, match="relative like -7d") as caught:
        parse_time_bound(text, "received_from")
    assert caught.value.field == "received_from"
    assert caught.value.message.startswith("received_from must be ISO 8601")


# -- durations ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("72h", 259200), ("7d", 604800), ("2w", 1209600),
    ("1h30m", 5400), ("1h 30m", 5400), ("1d12h", 129600), ("1.5h", 5400), ("0s", 0),
    (" 10m ", 600), ("1m1m", 120),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [
    "", "  ", "3600", "72", "h", "1x", "1 hour", "-5m", "1h30", "72H", "1h-30m", "abc",
])
def test_parse_duration_rejects_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match='e.g. "90s"'):
        parse_duration(text)


def test_parse_duration_bare_number_says_missing_unit() -> None:
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration("3600")


@pytest.mark.parametrize("text", ["36501d", "5215w", "99999999999999999999d", "1e400s"])
def test_parse_duration_refuses_more_than_a_hundred_years(text: str) -> None:
    # "1e400s" is not a number to the parser at all; the others once came back as
    # cutoffs and next changes no integer column could hold.
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
    assert parse_duration("36500d") == 36_500 * 86_400


def test_parse_duration_non_string() -> None:
    with pytest.raises(ValueError):
        parse_duration(3600)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (1_000_000 / 1000, "16 min 40 s"), (0, "0 s"), (0.2, "under 1 s"), (0.6, "1 s"),
    (90061, "1 d 1 h 1 min 1 s"), (3600, "1 h"), (86400 * 3 + 5, "3 d 5 s"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_iso_milliseconds_are_exact() -> None:
    """Through a float, about one value in a hundred came out one millisecond early."""
    assert parse_iso_ms("2004-07-13T13:28:45.659Z") % 1000 == 659
    for ms in range(1_089_725_325_000, 1_089_725_327_000):
        assert parse_iso_ms(format_ms(ms)) == ms
