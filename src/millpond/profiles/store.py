"""The profile store: people built from identify, group and alias events, in SQLite.

Out-of-order updates still end right. The store's state is a pure function of the *set* of
events applied to it: any arrival order, any split into ``apply_many`` batches, and any number of
re-applications give the same profiles. The rules:

**Trait time.** Each trait keeps the time of the update that set it: ``_timestamp`` in the
event's traits when it parses (Unix seconds as number or numeric string, or ISO 8601; see
:func:`~millpond.profiles.timestamps.parse_trait_timestamp`), else the event's ``timestamp``.
``_timestamp`` is never stored as a trait.

**Last writer wins, ties by messageId.** A trait update wins if its time is later. At equal
times the update whose ``messageId`` is lexicographically greater (compared by Unicode code
point) wins. Should two *different* events share a ``messageId``, their value's canonical JSON,
then ``seq``, then ``source_id`` decide, so even that stays order-independent. Values are
replaced whole: an object-valued trait is not deep-merged.

**null clears, and leaves a tombstone.** A trait set to ``null`` by the winning update is
absent from ``traits`` (and from ``trait_times`` / ``trait_sources``). Its time is kept, listed
in ``cleared_traits``, so an older value arriving later does not bring the trait back; a newer
value does. Group traits follow the same rule.

**Identity.** Every id an identify / group / alias event names belongs to one person: identify
joins ``userId`` and ``anonymousId``, alias joins ``previousId`` to ``userId``. Joins are
transitive and permanent (profiles merge, never split). Ids live in one namespace: a profile is
found by any of its ids, user or anonymous, and by its profile ``id``.

- ``user_ids``: every id ever sent as a ``userId``; ``anonymous_ids``: the profile's other ids.
- ``user_id``: when several user ids were joined (e.g. by alias), the ``userId`` of the
  profile's latest event that sent one (greatest effective time, ties by greater
  ``messageId``). An alias's ``userId`` is the new name, its ``previousId`` does not compete.
- ``id``: ``prf_`` plus a digest of the profile's canonical identity, the id mentioned earliest
  (least effective time, then ``messageId``, then id). In forward-moving traffic a profile keeps
  its id when others merge into it; a backfill that reveals an earlier identity may change it,
  and a profile id handed out before keeps resolving to the merged profile.

**Merges.** A merge re-resolves every trait as the winner across both profiles, and the facts
above as max / min over both; none of this depends on which side was there first.

**Groups.** A group call records membership ``groupId -> traits`` on the profile of the ids it
names, with the same last-writer-wins rule per group trait.

**Provenance.** Each trait remembers the ``messageId``, ``seq`` and ``source_id`` of the event
that set it (``trait_sources``).

Applying is idempotent: re-applying an event (same ``messageId``, same content) changes nothing,
because every rule is a max / min / union that already contains it; no dedupe table is needed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from . import schema
from .merge import NULL_JSON, PROFILE_SCOPE, ClusterFacts, Plan, plan_chunk, profile_id_for
from .timestamps import format_timestamp
from .updates import ProfileUpdate, to_update

__all__ = ["ProfileStore"]

DEFAULT_BATCH_SIZE = 5000
_IN_CHUNK = 500  # bound variables per IN (...) query, well under SQLite's limit

_TRAIT_UPSERT = """
INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cid, gid, name) DO UPDATE SET
    t = excluded.t, mid = excluded.mid, value = excluded.value,
    seq = excluded.seq, source_id = excluded.source_id
WHERE (excluded.t, excluded.mid, excluded.value,
       coalesce(excluded.seq, -1), coalesce(excluded.source_id, ''))
    > (traits.t, traits.mid, traits.value,
       coalesce(traits.seq, -1), coalesce(traits.source_id, ''))
"""
# Same join as above, from one stored cluster into another (a merge).
_TRAIT_MOVE = """
INSERT INTO traits (cid, gid, name, t, mid, value, seq, source_id)
SELECT ?, gid, name, t, mid, value, seq, source_id FROM traits WHERE cid = ?
ON CONFLICT (cid, gid, name) DO UPDATE SET
    t = excluded.t, mid = excluded.mid, value = excluded.value,
    seq = excluded.seq, source_id = excluded.source_id
