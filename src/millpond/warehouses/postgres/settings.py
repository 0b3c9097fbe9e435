"""Settings of a ``postgres`` warehouse destination, and the connection test run at create time.

Why a connection test at create time: a typo in a DSN should be an error on the form the user is
filling in, naming what is wrong (host unreachable, wrong password, unknown database, no right to
create tables), not a dead-letter queue filling up an hour later. :func:`check` connects, then
creates the schema and a table inside a transaction it rolls back, so it proves the loader's
rights without leaving anything behind.

Settings follow :mod:`millpond.destinations.settings` (unknown keys are errors, messages name the
field, the value and an example) and raise only :class:`SettingsError`.

Why psycopg is imported inside the functions: the destination catalog imports this module
(the type's settings and example), and so does every process that has the catalog (the
server, the preview workers) whether or not it ever has a ``postgres`` destination; psycopg
is loaded only once a DSN is parsed, masked or connected to.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

import millpond.destinations.settings as _settings
from millpond.destinations.errors import SettingsError
from millpond.warehouses.naming import quote, trusted_sql

__all__ = [
    "DEFAULT_BATCH_INTERVAL",
    "MIN_BATCH_INTERVAL",
    "PostgresSettings",
    "SECRET_FIELDS",
    "SETTINGS_EXAMPLE",
    "check",
    "describe_connect_error",
    "mask_settings",
    "parse_settings",
]

TYPE_NAME = "postgres"
DEFAULT_BATCH_INTERVAL = 60.0
MIN_BATCH_INTERVAL = 5.0
SECRET_FIELDS = frozenset({"dsn"})
SETTINGS_EXAMPLE = {
    "dsn": "postgresql://loader:secret@db.example.com:5432/analytics",
    "schema": "millpond",
    "table_prefix": "",
    "batch_interval_seconds": 60,
}

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PREFIX = re.compile(r"[a-z0-9_]{0,20}")


class PostgresSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    dsn: Annotated[
        str,
        Meta(description="libpq connection string or URI (secret: it usually holds the "
                         "password).", examples=[SETTINGS_EXAMPLE["dsn"]]),
    ]
    schema: Annotated[
        str, Meta(description="Schema holding the tables; created when missing.")
    ] = "millpond"
    table_prefix: Annotated[
        str, Meta(description="Put before every table name, e.g. `web_` -> `web_tracks`.")
    ] = ""
    batch_interval_seconds: Annotated[
        float,
        Meta(description="How often a micro-batch is loaded (at least 5 seconds): each load is "
                         "one transaction, so fewer, larger loads cost the warehouse less."),
    ] = DEFAULT_BATCH_INTERVAL
    connect_timeout_seconds: Annotated[
        float, Meta(description="Give up connecting after this long (the load is retried).")
    ] = 10.0
    lock_timeout_seconds: Annotated[
        float, Meta(description="Give up waiting for a table someone else holds locked after "
                                "this long (the load is retried).")
    ] = 300.0


def parse_settings(raw: dict) -> PostgresSettings:
    """Validate raw settings; raises SettingsError naming the field."""
    parsed = _settings.convert(TYPE_NAME, PostgresSettings, raw, SETTINGS_EXAMPLE)
    assert isinstance(parsed, PostgresSettings)
    check_settings(parsed)
    return parsed


def check_settings(settings: PostgresSettings) -> None:
    """Checks beyond types, without connecting."""
    import psycopg  # here, not at the top: see the module docstring
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(settings.dsn)
    except psycopg.ProgrammingError as exc:
        raise SettingsError("dsn", f"dsn is not a valid PostgreSQL connection string ({exc}); "
                            f"e.g. \"dsn\": \"{SETTINGS_EXAMPLE['dsn']}\"") from None
    if not _SCHEMA.fullmatch(settings.schema):
        raise SettingsError("schema", "schema must be a lower-case identifier (letters, digits, "
                            f"_; at most 63) like \"millpond\"; got {settings.schema!r}")
    if not _PREFIX.fullmatch(settings.table_prefix):
        raise SettingsError("table_prefix", "table_prefix must be lower-case letters, digits "
                            f"and _ (at most 20), like \"web_\"; got {settings.table_prefix!r}")
    if not settings.batch_interval_seconds >= MIN_BATCH_INTERVAL:
        raise SettingsError("batch_interval_seconds", "batch_interval_seconds must be at least "
                            f"{MIN_BATCH_INTERVAL:g}; got {settings.batch_interval_seconds!r}")
    if not settings.lock_timeout_seconds >= 0.01:
        raise SettingsError("lock_timeout_seconds", "lock_timeout_seconds must be at least "
                            f"0.01; got {settings.lock_timeout_seconds!r}")
    if not settings.connect_timeout_seconds > 0:
        raise SettingsError("connect_timeout_seconds", "connect_timeout_seconds must be "
                            f"positive; got {settings.connect_timeout_seconds!r}")


def mask_settings(raw: dict) -> dict:
    """A copy of raw settings safe to show: the DSN's password is masked."""
    out = dict(raw)
    dsn = out.get("dsn")
    if isinstance(dsn, str):
        import psycopg
        from psycopg import conninfo

        try:
            params = conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            out["dsn"] = _settings.mask_secret(dsn)
        else:
            if "password" in params:
                params["password"] = _settings.MASK
            out["dsn"] = conninfo.make_conninfo("", **params)
    return out


