"""Database errors -> ``Retry`` (transient) or ``Reject`` (terminal), as vendor answers are.

The same split as :func:`millpond.destinations.base.classify_status`: a failure that can go away
by itself is ``Retry`` (the batch is loaded again later, nothing was applied since a batch is
one transaction); a failure that needs a person is ``Reject`` (the batch is dead-lettered with a
reason naming table and column, and can be redriven once fixed).

By SQLSTATE class (PostgreSQL manual, appendix A "PostgreSQL Error Codes"):

- transient: 08 connection exceptions, 53 insufficient resources (disk full, out of memory,
  too many connections), 57P01-57P03 (administrator / crash shutdown, cannot connect now),
  57014 (statement cancelled, e.g. a timeout), 40 transaction rollback (serialization failure,
  deadlock), 55P03 lock not available, 42P01 / 42703 (a table or column dropped by hand between
  the schema step and the load: the next attempt re-creates it), and any error without an
  SQLSTATE (the connection broke: psycopg's ``OperationalError`` / ``InterfaceError``);
- terminal: everything else, notably 23 integrity violations (a NOT NULL or CHECK constraint
  added by hand), 22 data exceptions, 42 syntax or access errors (e.g. 42501 permission denied,
  42804 a column's type changed by hand), 28 invalid authorization (credentials revoked),
  3D000 database gone.
"""

from __future__ import annotations

import psycopg

from millpond.destinations.base import Reject, Retry

__all__ = ["classify", "TableProblem"]

_TRANSIENT_CLASSES = ("08", "53", "40")
_TRANSIENT_CODES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03", "42P01", "42703"})


class TableProblem(Exception):
    """A table changed by hand so that this batch cannot load; always terminal."""


def classify(exc: Exception, where: str = "") -> Retry | Reject:
    """The outcome for an exception raised while loading (``where``: e.g. the table)."""
    if isinstance(exc, TableProblem):
        return Reject(str(exc))
    state = getattr(exc, "sqlstate", None)
    text = _describe(exc)
    if where:
        text = f"{where}: {text}"
    if state is None:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return Retry(f"database connection failed: {text}")
        return Reject(text)
    if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES:
        return Retry(f"SQLSTATE {state}: {text}")
    return Reject(f"SQLSTATE {state}: {text}")


def _describe(exc: Exception) -> str:
    """The server's message with the table / column / constraint it names, on one line."""
    diag = getattr(exc, "diag", None)
    primary = (getattr(diag, "message_primary", None) or str(exc)).strip()
    parts = [primary.splitlines()[0] if primary else type(exc).__name__]
    if diag is not None:
        named = []
        if diag.schema_name or diag.table_name:
            named.append(f"table {diag.schema_name or '?'}.{diag.table_name or '?'}")
        if diag.column_name:
            named.append(f"column {diag.column_name}")
        if diag.constraint_name:
            named.append(f"constraint {diag.constraint_name}")
        if named:
            parts.append("(" + ", ".join(named) + ")")
        if diag.message_detail:
            parts.append("- " + diag.message_detail.strip().splitlines()[0])
    return " ".join(parts)
