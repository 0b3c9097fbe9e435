"""Allowed origins are written the way browsers send ``Origin``, and matched exactly."""

from __future__ import annotations

import pytest

from millpond.sources.origins import BadOrigin, normalize_origin, origin_allowed


@pytest.mark.parametrize(("given", "stored"), [
    ("https://Example.com", "https://example.com"),
    ("HTTPS://example.com:443/", "https://example.com"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://127.0.0.1:80", "http://127.0.0.1"),
    ("https://*.example.com", "https://*.example.com"),
    ("http://[::1]:8080", "http://[::1]:8080"),
])
def test_normalised_like_a_browser_origin(given, stored) -> None:
    assert normalize_origin(given) == stored


@pytest.mark.parametrize("bad", ["example.com", "https://example.com/path", "ftp://x.com",
                                 "https://*", "https://*.com", "https://a.*.example.com",
                                 "https://x.com?q=1", "https://u@x.com", "", "https://x:99999"])
def test_what_no_browser_sends_is_refused_with_an_example(bad) -> None:
    with pytest.raises(BadOrigin, match="https://"):
        normalize_origin(bad)


def test_matching() -> None:
    allowed = ("https://shop.example.com", "https://*.example.org", "http://localhost:3000")
    assert origin_allowed("https://shop.example.com", allowed)
    assert origin_allowed("HTTPS://SHOP.EXAMPLE.COM", allowed)
    assert origin_allowed("https://a.example.org", allowed)
    assert origin_allowed("https://a.b.example.org", allowed)
    assert not origin_allowed("https://example.org", allowed)
    assert not origin_allowed("http://a.example.org", allowed)
    assert not origin_allowed("https://a.example.org:8443", allowed)
    assert not origin_allowed("https://evilexample.org", allowed)
    assert not origin_allowed("http://localhost:3001", allowed)
    assert not origin_allowed("null", allowed)
    assert origin_allowed("https://anything.test", None)
    assert not origin_allowed("https://anything.test", ())
