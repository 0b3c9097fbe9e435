"""Deleting people from the cluster backend: their events from the stream and the index,
and their rows from every table of the state database.

Why the stream first, the index after (as retention does): the index is how the
people's events are found. Deleting from the stream first means a crash in between
leaves index rows pointing at nothing (skipped by every read), and the resumed job finds
them again and finishes; the other order could leave messages nobody can find.

JetStream's message delete overwrites the message in its files (the API's ``no_erase`` is
left false). :meth:`PgEraser.scrub` has PostgreSQL rewrite the tables that held the rows
(``VACUUM FULL``), so no dead tuple keeps their bytes in the table files; the server's
write-ahead log keeps them until it recycles its segments (a checkpoint's business,
outside a client's reach), which the operator's WAL archive, if any, must be told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from millpond.storage.models import owners_of
from millpond.storage.postgres.connection import PgState

#: Tables the steps delete from: rewritten by :meth:`PgEraser.scrub`.
_TABLES = ("events", "dedupe", "dead_letters", "rejections", "identities", "clusters",
           "traits", "memberships", "search_terms", "profile_ids", "members", "member_ids",
           "history")


class PgEraser:
    """:class:`~millpond.storage.contracts.PersonEraser` over the state database and the
    stream (``delete``: removes seqs from the stream, blocking)."""

    def __init__(self, db: PgState, delete: Callable[[Sequence[int]], None]):
        self._db = db
        self._delete = delete

    def _seqs(self, ids: Sequence[str]) -> list[int]:
        return [r["seq"] for r in self._db.execute(
            "SELECT seq FROM events WHERE user_id = ANY(%(ids)s)"
            " OR anonymous_id = ANY(%(ids)s)", {"ids": list(ids)})]

    def event_owners(self, ids: Sequence[str]) -> dict[str, bool]:
        if not ids:
            return {}
        return owners_of((r["user_id"], r["anonymous_id"]) for r in self._db.execute(
            "SELECT DISTINCT user_id, anonymous_id FROM events WHERE user_id = ANY(%(ids)s)"
            " OR anonymous_id = ANY(%(ids)s)", {"ids": list(ids)}))

    def events(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        seqs = self._seqs(ids)
        if not seqs:
            return 0
        self._delete(seqs)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM dedupe WHERE (source_id, message_id) IN (SELECT"
                         " source_id, message_id FROM events WHERE seq = ANY(%s))", (seqs,))
            return conn.execute("DELETE FROM events WHERE seq = ANY(%s)", (seqs,)).rowcount

    def dead_letters(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return self._db.execute(
            "DELETE FROM dead_letters WHERE seq = ANY(%(seqs)s) OR EXISTS (SELECT 1 FROM"
            " unnest(%(ids)s::text[]) AS i(id) WHERE strpos(payload, i.id) > 0)",
            {"seqs": self._seqs(ids), "ids": list(ids)}).rowcount

    def rejections(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return self._db.execute(
            "DELETE FROM rejections WHERE EXISTS (SELECT 1 FROM unnest(%s::text[]) AS i(id)"
            " WHERE position(convert_to(i.id, 'UTF8') IN body) > 0)", (list(ids),)).rowcount

    def profiles(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._db.transaction() as conn:
            cids = [r["cid"] for r in conn.execute(
                "SELECT DISTINCT cid FROM identities WHERE id = ANY(%s)", (list(ids),))]
            if not cids:
                return 0
            conn.execute("DELETE FROM profile_ids WHERE canon IN (SELECT id FROM identities"
                         " WHERE cid = ANY(%s))", (cids,))
            for table in ("traits", "memberships", "search_terms", "identities"):
                conn.execute(f"DELETE FROM {table} WHERE cid = ANY(%s)", (cids,))  # type: ignore[arg-type]
            return conn.execute("DELETE FROM clusters WHERE cid = ANY(%s)", (cids,)).rowcount

    def segment_memberships(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._db.transaction() as conn:
            people = [r["person_id"] for r in conn.execute(
                "SELECT person_id FROM member_ids WHERE identity = ANY(%(ids)s) UNION"
                " SELECT person_id FROM members WHERE user_id = ANY(%(ids)s)"
                " OR anonymous_id = ANY(%(ids)s)", {"ids": list(ids)})]
            if not people:
                return 0
            conn.execute("DELETE FROM member_ids WHERE person_id = ANY(%s)", (people,))
            conn.execute("DELETE FROM history WHERE person_id = ANY(%s)", (people,))
            return conn.execute("DELETE FROM members WHERE person_id = ANY(%s)",
                                (people,)).rowcount

    def scrub(self) -> None:
        for table in _TABLES:
            self._db.execute(f"VACUUM FULL {table}")  # type: ignore[arg-type]