def _where(params: dict) -> str:
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


def describe_connect_error(exc: BaseException, dsn: str) -> str:
    """A sentence for a failed connection: what is wrong and what to check."""
    import psycopg
    from psycopg import conninfo

    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        params = {}
    text = str(exc).strip()
    low = text.lower()
    where = _where(params)
    user = params.get("user") or "(default user)"
    dbname = params.get("dbname") or user
    if "password authentication failed" in low:
        return f"wrong password for user {user!r} on {where} (server said: {_last(text)})"
    if "no password supplied" in low or "password is required" in low:
        return f"{where} requires a password for user {user!r}; put it in the DSN"
    if "role" in low and "does not exist" in low:
        return f"user {user!r} does not exist on {where}"
    if "database" in low and "does not exist" in low:
        return f"database {dbname!r} does not exist on {where}"
    if "pg_hba.conf" in low:
        return f"{where} refuses this client (pg_hba.conf): {_last(text)}"
    if "connection refused" in low:
        return (f"nothing accepts connections on {where} (connection refused): is PostgreSQL "
                "running there, and is the port right?")
    if "translate host name" in low or "name or service not known" in low:
        return f"unknown host {params.get('host')!r}: check the host name in the DSN"
    if "timeout" in low or "timed out" in low:
        return f"{where} did not answer in time: check host, port and firewalls"
    if "ssl" in low:
        return f"TLS problem connecting to {where}: {_last(text)}"
    return f"cannot connect to {where}: {_last(text)}"


def _last(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def check(settings: PostgresSettings) -> None:
    """Connect and prove the loader may create its schema and tables; raises SettingsError.

    Nothing is left behind: the schema and table are created in a transaction rolled back.
    """
    import psycopg

    try:
        conn = psycopg.connect(settings.dsn, autocommit=False,
                               connect_timeout=max(1, round(settings.connect_timeout_seconds)))
    except psycopg.Error as exc:
        raise SettingsError("dsn", describe_connect_error(exc, settings.dsn)) from None
    try:
        with conn:
            conn.execute(trusted_sql(f"CREATE SCHEMA IF NOT EXISTS {quote(settings.schema)}"))
            probe = quote(settings.table_prefix + "millpond_check")
            conn.execute(trusted_sql(f"CREATE TABLE {quote(settings.schema)}.{probe} (id text)"))
            conn.rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SettingsError("dsn", f"the DSN's user may not create schema {settings.schema!r} "
                            f"or tables in it: {_last(str(exc))}; grant CREATE on the database "
                            "(or create the schema and grant CREATE on it)") from None
    except psycopg.Error as exc:
        raise SettingsError("dsn", f"connected, but could not create tables in schema "
                            f"{settings.schema!r}: {_last(str(exc))}") from None
    finally:
        conn.close()


def moved(old: PostgresSettings, new: PostgresSettings) -> str | None:
    """The setting that changes where the loads land (``dsn``, ``schema`` or
    ``table_prefix``), or None. A DSN whose password alone changes counts: only the
    database can say whether it is the same one (:func:`holds_loads`)."""
    for field in ("schema", "table_prefix", "dsn"):
        if getattr(old, field) != getattr(new, field):
            return field
    return None


def place(settings: PostgresSettings) -> str:
    """Where the loads land, for messages (the DSN shown without its password)."""
    where = f"schema {settings.schema!r}"
    if settings.table_prefix:
        where += f" (tables {settings.table_prefix}*)"
    return f"{where} of {mask_settings({'dsn': settings.dsn})['dsn']}"


def holds_loads(settings: PostgresSettings) -> bool:
    """Whether the place already holds millpond's loads: its column registry
    (``<prefix>millpond_columns``, written with the first load's tables) exists."""
    import psycopg

    from millpond.warehouses.naming import fit_identifier

    registry = fit_identifier(settings.table_prefix + "millpond_columns")
    try:
        with psycopg.connect(settings.dsn, connect_timeout=max(
                1, round(settings.connect_timeout_seconds))) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                               (f"{quote(settings.schema)}.{quote(registry)}",)).fetchone()
    except psycopg.Error as exc:
        raise SettingsError("dsn", describe_connect_error(exc, settings.dsn)) from None
    return bool(row and row[0])
