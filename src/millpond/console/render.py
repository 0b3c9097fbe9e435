"""Jinja2 rendering for the console: autoescaped templates, filters, the page context.

Why the ``pretty`` filter returns plain text rather than markup: event payloads are
attacker-controlled, so JSON is shown as *escaped text* (autoescape turns ``<script>``
into ``&lt;script&gt;``) inside ``<pre>``; nothing from an event is ever marked safe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from millpond.timeutil import format_ms

BASE = "/console"
NAV = (("overview", "Overview", "/"), ("sources", "Sources", "/sources"),
       ("debugger", "Debugger", "/debugger"), ("destinations", "Destinations", "/destinations"),
       ("replays", "Replays", "/replays"), ("imports", "Imports", "/imports"),
       ("people", "People", "/people"), ("segments", "Segments", "/segments"),
       ("regulations", "Regulations", "/regulations"))


def pretty(value: Any) -> str:
    """Indented JSON as a plain string (escaped by the template, never trusted)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def when(value: Any) -> str:
    """A time for people: Unix seconds or an ISO string, shown as ISO UTC to the second."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return format_ms(int(value * 1000))[:19].replace("T", " ") + " UTC"
    return str(value)[:19].replace("T", " ") + (" UTC" if str(value).endswith("Z") else "")


def ago(value: float | None) -> str:
    if not value:
        return ""
    seconds = max(0, time.time() - value)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    from millpond.timeutil import human_duration

    return human_duration(float(seconds))


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "svg"], default=True),
                      undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pretty=pretty, compact=compact, number=number, when=when, ago=ago,
                       duration=duration)
    env.globals.update(base=BASE, nav=NAV)
    return env


class Renderer:
    """Renders pages with what every page needs: the session's CSRF token, the nav, and
    ``storage_down`` (the open full-disk episode, from ``health``), which every page
    shows at the top while writes are refused."""

    def __init__(self, health: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
        self.env = make_env()
        self.health = health

    def text(self, template: str, /, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(self, request: Request, template: str, /, *, status: int = 200, **context: Any,
             ) -> HTMLResponse:
        session = request.scope.get("console_session") or {}
        context.setdefault("section", "")
        context.setdefault("error", None)
        context.setdefault("notice", request.query_params.get("notice"))
        html = self.text(template, csrf=session.get("csrf", ""), signed_in=bool(session),
                         request=request, storage_down=self.health(), **context)
        return HTMLResponse(html, status_code=status)
