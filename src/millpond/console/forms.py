"""Small helpers shared by the page modules: reading form fields, redirects with notices."""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from millpond.console.render import BASE


def text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def lines(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in text(form, name).replace(",", "\n").splitlines() if v.strip()]


def tri(form: FormData, name: str) -> bool | None:
    """A yes / no / default select."""
    return {"yes": True, "no": False}.get(text(form, name))


def go(path: str, notice: str | None = None) -> RedirectResponse:
    """303 to a console path (after a successful POST), with a notice to show."""
    url = BASE + path
    if notice:
        url += ("&" if "?" in url else "?") + "notice=" + quote(notice)
    return RedirectResponse(url, 303)
