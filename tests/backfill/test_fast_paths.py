"""The row loop's shortcuts give exactly what the general conversions give."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from millpond.backfill import prepare
from millpond.backfill.values import (
    MEMO_SIZE,
    infer_value,
    iso_from_epoch,
    iso_from_whole_seconds,
    parse_timestamp,
    trait_timestamp,
    unix_seconds_cell,
)
from millpond.timeutil import MAX_SECONDS, format_seconds

CELLS = st.one_of(
    st.text("0123456789", min_size=1, max_size=13),
    st.text("0123456789 .-+eE:TZ٣１", min_size=1, max_size=14),
    st.integers(min_value=-10, max_value=10**13).map(str),
)


@given(CELLS)
def test_digit_cells_parse_like_the_general_path(cell):
    whole = unix_seconds_cell(cell)
    if whole is None:
        return
    seconds = parse_timestamp(cell)
    assert seconds == float(whole)
    assert iso_from_whole_seconds(whole) == iso_from_epoch(seconds)
    assert trait_timestamp(seconds) == whole and type(trait_timestamp(seconds)) is int


@given(st.integers(min_value=0, max_value=int(MAX_SECONDS)))
def test_whole_seconds_format_like_the_general_formatter(whole):
    assert iso_from_whole_seconds(whole) == format_seconds(whole) == iso_from_epoch(whole)


def test_only_plain_short_ascii_digits_take_the_shortcut():
    assert unix_seconds_cell("1714564800") == 1714564800
    assert unix_seconds_cell("0") == 0
    assert unix_seconds_cell("99999999999") == 99999999999
    for cell in ("100000000000", " 1714564800", "1714564800.5", "-1", "", "٣", "１", "1e9"):
        assert unix_seconds_cell(cell) is None


TIME_CELLS = ["0", "7", "0123", "1714564800", "01714564800", "99999999999", "100000000000",
              "1714564800.5", " 1714564800 ", "2024-05-01T12:00:00Z", "2024-05-01", "0123",
              "1714564800", "00"]


def test_a_timestamp_column_that_is_also_a_trait_is_typed_like_any_cell(write, run, sink):
    cells = TIME_CELLS + [str(1_600_000_000 + i) for i in range(MEMO_SIZE + 50)] + TIME_CELLS
    path = write("id,updated_at\n" + "".join(f"u{i},{c}\n" for i, c in enumerate(cells)))
    summary = run(path, sink, timestamp_column="updated_at")
    assert summary.rows_rejected == 0 and len(sink.events) == len(cells)
    for event, cell in zip(sink.events, cells, strict=True):
        value = cell.strip()
        seconds = parse_timestamp(value)
        assert event["timestamp"] == iso_from_epoch(seconds)
        traits = event["traits"]
        assert traits["_timestamp"] == trait_timestamp(seconds)
        assert type(traits["_timestamp"]) is type(trait_timestamp(seconds))
        assert traits["updated_at"] == infer_value(value)
        assert type(traits["updated_at"]) is type(infer_value(value))
        assert list(traits) == ["updated_at", "_timestamp"]


def _fromisoformat_ms(stamp: str) -> int | None:
    """The canonical-timestamp check and its milliseconds as ``prepare_batch`` had them."""
    if not (len(stamp) == 24 and stamp[19:] == ".000Z" and stamp[4] == "-" and stamp[7] == "-"
            and stamp[10] == "T" and stamp[13] == ":" and stamp[16] == ":" and stamp[0] != "0"
            and stamp.isascii()):
        return None
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return None


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_canonical_timestamps_give_the_milliseconds_fromisoformat_gives(moment):
    stamp = f"{moment:%Y-%m-%dT%H:%M:%S}.000Z".rjust(24, "0")
    assert prepare._canonical_ms(stamp) == _fromisoformat_ms(stamp)


@given(st.text("0123456789-:TZ.+ １٣", min_size=20, max_size=26).map(
    lambda noise: "2024-05-01T12:00:00.000Z"[:len(noise)] if len(noise) % 3 == 0 else noise)
    | st.sampled_from(["2024-05-01T12:00:00.000Z", "2024-02-30T12:00:00.000Z",
                       "2024-05-01T24:00:00.000Z", "2024-05-01T12:60:00.000Z",
                       "2024-05-01T12:00:60.000Z", "0999-05-01T12:00:00.000Z",
                       "2024-W18-3T12:00:00.000Z", "+024-05-01T12:00:00.000Z",
                       "２０２４-05-01T12:00:00.000Z", "2024-05-01T1２:00:00.000Z",
                       "2024-05-01T12:00:00.000z", "2024-05-01 12:00:00.000Z",
                       "2024-5-01T12:00:00.000Z", "2024-05-01T12:00:00.123Z"]))
def test_other_strings_are_not_taken_for_canonical_timestamps(stamp):
    assert prepare._canonical_ms(stamp) == _fromisoformat_ms(stamp)
    assert prepare._canonical_ms(stamp) == _fromisoformat_ms(stamp)  # a memo hit too


def test_only_strings_can_be_canonical_timestamps():
    for value in (1714564800, None, b"2024-05-01T12:00:00.000Z", ["2024-05-01T12:00:00.000Z"]):
        assert prepare._canonical_ms(value) is None
