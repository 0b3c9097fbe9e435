"""The embedded backend: everything millpond keeps, in three SQLite files of one data dir.

- ``log.db``: the event log (group-commit writer, checkpointer, dedupe tables) and its
  event-time index; read by worker threads, and by worker processes for previews;
- ``state.db``: sources, destinations, delivery runs and dead letters, import jobs and
  rejections: small writes that must never wait behind the log's writer;
- ``profiles.db``: the profile store, written by its follower.

Everything SQLite lives in this package and only here.

Why this module imports nothing itself: processes that need one piece of the backend
(an import's reader process unpickles the dedupe hash, a preview worker the part
scanner) should not pay for loading every store, metrics included (40 ms and ~3 MB per
process); :class:`SQLiteStorage` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from millpond.storage.sqlite.storage import SQLiteStorage

__all__ = ["SQLiteStorage"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStorage":
        from millpond.storage.sqlite.storage import SQLiteStorage

        return SQLiteStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
