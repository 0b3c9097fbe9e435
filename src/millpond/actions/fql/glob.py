"""Glob matching for FQL's ``match(s, pattern)``, compiled once per trigger.

Segment documents ``*`` (any run, including empty), ``?`` (one character), ``[abc]``,
``[a-z]`` and ``\\x`` (literal x); ``[!a]`` / ``[^a]`` negation is accepted as in every
other glob dialect. Matching is case-sensitive and covers the whole string. The common
shapes (``X*``, ``*X``, ``*X*``, no wildcard) become plain string methods, which is most of
what triggers use and several times faster than a regex.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["compile_glob"]

_GLOB_SPECIAL = frozenset("*?[\\")


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """Case-sensitive whole-string glob: ``*`` ``?`` ``[abc]`` ``[a-z]`` ``[!x]`` ``\\x``."""
    if not _GLOB_SPECIAL.intersection(pattern):
        return lambda s: s == pattern
    if pattern == "*":
        return lambda s: True
    inner = pattern[1:-1]
    if pattern.startswith("*") and pattern.endswith("*") and not _GLOB_SPECIAL.intersection(
        inner
    ):
        return lambda s: inner in s
    head, tail = pattern[:-1], pattern[1:]
    if pattern.endswith("*") and not _GLOB_SPECIAL.intersection(head):
        return lambda s: s.startswith(head)
    if pattern.startswith("*") and not _GLOB_SPECIAL.intersection(tail):
        return lambda s: s.endswith(tail)
    rx = re.compile(_glob_regex(pattern), re.S)
    return lambda s: rx.fullmatch(s) is not None


def _glob_regex(p: str) -> str:
    out: list[str] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\":
            out.append(re.escape(p[i + 1]) if i + 1 < n else re.escape("\\"))
            i += 1
        elif c == "[":
            cls, i = _glob_class(p, i)
            out.append(cls)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _glob_class(p: str, start: int) -> tuple[str, int]:
    """Translate ``[...]`` starting at ``start``; returns (regex, index after ``]``)."""
    i, n = start + 1, len(p)
    negate = i < n and p[i] in "!^"
    if negate:
        i += 1
    members: list[str] = []
    first = True
    while True:
        if i >= n:
            raise ValueError(f"unclosed '[' at offset {start} of {p!r}")
        c = p[i]
        if c == "]" and not first:
            break
        first = False
        if c == "\\" and i + 1 < n:
            i += 1
            c = p[i]
        lo = c
        i += 1
        if i + 1 < n and p[i] == "-" and p[i + 1] != "]":
            hi = p[i + 1]
            if hi == "\\" and i + 2 < n:
                hi = p[i + 2]
                i += 1
            if ord(hi) < ord(lo):
                raise ValueError(f"bad range {lo}-{hi} in {p!r}")
            members.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 2
        else:
            members.append(re.escape(lo))
    return ("[^" if negate else "[") + "".join(members) + "]", i + 1
