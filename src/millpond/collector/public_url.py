"""The address browsers and apps use to reach this server, for settings answers and snippets.

Browser SDKs learn where to send events from the settings millpond answers
(``apiHost``, ``protocol``), and the snippets a user pastes carry the same address. It
is the configured public URL (``millpond serve --public-url https://events.example.com``)
when there is one: behind a proxy or a load balancer, the request's own ``Host`` names
an internal address. Without one it is taken from the request, and the proxy's
``X-Forwarded-Host``/``X-Forwarded-Proto`` only when ``--trust-proxy`` says a proxy
sets them (anyone can send those headers otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

EXAMPLE = "https://events.example.com"
#: What a Host header may hold: a name or address and a port; anything else is ignored.
_HOST = re.compile(r"[a-z0-9.\-]+(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?")


class BadPublicURL(ValueError):
    """A ``--public-url`` that browsers could not use; the message shows a good one."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where clients reach millpond: ``protocol`` and ``host`` (``host[:port][/path]``)."""

    protocol: str
    host: str

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"


def parse_public_url(text: str) -> Address:
    """``https://events.example.com[/prefix]`` as an :class:`Address`; raises BadPublicURL."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadPublicURL(f"public URL must be http(s)://host[:port][/path], e.g. {EXAMPLE}; "
                           f"got {text!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BadPublicURL(f"public URL must not have a query, fragment or credentials, e.g. "
                           f"{EXAMPLE}; got {text!r}")
    return Address(parts.scheme, parts.netloc.lower() + parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class PublicAddress:
    """Resolves the :class:`Address` clients use, per request; see the module docstring."""

    configured: Address | None = None
    trust_proxy: bool = False

    @classmethod
    def from_options(cls, public_url: str | None, trust_proxy: bool = False) -> PublicAddress:
        return cls(parse_public_url(public_url) if public_url else None, trust_proxy)

    def resolve(self, scope: Mapping[str, Any]) -> Address:
        """The address for a request (an ASGI ``scope``)."""
        if self.configured is not None:
            return self.configured
        headers = dict(scope.get("headers") or ())
        protocol = scope.get("scheme") or "http"
        host = headers.get(b"host", b"").decode("latin-1").strip()
        if self.trust_proxy:
            forwarded_host = headers.get(b"x-forwarded-host", b"").decode("latin-1")
            forwarded_proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
            host = forwarded_host.split(",")[0].strip() or host
            proto = forwarded_proto.split(",")[0].strip().lower()
            protocol = proto if proto in ("http", "https") else protocol
        if not _HOST.fullmatch(host.lower()):
            server = scope.get("server") or ("127.0.0.1", 8787)
            host = f"{server[0]}:{server[1]}"
        return Address(protocol, host.lower())
