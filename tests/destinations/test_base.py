"""The shared pieces: retry table, Retry-After, outcomes, settings messages, wire helpers."""

from __future__ import annotations

import email.utils
import time

import httpx
import msgspec
import pytest

from millpond.destinations.base import (
    MAX_RETRY_AFTER_SECONDS,
    Partial,
    Reject,
    Retry,
    Sent,
    classify_status,
    estimate_size,
    header,
    is_retryable_status,
    retry_after_seconds,
)
from millpond.destinations.errors import SettingsError
from millpond.destinations.settings import check_http_url, convert, mask_secret
from millpond.destinations.wire import (
    basic_auth,
    parse_time,
    to_epoch_ms,
    to_epoch_seconds,
    to_iso,
)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (413, False),
        (422, False),
    ],
)
def test_retry_table(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
    outcome = classify_status(status, {}, b"boom", 1)
    assert isinstance(outcome, Retry if retryable else Reject)
    assert outcome.reason == f"HTTP {status}: boom"


def test_2xx_is_sent_and_redirect_is_terminal_with_location() -> None:
    assert classify_status(204, {}, b"", 5) == Sent()
    outcome = classify_status(301, {"Location": "https://track-eu.customer.io/x"}, b"", 1)
    assert isinstance(outcome, Reject) and "track-eu.customer.io" in outcome.reason


def test_413_split_only_for_batches() -> None:
    assert classify_status(413, {}, b"", 2) == Reject("HTTP 413", split=True)
    assert classify_status(413, {}, b"", 1) == Reject("HTTP 413", split=False)


def test_reason_keeps_vendor_text_short() -> None:
    outcome = classify_status(400, {}, b"x" * 5000, 1)
    assert isinstance(outcome, Reject) and len(outcome.reason) < 600


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("99999999", MAX_RETRY_AFTER_SECONDS),
        ("nan", None),
    ],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    assert retry_after_seconds({"Retry-After": value}) == expected


def test_retry_after_http_date() -> None:
    now = time.time()
    when = email.utils.formatdate(now + 120, usegmt=True)
    after = retry_after_seconds({"retry-after": when}, now=now)
    assert after is not None and 119 <= after <= 121


def test_retry_after_absent_and_header_case() -> None:
    assert retry_after_seconds({}) is None
    assert header(httpx.Headers({"RETRY-AFTER": "4"}), "Retry-After") == "4"
    assert header({"retry-after": "4"}, "Retry-After") == "4"


def test_partial_and_estimate_size() -> None:
    partial = Partial(frozenset(), {0: "bad"})
    assert partial.pending(3) == [1, 2]
    assert estimate_size({"a": 1}) == len(b'{"a":1}')


# -- settings -------------------------------------------------------------------------


class Demo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    size: int = 1


EXAMPLE = {"url": "https://example.com/hook", "size": 10}


def test_settings_messages_name_field_value_and_example() -> None:
    with pytest.raises(SettingsError) as err:
        convert("demo", Demo, {"url": "https://x", "sise": 3}, EXAMPLE)
    assert err.value.field == "sise"
    assert "unknown setting `sise`" in err.value.message and "got 3" in err.value.message
    assert "known settings: url, size" in err.value.message

    with pytest.raises(SettingsError) as err:
        convert("demo", Demo, {"url": "https://x", "size": "big"}, EXAMPLE)
    assert err.value.field == "size"
    assert err.value.message == (
        'setting `size`: expected an integer, got `str`; got "big"; e.g. "size": 10'
    )

    with pytest.raises(SettingsError) as err:
        convert("demo", Demo, {}, EXAMPLE)
    assert err.value.message == (
        'setting `url` is required for demo; e.g. "url": "https://example.com/hook"'
    )


@pytest.mark.parametrize("url", ["example.com", "ftp://example.com", "https://", "https://a/#x"])
def test_http_url_check(url: str) -> None:
    with pytest.raises(SettingsError) as err:
        check_http_url("endpoint", url, "https://api.example.com")
    assert "`endpoint`" in err.value.message and "https://api.example.com" in err.value.message


def test_mask_secret() -> None:
    assert mask_secret("sk_live_0123456789") == "••••6789"
    assert mask_secret("short") == "••••"
    assert mask_secret(None) is None and mask_secret("") == ""


# -- wire -----------------------------------------------------------------------------


def test_time_conversions() -> None:
    assert to_epoch_ms("2024-05-01T12:00:00.123Z") == 1714564800123
    assert to_epoch_ms("2024-05-01T14:00:00.123+02:00") == 1714564800123
    assert to_epoch_ms("2024-05-01T12:00:00") == 1714564800000  # naive = UTC
    assert to_epoch_ms(1714564800) == 1714564800000  # seconds
    assert to_epoch_ms(1714564800123) == 1714564800123  # already ms
    assert to_epoch_seconds("2024-05-01T12:00:00.999Z") == 1714564800
    assert to_epoch_ms("not a time") == "not a time" and to_epoch_ms(True) is True
    assert parse_time(None) is None
    assert to_iso(1714564800123) == "2024-05-01T12:00:00.123Z"


def test_basic_auth() -> None:
    assert basic_auth("key") == "Basic a2V5Og=="
    assert basic_auth("site", "secret") == "Basic c2l0ZTpzZWNyZXQ="
