"""``@template``: Segment's mustache-like placeholders, ``"Hello {{traits.name}}"``.

Not Mustache: no sections, no HTML escaping (double and triple braces behave the same),
whitespace inside the braces is trimmed, a missing or null value renders as ``""`` and
other values render as JavaScript's ``String()`` would (``true``, ``1``, ``a,b``,
``[object Object]``). A placeholder cannot contain ``}``, which is why ``{{foo}}}``
renders ``hello}``.

The reference runs two regex passes (triple braces, then double braces over the result),
so text substituted by the first pass could be re-interpreted as a placeholder. One
combined pass avoids that template injection from event data; outputs are otherwise equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ..js import UNDEFINED, js_string
from ..paths import make_getter, parse_path

__all__ = ["compile_template", "render_template"]

_PLACEHOLDER = re.compile(r"\{\{\{([^}]+)\}\}\}|\{\{([^}]+)\}\}")


@lru_cache(maxsize=1024)
def compile_template(template: str) -> Callable[[Any], str]:
    """Compile once into ``fn(payload) -> str``."""
    parts: list[str | Callable[[Any], Any]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        key = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        parts.append(make_getter(parse_path(key), copy=False))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])
    if not any(callable(p) for p in parts):
        return lambda _p: template
    if len(parts) == 1:
        (get,) = parts
        return lambda p: _text(get(p))  # type: ignore[operator]
    frozen = tuple(parts)

    def render(p: Any) -> str:
        return "".join(x if type(x) is str else _text(x(p)) for x in frozen)  # type: ignore[operator]

    return render


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is UNDEFINED else js_string(value)


def render_template(template: str, payload: Any) -> str:
    """One-shot rendering (templates computed at run time, i.e. ``@template: {@path}``)."""
    return compile_template(template)(payload)
