"""Table and column names, exactly as Segment's warehouses spell them.

Analysts and dbt packages written against Segment warehouses query ``order_completed``,
``context_page_path`` and ``product_id_sku``; to be a drop-in, millpond must derive the same
names from the same events.

Sources:

- Segment, "Warehouse Schemas" (segment-docs ``src/connections/storage/warehouses/schema.md``):
  "All schemas convert collection and property names from CamelCase to snake_case using the
  go-snakecase package"; nested objects are flattened with ``_`` (``context.app.version`` ->
  ``context_app_version``); arrays are stringified; each track event name gets its own table.
- segmentio/go-snakecase ``snake.go`` (the algorithm) and ``snake_test.go`` (its examples, which
  ``tests/warehouses/test_naming.py`` replays): ASCII letters and digits are kept, everything
  else separates words, an upper-case run starts a word and is lower-cased
  (``"inviteYourCustomersAddInvites"`` -> ``invite_your_customers_add_invites``,
  ``"FOO:BAR$BAZ"`` -> ``foo_bar_baz``, ``"•¶§ƒ˚foo˙∆˚¬"`` -> ``foo``). A name that is already
  lower snake case is returned unchanged, leading underscore included (``_foo``).

Additions of our own, because PostgreSQL needs them and Segment does not say:

- identifiers are at most 63 bytes (PostgreSQL's ``NAMEDATALEN - 1``; longer ones are silently
  truncated by the server, which would merge two long names into one column). A longer name
  keeps its first 54 characters plus ``_`` and 8 hex digits of its SHA-1, so it stays unique and
  stable;
- a name with no ASCII letter or digit at all (``"日本語"``) has no snake-case form: as a column
  it is discarded with that reason; as an event name its table is ``event_`` + 8 hex digits of
  the name's SHA-1;
- an event whose table name would be one of the fixed tables (``tracks``, ``users``...) or a
  ``millpond_`` bookkeeping table gets the prefix ``event_`` (``"Identifies"`` ->
  ``event_identifies``) instead of writing into the fixed table.
"""

from __future__ import annotations

import hashlib
from typing import LiteralString, cast

__all__ = ["MAX_IDENTIFIER", "event_table_name", "fit_identifier", "snakecase", "quote"]

MAX_IDENTIFIER = 63
_CACHE_LIMIT = 200_000
_cache: dict[str, str] = {}


def _lower_or_digit(c: str) -> bool:
    return "a" <= c <= "z" or "0" <= c <= "9"


def _upper(c: str) -> bool:
    return "A" <= c <= "Z"


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


def _snakecase(s: str) -> str:
    # A line-by-line port of go-snakecase's Snakecase (see the module docstring); Go indexes
    # bytes and Python characters, which is the same for the ASCII characters the rules look
    # at, while every non-ASCII character (any of its UTF-8 bytes, in Go) is a separator.
    n = len(s)
    idx = 0
    while idx < n and (
        _lower_or_digit(s[idx])
        or (s[idx] == "_" and idx < n - 1 and _lower_or_digit(s[idx + 1]))
    ):
        idx += 1
    if idx == n:
        return s
    if idx > 0 and _digit(s[idx - 1]):  # a digit followed by an upper-case letter
        idx -= 1
    out = [s[:idx]] if idx else []
    started = idx > 0
    while idx < n:
        c = s[idx]
        if not (_lower_or_digit(c) or _upper(c)):
            idx += 1
            continue
        if started:
            out.append("_")
        started = True
        while idx < n and (_upper(s[idx]) or _digit(s[idx])):
            out.append(s[idx].lower())
            idx += 1
        while idx < n and _lower_or_digit(s[idx]):
            out.append(s[idx])
            idx += 1
    return "".join(out)


def snakecase(name: str) -> str:
    """``name`` in Segment's snake case ('' when it holds no ASCII letter or digit).

    Memoised: the same few hundred property keys recur in every event of a batch.
    """
    cached = _cache.get(name)
    if cached is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        cached = _cache[name] = _snakecase(name)
    return cached


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def fit_identifier(name: str) -> str:
    """``name`` shortened to PostgreSQL's 63-byte limit, unique and stable (see above)."""
    if len(name) <= MAX_IDENTIFIER:
        return name
    return f"{name[: MAX_IDENTIFIER - 9]}_{_digest(name)}"


def event_table_name(event: str, reserved: frozenset[str]) -> str:
    """The table of track event ``event`` (without the destination's table prefix)."""
    snake = snakecase(event)
    if not snake:
        return f"event_{_digest(event)}"
    if snake in reserved or snake.startswith("millpond_"):
        snake = f"event_{snake}"
    return fit_identifier(snake)


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (names here are ASCII snake case, but be exact)."""
    return '"' + identifier.replace('"', '""') + '"'


def trusted_sql(text: str) -> LiteralString:
    """``text`` declared safe SQL for psycopg's types.

    psycopg types queries as ``LiteralString`` so that a value formatted into SQL is a
    type error. The loaders build SQL from fixed text and :func:`quote`d identifiers
    only (values travel as parameters or COPY rows), which f-strings hide from a type
    checker; every statement they run passes through here, so that claim sits in one place.
    """
    return cast(LiteralString, text)
