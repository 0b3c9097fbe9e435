"""Segment's warehouse schema: which tables exist and which columns every row has.

Source: Segment, "Warehouse Schemas" (segment-docs ``src/connections/storage/warehouses/
schema.md``, found with the docs search "Segment warehouse schema tracks identifies"). What it
says, and what millpond does:

- ``tracks``: every ``track`` call with the columns common to all events (``id``,
  ``anonymous_id``, ``user_id``, ``context_*``, ``event`` = the event name's snake-case slug,
  ``event_text`` = the name as sent, ``received_at``, ``sent_at``, ``timestamp``...) and *no*
  properties; "for querying by the custom properties, use the ``<source>.<event>`` tables".
- one table per track event name (``order_completed``): the same columns plus one column per
  property.
- ``identifies`` (traits as columns), ``pages`` and ``screens`` (properties as columns, plus the
  call's ``name``; millpond also keeps the spec's ``category``), ``groups`` (``group_id``, group
  traits as columns), ``aliases`` (``previous_id``; traits if any).
- ``users``: "identify calls are upserted on ``user_id``"; ``id`` is the user id; no
  ``anonymous_id`` column. ``accounts``: the same for ``group`` calls, keyed by ``group_id``.
  millpond resolves each trait column on its own by trait time (see
  :mod:`millpond.warehouses.postgres.traits`), not by arrival.
- ``id`` is the ``messageId``; ``uuid_ts`` "when the specific event was last processed", i.e.
  the load time; ``original_timestamp`` is ``originalTimestamp``. Segment's ``uuid`` (a Redshift
  dedupe helper) and BigQuery's ``loaded_at`` are not reproduced: ``id`` is the primary key.
- "properties with the same name as a reserved column name (for example, ``user_id``) are
  discarded": millpond discards them too, and records each one in ``millpond_discards``. It
  also reserves the ``context_`` prefix for context fields, so a property cannot land in a
  context column.

Additions: ``millpond_seq`` and ``millpond_source_id`` say which stored event a row came from (a
destination may load several sources into one schema, where Segment has one schema per source).
"""

from __future__ import annotations

from millpond.warehouses.types import ColumnType

__all__ = [
    "ACCOUNTS",
    "ALIASES",
    "CONTEXT_PREFIX",
    "EVENT_TABLE",
    "FIXED_TABLES",
    "GROUPS",
    "IDENTIFIES",
    "PAGES",
    "PROFILE_COLUMNS",
    "SCREENS",
    "TRACKS",
    "TRAIT_TIMES",
    "USERS",
    "kind_of_type",
    "reserved_columns",
    "standard_columns",
]

TRACKS = "tracks"
IDENTIFIES = "identifies"
PAGES = "pages"
SCREENS = "screens"
GROUPS = "groups"
ALIASES = "aliases"
USERS = "users"
ACCOUNTS = "accounts"
#: The kind of a per-event-name table (its name comes from the event).
EVENT_TABLE = "event"

FIXED_TABLES = frozenset({TRACKS, IDENTIFIES, PAGES, SCREENS, GROUPS, ALIASES, USERS, ACCOUNTS})

CONTEXT_PREFIX = "context_"

T = ColumnType

#: Columns every event table has, in the order they are created.
_COMMON: dict[str, ColumnType] = {
    "id": T.TEXT,
    "received_at": T.TIMESTAMP,
    "sent_at": T.TIMESTAMP,
    "timestamp": T.TIMESTAMP,
    "original_timestamp": T.TIMESTAMP,
    "uuid_ts": T.TIMESTAMP,
    "user_id": T.TEXT,
    "anonymous_id": T.TEXT,
    "millpond_seq": T.BIGINT,
    "millpond_source_id": T.TEXT,
}

_EXTRA: dict[str, dict[str, ColumnType]] = {
    TRACKS: {"event": T.TEXT, "event_text": T.TEXT},
    EVENT_TABLE: {"event": T.TEXT, "event_text": T.TEXT},
    PAGES: {"name": T.TEXT, "category": T.TEXT},
    SCREENS: {"name": T.TEXT, "category": T.TEXT},
    GROUPS: {"group_id": T.TEXT},
    ALIASES: {"previous_id": T.TEXT},
    IDENTIFIES: {},
}

#: Columns of ``users`` / ``accounts`` besides the traits.
PROFILE_COLUMNS: dict[str, ColumnType] = {
    "id": T.TEXT,
    "received_at": T.TIMESTAMP,
    "uuid_ts": T.TIMESTAMP,
}

#: The column of ``users`` / ``accounts`` holding the time of each cell's value (millpond's
#: bookkeeping, see :mod:`millpond.warehouses.postgres.traits`): no trait may write it.
TRAIT_TIMES = "millpond_trait_times"

_STANDARD = {kind: {**_COMMON, **extra} for kind, extra in _EXTRA.items()}
_STANDARD[USERS] = dict(PROFILE_COLUMNS)
_STANDARD[ACCOUNTS] = dict(PROFILE_COLUMNS)
#: Columns a property or trait may not write, per kind: the standard ones, and for identifies
#: and groups also those of users / accounts, where their traits go too.
_RESERVED = {kind: dict(columns) for kind, columns in _STANDARD.items()}
for _kind in (IDENTIFIES, GROUPS):
    _RESERVED[_kind][TRAIT_TIMES] = T.TEXT  # the type is never used, only the name

#: Segment type -> the kind of its main table.
_KIND_OF_TYPE = {
    "track": EVENT_TABLE,
    "identify": IDENTIFIES,
    "page": PAGES,
    "screen": SCREENS,
    "group": GROUPS,
    "alias": ALIASES,
}


def standard_columns(kind: str) -> dict[str, ColumnType]:
    """The fixed columns of a table of ``kind`` (a fixed table name or ``EVENT_TABLE``)."""
    return _STANDARD[kind]


def reserved_columns(kind: str) -> dict[str, ColumnType]:
    """The columns a property or trait of a ``kind`` event may not write (a superset of
    :func:`standard_columns`)."""
    return _RESERVED[kind]


def kind_of_type(event_type: object) -> str | None:
    """The table kind a Segment ``type`` loads into (None: not a Segment call)."""
    return _KIND_OF_TYPE.get(event_type) if isinstance(event_type, str) else None
