"""CORS for the browser-facing collector paths, so SDKs on other origins can read answers.

A page's SDK and millpond are different origins, so the browser shows the SDK an answer
only if it carries ``Access-Control-Allow-Origin``, errors included: a 4xx without it
looks like a network failure, which every SDK retries. Requests with headers outside
the CORS safelist (``Authorization``, RudderStack's ``AnonymousId``, Segment's
``X-Retry-Count``...) are preceded by an ``OPTIONS`` preflight that must answer 2xx and
name those headers; ``Authorization`` must be named, a ``*`` never covers it.

Headers are added only when the request has an ``Origin`` (browsers always send one
cross-origin), so server-side SDK traffic pays nothing. The origin is echoed, with
``Vary: Origin``, which also serves an SDK configured to send credentials; the opaque
origin ``null`` (sandboxed frames, ``file:``) gets ``*`` and no credentials.

The admin API sends no CORS headers at all: it is not meant to be called from pages.
"""

from __future__ import annotations

from millpond.collector.request import header
from millpond.errors import Forbidden
from millpond.sources.origins import origin_allowed
from millpond.sources.store import Source

#: Every request header the three browser SDKs send (``../browser-sdks`` spec, 2.1), plus
#: the ones millpond itself reads.
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Content-Encoding, Accept, X-Retry-Count, X-Strict-Mode, "
    "AnonymousId, SentAt, Rsa-Retry-Attempt, Rsa-Since-Last-Attempt, Rsa-Since-First-Attempt, "
    "Rsa-Retry-Reason, Rsa-Recovered")
_ALLOWED = {h.strip().lower() for h in ALLOWED_HEADERS.split(",")}
#: Seconds a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
MAX_AGE = b"86400"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


def answer_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an actual (non-preflight) answer to ``origin``."""
    if origin == b"null":
        return [(b"access-control-allow-origin", b"*"),
                (b"access-control-expose-headers", b"Retry-After")]
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", b"Retry-After")]


def preflight_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    """What an ``OPTIONS`` preflight's answer adds to :func:`answer_headers`: our header
    list plus whatever else the browser asks for (only well-formed header names)."""
    requested = (header(scope, b"access-control-request-headers") or b"").decode("latin-1")
    extra = [h.strip() for h in requested.split(",")
             if h.strip() and h.strip().lower() not in _ALLOWED
             and h.strip().replace("-", "").isalnum()]
    allow = ALLOWED_HEADERS + "".join(f", {h}" for h in extra[:20])
    return [(b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", allow.encode()),
            (b"access-control-max-age", MAX_AGE),
            (b"vary", b"Access-Control-Request-Headers")]


def with_cors(send, origin: bytes):
    """``send`` that adds the answer headers for ``origin`` to the response start."""
    extra = answer_headers(origin)

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return wrapped


def check_origin(scope: dict, source: Source) -> None:
    """Refuse a browser request from an origin the source does not allow (403, readable
    by the page because the answer still carries CORS headers)."""
    if source.allowed_origins is None:
        return
    origin = header(scope, b"origin")
    if origin is not None and not origin_allowed(origin.decode("latin-1"),
                                                 source.allowed_origins):
        raise OriginNotAllowed(
            f"origin {origin.decode('latin-1')[:200]} may not send events to source "
            f"{source.name}; allowed: {', '.join(source.allowed_origins) or 'none'}",
            field="Origin")
