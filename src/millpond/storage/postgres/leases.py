"""Leases and the process table of the scale-out backend, on PostgreSQL.

Why leases in the state database rather than JetStream consumers or NATS KV: the cursors,
ledgers and counters a lease guards are committed there too, and its clock (``now()`` on
the server) is the only one every process shares, so no host's clock skew can make two
owners. A lease is a row (name, owner, expiry): taken when free or expired, renewed by its
owner, given back on a clean stop. One statement per claim, so two processes racing for
one name see one winner (the row lock of ``ON CONFLICT DO UPDATE``).

The process table says who is alive: each process upserts its row with a heartbeat, and
``millpond cluster status`` lists them with the seconds since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg.types.json import Jsonb

from millpond.storage.models import Lease, ProcessInfo
from millpond.storage.postgres.connection import PgState

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE leases ADD COLUMN IF NOT EXISTS status JSONB,
    ADD COLUMN IF NOT EXISTS status_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS retry_asked_at TIMESTAMPTZ;
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    url TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""

#: Take a free or expired lease, or renew one's own: the row comes back only when the
#: caller owns it afterwards. ``acquired_at`` moves only when the owner changes.
_CLAIM = (
    "INSERT INTO leases AS l (name, owner, expires_at)"
    " VALUES (%(name)s, %(owner)s, now() + make_interval(secs => %(ttl)s))"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
    " expires_at = excluded.expires_at,"
    " acquired_at = CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE now() END,"
    # a new owner starts with nothing said and nothing asked: those were the last one's
    " status = CASE WHEN l.owner = excluded.owner THEN l.status END,"
    " status_at = CASE WHEN l.owner = excluded.owner THEN l.status_at END,"
    " retry_asked_at = CASE WHEN l.owner = excluded.owner THEN l.retry_asked_at END"
    " WHERE l.owner = excluded.owner OR l.expires_at < now()"
    " RETURNING name"
)


class PgLeases:
    """Leases and the process table in the state schema."""

    def __init__(self, db: PgState):
        self._db = db
        db.create_tables(SCHEMA)

    def claim(self, names: Iterable[str], owner: str, ttl: float) -> set[str]:
        """Take or renew each lease of ``names`` for ``ttl`` seconds; the names ``owner``
        holds afterwards (the others are someone else's, unexpired)."""
        held: set[str] = set()
        with self._db.transaction() as conn:
            for name in sorted(set(names)):  # one order: two claimers never deadlock
                row = conn.execute(_CLAIM, {"name": name, "owner": owner,
                                            "ttl": float(ttl)}).fetchone()
                if row is not None:
                    held.add(name)
        return held

    def release(self, names: Iterable[str], owner: str) -> None:
        """Give back ``owner``'s leases of ``names`` (a clean stop: no one waits for the
        expiry)."""
        self._db.execute("DELETE FROM leases WHERE owner = %s AND name = ANY(%s)",
                         (owner, sorted(set(names))))

    def leases(self) -> list[Lease]:
        """Every lease, with the seconds it has left (negative: expired, free to take)."""
        rows = self._db.execute(
            "SELECT name, owner, EXTRACT(EPOCH FROM expires_at - now()) AS left_s,"
            " EXTRACT(EPOCH FROM acquired_at) AS acquired, status,"
            " EXTRACT(EPOCH FROM now() - status_at) AS status_age FROM leases ORDER BY name")
        return [Lease(r["name"], r["owner"], float(r["left_s"]), float(r["acquired"]),
                      r["status"], None if r["status_age"] is None else float(r["status_age"]))
                for r in rows]

    def publish(self, owner: str, statuses: Mapping[str, dict[str, Any]]) -> None:
        """One statement for all of them (each renewal of a worker's leases publishes)."""
        if not statuses:
            return
        names = sorted(statuses)
        self._db.execute(
            "UPDATE leases AS l SET status = s.status, status_at = now()"
            " FROM unnest(%s::text[], %s::jsonb[]) AS s(name, status)"
            " WHERE l.name = s.name AND l.owner = %s",
            (names, [Jsonb(statuses[n]) for n in names], owner))

    def ask_retry(self, name: str) -> bool:
        rows = self._db.execute(
            "UPDATE leases SET retry_asked_at = now() WHERE name = %s AND expires_at > now()"
            " RETURNING name", (name,)).fetchall()
        return bool(rows)

    def retry_requests(self, owner: str) -> set[str]:
        rows = self._db.execute(
            "UPDATE leases SET retry_asked_at = NULL WHERE owner = %s AND"
            " retry_asked_at IS NOT NULL RETURNING name", (owner,)).fetchall()
        return {r["name"] for r in rows}

    def heartbeat(self, process: ProcessInfo) -> None:
        """Say ``process`` is alive now (its row created on the first beat)."""
        self._db.execute(
            "INSERT INTO processes (id, role, host, pid, url) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), url = excluded.url",
            (process.id, process.role, process.host, process.pid, process.url))

    def leave(self, process_id: str) -> None:
        """Remove a stopping process's row and leases."""
        self._db.execute("DELETE FROM leases WHERE owner = %s", (process_id,))
        self._db.execute("DELETE FROM processes WHERE id = %s", (process_id,))

    def processes(self, forget_after: float = 3600.0) -> list[ProcessInfo]:
        """Processes that beat in the last ``forget_after`` seconds (a killed one stays
        listed, its heartbeat ageing, until then), oldest first."""
        rows = self._db.execute(
            "SELECT id, role, host, pid, url, EXTRACT(EPOCH FROM started_at) AS started,"
            " EXTRACT(EPOCH FROM now() - heartbeat_at) AS age FROM processes"
            " WHERE heartbeat_at > now() - make_interval(secs => %s)"
            " ORDER BY started_at, id", (float(forget_after),))
        return [ProcessInfo(r["id"], r["role"], r["host"], r["pid"], r["url"],
                            float(r["started"]), float(r["age"])) for r in rows]
