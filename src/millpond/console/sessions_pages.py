"""Sign in (the admin token, through a form) and sign out."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from millpond.console.auth import COOKIE, SIGNIN_COOKIE, checked_form, set_cookie
from millpond.console.render import BASE


def _next(value: str | None) -> str:
    """Only a path inside the console (no open redirect to another site)."""
    if value and value.startswith(BASE + "/") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return BASE + "/"


def routes(console) -> list[Route]:
    sessions = console.sessions

    def form(request: Request, error: str | None = None, status: int = 200) -> Response:
        value, cookie = sessions.signin_token()
        response = console.render.page(request, "sign_in.html", status=status, error=error,
                                       signin_token=value,
                                       next=_next(request.query_params.get("next")))
        set_cookie(response, SIGNIN_COOKIE, cookie, request, max_age=3600)
        return response

    async def sign_in(request: Request) -> Response:
        if request.method == "GET":
            return form(request)
        data = await request.form()
        if not sessions.signin_ok(str(data.get("signin_token") or ""),
                                  request.cookies.get(SIGNIN_COOKIE)):
            return form(request, "The form expired; sign in again.", 400)
        if not sessions.token_ok(str(data.get("token") or "")):
            await asyncio.sleep(0.5)  # slows guessing; the token is long anyway
            return form(request, "That is not the admin token.", 401)
        cookie, _session = sessions.create()
        response = RedirectResponse(_next(str(data.get("next") or "")), 303)
        set_cookie(response, COOKIE, cookie, request)
        set_cookie(response, SIGNIN_COOKIE, "", request, max_age=0)
        return response

    async def sign_out(request: Request) -> Response:
        await checked_form(request)
        sessions.end(request.scope["console_session"])
        response = RedirectResponse(f"{BASE}/sign-in?notice=Signed+out.", 303)
        set_cookie(response, COOKIE, "", request, max_age=0)
        return response

    return [Route("/sign-in", sign_in, methods=["GET", "POST"]),
            Route("/sign-out", sign_out, methods=["POST"])]
