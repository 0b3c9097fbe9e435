"""Mapping-kit paths (``$.properties.items[0].price``) compiled into getter closures.

Path syntax follows Segment's ``get()``: dot-separated keys, ``[0]`` indexes, ``['key']``
/ ``["key"]`` quoted keys; any other bracket text is part of the key, so
``[txt] nest.inner`` reads ``payload["[txt] nest"]["inner"]``. Keys may contain spaces
(``integrations.Actions Amplitude.session_id``). ``""`` and ``"."`` mean the whole payload.
``@path`` additionally accepts a leading ``$.``.

A missing key yields :data:`UNDEFINED` (the field is then dropped), a JSON ``null`` yields
``None`` (kept). Getters copy containers they return: mapped payloads are handed to
destination code that may mutate them, while the event they came from is shared by every
destination of the source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from .js import UNDEFINED

__all__ = ["parse_path", "make_getter", "getter_for", "copy_json"]

Getter = Callable[[Any], Any]

_BRACKET = re.compile(r"\[(?:(\d+)|'([^']*)'|\"([^\"]*)\")\]")


def parse_path(path: str, *, strip_dollar: bool = False) -> tuple[str, ...]:
    """Split a mapping-kit path into keys (list indexes stay strings, as in JavaScript)."""
    if strip_dollar and path.startswith("$."):
        path = path[2:]
    if path in ("", "."):
        return ()
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == ".":
            if buf:
                parts.append("".join(buf))
                buf = []
            i += 1
            continue
        if ch == "[":
            m = _BRACKET.match(path, i)
            if m:
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(next(g for g in m.groups() if g is not None))
                i = m.end()
                continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append("".join(buf))
    return tuple(parts)


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def copy_json(value: Any) -> Any:
    """Structural copy of dicts/lists (scalars are immutable and returned as-is).

    Decoded events are mostly scalars inside plain dicts, so those skip the recursive
    call and the abstract-class checks below (they dominated pass-through mappings).
    """
    t = type(value)
    if t is dict:
        return {k: v if type(v) in _SCALAR_TYPES else copy_json(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _SCALAR_TYPES else copy_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [copy_json(v) for v in value]
    return value


def _step(value: Any, key: str) -> Any:
    """Lookup on anything that is not a plain dict: Mappings, list indexes, else undefined."""
    if isinstance(value, Mapping):
        return value.get(key, UNDEFINED)
    if isinstance(value, list | tuple) and key.isdigit() and key.isascii():
        idx = int(key)
        return value[idx] if idx < len(value) else UNDEFINED
    return UNDEFINED


_CONTAINERS = (dict, list)


def make_getter(parts: tuple[str, ...], *, copy: bool = True, present: bool = False) -> Getter:
    """Compile ``parts`` into ``fn(payload) -> value | UNDEFINED``.

    ``present=True`` also answers UNDEFINED for ``null`` (``@if exists`` semantics)."""
    if not parts:
        return copy_json if copy else (lambda p: p)
    if len(parts) == 1 and not present:
        (k,) = parts
        if not copy:
            return lambda p: p.get(k, UNDEFINED) if type(p) is dict else _step(p, k)

        def get1(p: Any) -> Any:
            v = p.get(k, UNDEFINED) if type(p) is dict else _step(p, k)
            return copy_json(v) if type(v) in _CONTAINERS else v

        return get1

    def get_n(p: Any) -> Any:
        for k in parts:
            p = p.get(k, UNDEFINED) if type(p) is dict else _step(p, k)
            if p is UNDEFINED:
                return p
        if p is None and present:
            return UNDEFINED
        return copy_json(p) if copy and type(p) in _CONTAINERS else p

    return get_n


@lru_cache(maxsize=1024)
def getter_for(path: str, strip_dollar: bool = True) -> Getter:
    """Getter for a path only known at run time (``{"@path": {"@path": ...}}``), cached."""
    return make_getter(parse_path(path, strip_dollar=strip_dollar))