WHERE (excluded.t, excluded.mid, excluded.value,
       coalesce(excluded.seq, -1), coalesce(excluded.source_id, ''))
    > (traits.t, traits.mid, traits.value,
       coalesce(traits.seq, -1), coalesce(traits.source_id, ''))
"""


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ProfileStore:
    """Profiles in one SQLite database file (WAL), safe to share between threads.

    One connection writes (``apply_many``, ``set_checkpoint``), another reads (``get``,
    ``checkpoint``), so a long bulk apply does not block lookups: readers see the last
    committed state.
    """

    def __init__(self, path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Open (creating if needed) the store at ``path``.

        ``batch_size`` is how many events are planned in memory at once inside
        ``apply_many``; it bounds memory for arbitrarily long inputs, not the transaction.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self._batch_size = batch_size
        self._write = schema.connect(self.path)
        schema.ensure_schema(self._write)
        self._read = schema.connect(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close both connections; further calls fail. Safe to call twice."""
        if self._closed:
            return
        with self._write_lock, self._read_lock:
            self._closed = True
            self._read.close()
            self._write.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self) -> int:
        """Last log ``seq`` recorded with :meth:`set_checkpoint` (0 if none)."""
        with self._read_lock:
            row = self._read.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return 0 if row is None else int(row[0])

    def set_checkpoint(self, seq: int) -> None:
        """Record ``seq`` as the last log position applied (it may move backwards: a re-sync)."""
        with self._write_lock:
            self._write.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)", (int(seq),)
            )

    # -- writing ---------------------------------------------------------------------------

    def apply_many(self, events: Iterable[dict[str, Any]], *, checkpoint: int | None = None) -> int:
        """Apply events in one transaction; return how many were profile-relevant.

        Irrelevant events (track, page, ..., or without any id) are skipped and not counted.
        Re-applied events are counted but change nothing. ``checkpoint``, if given, is stored in
        the same transaction, so a follower's position can never run ahead of its data.
        """
        applied = 0
        with self._write_lock:
            conn = self._write
            conn.execute("BEGIN IMMEDIATE")
            try:
                next_cid = self._load_next_cid(conn)
                updates = (u for u in map(to_update, events) if u is not None)
                while chunk := list(islice(updates, self._batch_size)):
                    applied += len(chunk)
                    next_cid = self._apply_chunk(conn, chunk, next_cid)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_cid', ?)", (next_cid,)
                )
                if checkpoint is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)",
                        (int(checkpoint),),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return applied

    @staticmethod
    def _load_next_cid(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_cid'").fetchone()
        return 1 if row is None else int(row[0])

    def _apply_chunk(
        self, conn: sqlite3.Connection, chunk: list[ProfileUpdate], next_cid: int
    ) -> int:
        names = list({identity for update in chunk for identity in update.ids})
        known: dict[str, tuple[int, int]] = {}
        for part in _chunks(names, _IN_CHUNK):
            marks = ",".join("?" * len(part))
            for identity, cid, is_user in conn.execute(
                f"SELECT id, cid, is_user FROM identities WHERE id IN ({marks})", part
            ):
                known[identity] = (cid, is_user)
        facts: dict[int, ClusterFacts] = {}
        for part in _chunks(list({cid for cid, _ in known.values()}), _IN_CHUNK):
            marks = ",".join("?" * len(part))
            for cid, size, ct, cmid, canon, ut, umid, uid in conn.execute(
                "SELECT cid, size, canon_t, canon_mid, canon, uid_t, uid_mid, uid"
                f" FROM clusters WHERE cid IN ({marks})",
                part,
            ):
                facts[cid] = ClusterFacts(
                    size, (ct, cmid, canon), None if uid is None else (ut, umid, uid)
                )

        counter = next_cid

        def new_cid() -> int:
            nonlocal counter
            counter += 1
            return counter - 1

        plan = plan_chunk(chunk, known, facts, new_cid)
        for cid in [c for c, f in plan.clusters.items() if facts.get(c) == f]:
            del plan.clusters[cid]  # unchanged: skip the rewrite
        self._write_plan(conn, plan)
        return counter

    @staticmethod
    def _write_plan(conn: sqlite3.Connection, plan: Plan) -> None:
        for old, survivor in plan.absorbed:
            conn.execute("UPDATE identities SET cid = ? WHERE cid = ?", (survivor, old))
            conn.execute(_TRAIT_MOVE, (survivor, old))
            conn.execute("DELETE FROM traits WHERE cid = ?", (old,))
            conn.execute(
                "INSERT OR IGNORE INTO memberships (cid, gid)"
                " SELECT ?, gid FROM memberships WHERE cid = ?",
                (survivor, old),
            )
            conn.execute("DELETE FROM memberships WHERE cid = ?", (old,))
            conn.execute("DELETE FROM clusters WHERE cid = ?", (old,))
        conn.executemany(
            "INSERT INTO identities (id, cid, is_user) VALUES (?, ?, ?)", plan.new_identities
        )
        conn.executemany(
            "UPDATE identities SET is_user = 1 WHERE id = ?", [(i,) for i in plan.promoted_users]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO clusters"
            " (cid, size, canon_t, canon_mid, canon, uid_t, uid_mid, uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (cid, f.size, *f.canon, *(f.uid if f.uid is not None else (None, None, None)))
                for cid, f in plan.clusters.items()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO profile_ids (pid, canon) VALUES (?, ?)", plan.profile_ids
        )
        conn.executemany(
            _TRAIT_UPSERT,
            [
                (cid, gid, name, t, mid, value, None if seq < 0 else seq, source_id or None)
                for (cid, gid, name), (t, mid, value, seq, source_id) in plan.traits.items()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO memberships (cid, gid) VALUES (?, ?)", plan.memberships
        )

    # -- reading ---------------------------------------------------------------------------

    def get(self, any_id: str) -> dict[str, Any] | None:
        """The profile that ``any_id`` (user id, anonymous id or profile id) belongs to.

        Returns ``{"id", "user_id", "user_ids", "anonymous_ids", "traits", "trait_times",
        "trait_sources", "cleared_traits", "groups"}`` or ``None`` if the id is unknown. Read in
        one snapshot, so a concurrent apply is seen entirely or not at all.
        """
        with self._read_lock:
            conn = self._read
            conn.execute("BEGIN")
            try:
                return self._get(conn, any_id)
            finally:
                conn.execute("COMMIT")

    @staticmethod
    def _get(conn: sqlite3.Connection, any_id: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT cid FROM identities WHERE id = ?", (any_id,)).fetchone()
        if row is None and any_id.startswith("prf_"):
            row = conn.execute(
                "SELECT i.cid FROM profile_ids p JOIN identities i ON i.id = p.canon"
                " WHERE p.pid = ?",
                (any_id,),
            ).fetchone()
        if row is None:
            return None
        cid = row[0]
        canon, uid = conn.execute(
            "SELECT canon, uid FROM clusters WHERE cid = ?", (cid,)
        ).fetchone()
        user_ids: list[str] = []
        anonymous_ids: list[str] = []
        for identity, is_user in conn.execute(
            "SELECT id, is_user FROM identities WHERE cid = ? ORDER BY id", (cid,)
        ):
            (user_ids if is_user else anonymous_ids).append(identity)

        traits: dict[str, Any] = {}
        trait_times: dict[str, str] = {}
        trait_sources: dict[str, dict[str, Any]] = {}
        cleared: dict[str, str] = {}
        groups: dict[str, dict[str, Any]] = {
            gid: {}
            for (gid,) in conn.execute(
                "SELECT gid FROM memberships WHERE cid = ? ORDER BY gid", (cid,)
            )
        }
        for gid, name, t, mid, value, seq, source_id in conn.execute(
            "SELECT gid, name, t, mid, value, seq, source_id FROM traits"
            " WHERE cid = ? ORDER BY gid, name",
            (cid,),
        ):
            if gid != PROFILE_SCOPE:
                if value != NULL_JSON:
                    groups.setdefault(gid, {})[name] = msgspec.json.decode(value)
                continue
            if value == NULL_JSON:
                cleared[name] = format_timestamp(t)
                continue
            traits[name] = msgspec.json.decode(value)
            trait_times[name] = format_timestamp(t)
            trait_sources[name] = {"messageId": mid, "seq": seq, "source_id": source_id}

        return {
            "id": profile_id_for(canon),
            "user_id": uid,
            "user_ids": user_ids,
            "anonymous_ids": anonymous_ids,
            "traits": traits,
            "trait_times": trait_times,
            "trait_sources": trait_sources,
            "cleared_traits": cleared,
            "groups": groups,
        }
