"""parse_trait_timestamp: every accepted form means one instant; junk is None, never an error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from millpond.profiles.timestamps import format_timestamp, parse_trait_timestamp
from millpond.timeutil import MAX_SECONDS, MIN_SECONDS

MAY_1 = 1714564800.0  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    "value",
    [
        1714564800,
        1714564800.0,
        "1714564800",
        " 1714564800.0 ",
        "1.7145648e9",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.000Z",
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01 12:00:00",  # no offset: UTC
        "20240501T120000Z",
        datetime(2024, 5, 1, 12, tzinfo=UTC),
    ],
)
def test_forms_of_the_same_instant_parse_equal(value: object) -> None:
    assert parse_trait_timestamp(value) == MAY_1


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "   ",
        "yesterday",
        "nan",
        "inf",
        "-inf",
        float("nan"),
        1e20,
        -1e20,
        [1],
        {"t": 1},
        "2024-13-01T00:00:00Z",
    ],
)
def test_unusable_values_are_none(value: object) -> None:
    assert parse_trait_timestamp(value) is None


def test_fractions_and_dates() -> None:
    assert parse_trait_timestamp("2024-05-01T12:00:00.250Z") == MAY_1 + 0.25
    assert parse_trait_timestamp(1714564800.25) == MAY_1 + 0.25
    assert parse_trait_timestamp("2024-05-01") == MAY_1 - 12 * 3600
    assert parse_trait_timestamp(0) == 0.0
    assert parse_trait_timestamp(-1.5) == -1.5


def test_microsecond_iso_and_float_agree() -> None:
    # Both must round to the same double, or equal instants would not tie.
    assert parse_trait_timestamp("2024-05-01T12:00:00.123456Z") == parse_trait_timestamp(
        "1714564800.123456"
    )


def test_format_round_trips() -> None:
    for seconds in (MIN_SECONDS, MAX_SECONDS, 0.0, MAY_1, MAY_1 + 0.5, MAY_1 + 0.123456, -1.5):
        assert parse_trait_timestamp(format_timestamp(seconds)) == seconds
    assert format_timestamp(MAY_1) == "2024-05-01T12:00:00.000Z"
    assert format_timestamp(MAY_1 + 0.123456) == "2024-05-01T12:00:00.123456Z"
    assert format_timestamp(MIN_SECONDS) == "0001-01-01T00:00:00.000Z"
