"""Signing in to the console with the admin token; sessions, CSRF and the security headers.

How it works:

* ``GET /console/sign-in`` shows a form; posting the admin token (compared in constant
  time) creates a session held **in memory** (so signing out, or a restart, ends it
  for sure) and sets a cookie carrying its id, signed with itsdangerous under a key
  derived from the admin token: ``HttpOnly`` (no script reads it), ``SameSite=Strict``
  (no other site's page sends it), ``Path=/console``, ``Secure`` behind https. Rotating
  the admin token invalidates every cookie.
* Each session has a CSRF token. Every form carries it in a hidden field, htmx requests
  send it as ``X-CSRF-Token`` (from ``hx-headers`` on ``<body>``), and every unsafe
  request is refused without it; the sign-in form has its own double-submit token. An
  ``Origin`` header from another origin is refused too.
* :class:`Guard` (plain ASGI, so server-sent event streams pass through untouched) puts
  the security headers on every answer, a strict Content-Security-Policy first: scripts,
  styles, connections and forms from this origin only, no inline anything, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from millpond.console.render import BASE

COOKIE = "millpond_console"
SIGNIN_COOKIE = "millpond_console_signin"
SESSION_SECONDS = 12 * 3600
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"),
           (b"cross-origin-opener-policy", b"same-origin")]
PUBLIC = ("/static/", "/sign-in")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class CsrfError(Exception):
    """An unsafe request without the session's CSRF token."""


class Sessions:
    """Signed-in sessions, in memory: ``sid -> {"csrf", "expires"}``."""

    def __init__(self, admin_token: str):
        self._token = admin_token
        key = hmac.new(admin_token.encode(), b"millpond console session", hashlib.sha256)
        self._signer = URLSafeTimedSerializer(key.hexdigest(), salt="console-session")
        self._signin = URLSafeTimedSerializer(key.hexdigest(), salt="console-sign-in")
        self._live: dict[str, dict[str, Any]] = {}

    def token_ok(self, given: str) -> bool:
        return secrets.compare_digest(given.strip().encode(), self._token.encode())

    def create(self) -> tuple[str, dict]:
        now = time.time()
        for sid in [s for s, v in self._live.items() if v["expires"] < now]:
            del self._live[sid]
        sid = secrets.token_urlsafe(24)
        session = {"sid": sid, "csrf": secrets.token_urlsafe(24),
                   "expires": now + SESSION_SECONDS}
        self._live[sid] = session
        return self._signer.dumps(sid), session

    def get(self, cookie: str | None) -> dict | None:
        if not cookie:
            return None
        try:
            sid = self._signer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        session = self._live.get(sid)
        if session is None or session["expires"] < time.time():
            return None
        return session

    def end(self, session: dict) -> None:
        self._live.pop(session["sid"], None)

    def signin_token(self) -> tuple[str, str]:
        """(form value, cookie value) for the sign-in form's double-submit check."""
        raw = secrets.token_urlsafe(16)
        return raw, self._signin.dumps(raw)

    def signin_ok(self, form_value: str, cookie: str | None) -> bool:
        if not cookie or not form_value:
            return False
        try:
            raw = self._signin.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return secrets.compare_digest(str(raw), form_value)


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None) -> bytes:
    parts = [f"{name}={value}", f"Path={BASE}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()


def set_cookie(response: Response, name: str, value: str, request: Request,
               max_age: int | None = SESSION_SECONDS) -> None:
    response.raw_headers.append((b"set-cookie", cookie_header(
        name, value, secure=request.url.scheme == "https", max_age=max_age)))


async def checked_form(request: Request) -> FormData:
    """The request's form, once its CSRF token matched the session's (raises CsrfError)."""
    session = request.scope.get("console_session")
    form = await request.form(max_part_size=64 * 1024 * 1024)
    given = request.headers.get("x-csrf-token") or str(form.get("csrf_token") or "")
    if not session or not given or not secrets.compare_digest(given, session["csrf"]):
        raise CsrfError("missing or wrong CSRF token")
    return form


def _cookies(scope) -> dict[str, str]:
    jar = SimpleCookie()
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001, S112 - a malformed cookie header is no session
                continue
    return {k: m.value for k, m in jar.items()}


def _same_origin(scope) -> bool:
    """No ``Origin`` (same-origin form posts may omit it; SameSite=Strict covers them), or
    one naming this server's host (as the client reached it: ``Host``, or behind a proxy
    ``X-Forwarded-Host``)."""
    headers = dict(scope.get("headers", ()))
    origin = headers.get(b"origin")
    if origin is None:
        return True
    origin_host = origin.decode("latin-1").split("://", 1)[-1]
    hosts = {headers.get(b"host", b""), headers.get(b"x-forwarded-host", b"")}
    return origin_host.encode("latin-1") in hosts - {b""}


class Guard:
    """ASGI middleware: security headers on every answer; a session for every page but
    the sign-in form and static files; no cross-origin unsafe requests."""

    def __init__(self, app, sessions: Sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rel = path[len(BASE):] if path.startswith(BASE) else path
        static = rel.startswith("/static/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers += HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in UNSAFE and not _same_origin(scope):
            await PlainTextResponse("cross-origin request refused", 403)(
                scope, receive, send_with_headers)
            return
        if not rel.startswith(PUBLIC):
            session = self.sessions.get(_cookies(scope).get(COOKIE))
            if session is None:
                await self._sign_in_first(scope, receive, send_with_headers, path)
                return
            scope["console_session"] = session
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _sign_in_first(scope, receive, send, path: str) -> None:
        headers = dict(scope.get("headers", ()))
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{BASE}/sign-in?next={quote(path + ('?' + query if query else ''))}"
        if headers.get(b"hx-request") or b"text/event-stream" in headers.get(b"accept", b""):
            response: Response = PlainTextResponse("sign in first", 401,
                                                   headers={"HX-Redirect": target})
        elif scope["method"] == "GET":
            response = RedirectResponse(target, 303)
        else:
            response = PlainTextResponse("sign in first", 401)
        await response(scope, receive, send)
