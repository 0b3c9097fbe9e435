"""Which web origins may send a source's events from a browser.

A browser names the page that sends a request in its ``Origin`` header
(``scheme://host[:port]``, the port left out when it is the scheme's default). A source
may list the origins it accepts, so a write key copied into someone else's page is
refused there. An entry is an exact origin or a wildcard for subdomains
(``https://*.example.com`` matches ``https://shop.example.com``, not ``example.com``).
Entries are normalised the way browsers write origins, so ``HTTPS://Example.com:443/``
and ``https://example.com`` are the same entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
EXAMPLE = "https://www.example.com"


class BadOrigin(ValueError):
    """An allowed-origins entry that no browser could send; the message shows a good one."""


def normalize_origin(text: str) -> str:
    """``text`` as a browser would send it in ``Origin``; raises :class:`BadOrigin`."""
    if not isinstance(text, str) or not text.strip():
        raise BadOrigin(f"an origin must be text like {EXAMPLE!r}")
    raw = text.strip()
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadOrigin(f"origin {raw!r} must be scheme and host, e.g. {EXAMPLE!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise BadOrigin(f"origin {raw!r} must be only scheme, host and port (no path), "
                        f"e.g. {EXAMPLE!r}")
    host = parts.hostname.lower()
    if "*" in host and (not host.startswith("*.") or "*" in host[2:] or host.count(".") < 2):
        raise BadOrigin(f"origin {raw!r}: a wildcard may only be the first label of a "
                        "domain with at least two more, e.g. 'https://*.example.com'")
    try:
        port = parts.port
    except ValueError:
        raise BadOrigin(f"origin {raw!r} has an invalid port") from None
    if ":" in host:  # an IPv6 literal keeps its brackets in an Origin header
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origins(values: Iterable[str]) -> tuple[str, ...]:
    """Normalised, de-duplicated entries in their given order; raises :class:`BadOrigin`."""
    out: dict[str, None] = {}
    for value in values:
        out[normalize_origin(value)] = None
    return tuple(out)


def origin_allowed(origin: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether a request's ``Origin`` header value is one of ``allowed`` (None: any)."""
    if allowed is None:
        return True
    origin = origin.lower()
    if origin in allowed:
        return True
    scheme, sep, rest = origin.partition("://")
    if not sep:
        return False
    for entry in allowed:
        if "://*." not in entry:
            continue
        entry_scheme, _, pattern = entry.partition("://*")  # pattern: ".example.com[:port]"
        if entry_scheme == scheme and rest.endswith(pattern) and len(rest) > len(pattern):
            return True
    return False
