"""The lock a schema's batches and its deletions take turns under.

Why: a batch is screened against the regulations inside its transaction
(:mod:`millpond.warehouses.screening`), but its rows are invisible to other sessions
until it commits, so a deletion running meanwhile would delete nothing of them and the
commit would bring the person back. Each batch takes the *shared* side of a
transaction-scoped advisory lock before it screens; a deletion takes the *exclusive*
side before it deletes. Batches never wait for each other; a deletion waits for the
batches already screened to commit (and then deletes their rows too), and a batch that
starts while a deletion holds the lock waits for it and is screened after it, with the
regulation in force. Advisory locks work across processes and connections, and end with
their transaction, a crash included.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["share", "take"]

#: The advisory lock's first key ("mill"); the second is the schema name's hash.
_CLASS = 0x6D696C6C


def share(cur: psycopg.Cursor[Any], schema: str) -> None:
    """A batch's side: held until its transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))", (_CLASS, schema))


def take(conn: psycopg.Connection[Any], schema: str) -> None:
    """A deletion's side (in its transaction): waits for the batches under way."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_CLASS, schema))
