"""Warehouse (`postgres`) and storage (`parquet`) destinations: loaders behind the delivery runs.

Why they are destination types at all: so a warehouse gets the same Run machinery as every
vendor (cursor, counters, dead letters, retries, stats, lag, ``/metrics``) instead of a second
scheduler. The seam is the pump's transport: :meth:`LoaderDestination.transport` gives the
destination its own :class:`LoaderTransport`, which hands the batch's stored events to the
loader in a worker thread and answers only after the load committed (200), failed transiently
(503: nothing applied, retried) or can never apply as is (422: dead-lettered with the reason,
redrivable once fixed). A committed load that left events out (people a regulation screened
by the time it committed, :mod:`millpond.warehouses.screening`) names them in its answer,
and :meth:`LoaderDestination.classify` makes that a ``Partial`` whose ``skipped`` items the
run records as skipped with the screen's reason (``deleted``, ``suppressed``), not as sent.
The pump moves the cursor only after the answer, and the loaders are
idempotent per ``seq``, so a crash mid-batch re-runs the batch without duplicates or gaps.

Both kinds are ``replayable: false``: their first sync starts at seq 0 (``history_from_start``)
and so already holds history; a replay would only load it twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any, ClassVar, cast

import msgspec

from millpond.actions import ActionSpec
from millpond.delivery.screen import Screen
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    Outcome,
    Partial,
    RateLimit,
    Reject,
    Retry,
    Sent,
    body_text,
)
from millpond.destinations.errors import SettingsError
from millpond.destinations.registry import register
from millpond.storage.contracts import LoadStatsStore
from millpond.storage.models import TableLoadStats
from millpond.warehouses.parquet import settings as parquet_settings
from millpond.warehouses.postgres import settings as postgres_settings

#: Events per load; each load is one transaction (postgres) or one set of files (parquet).
MAX_BATCH_EVENTS = 10_000
#: Bound on the mapped payloads held per batch (the loaders read the stored events).
MAX_BATCH_BYTES = 64 * 1024 * 1024


class LoadRequest(OutboundRequest):
    """An "outbound request" that carries the batch's stored events to a loader."""

    events: list = msgspec.field(default_factory=list)


class LoadStats:
    """Per-table totals of one destination's loads (shown by API, CLI, console, /metrics).

    The totals (rows, discards, last load per table) live in the storage's
    :class:`~millpond.storage.contracts.LoadStatsStore` once :meth:`attach` named it, so a
    restart does not reset them; before that (a destination type used on its own, in
    tests) they are kept here. ``rows`` counts rows new to the table (``Loaded.inserted``):
    a batch loaded again after a crash adds nothing, so the totals match the tables.
    The count of loads, the last error and the newest event seen are this process's.
    """

    def __init__(self) -> None:
        self.loads = 0
        self.last_load: float | None = None
        self.last_error: str | None = None
        self.last_event_at: str | None = None
        self._store: LoadStatsStore | None = None
        self._destination_id = ""
        self._local: dict[str, TableLoadStats] = {}
        self._lock = threading.Lock()

    def attach(self, store: LoadStatsStore, destination_id: str) -> None:
        """Keep the totals in ``store``, under ``destination_id``, from now on."""
        self._store = store
        self._destination_id = destination_id

    def record(self, loaded: Any, last_event: dict | None) -> None:
        """Count a committed load (called in the loader's worker thread: a write)."""
        now = time.time()
        tables: dict[str, list[int]] = {}
        for table in loaded.rows:
            tables[table] = [int(loaded.inserted.get(table, 0)), 0]
        for d in loaded.discards:
            tables.setdefault(d.table, [0, 0])[1] += 1
        if self._store is not None:
            self._store.add(self._destination_id,
                            {t: (r, d) for t, (r, d) in tables.items()}, now)
        with self._lock:
            if self._store is None:
                for name, (rows, discards) in tables.items():
                    old = self._local.get(name) or TableLoadStats()
                    self._local[name] = TableLoadStats(old.rows + rows,
                                                       old.discards + discards, now)
            self.loads += 1
            self.last_load = now
            self.last_error = None
            if last_event is not None:
                self.last_event_at = last_event.get("receivedAt") or last_event.get("timestamp")

    def failed(self, reason: str) -> None:
        with self._lock:
            self.last_error = reason

    def tables(self) -> dict[str, TableLoadStats]:
        if self._store is not None:
            return self._store.get(self._destination_id)
        with self._lock:
            return dict(self._local)

    def as_dict(self) -> dict:
        tables = self.tables()
        with self._lock:
            now = time.time()
            last = max((t.last_load for t in tables.values() if t.last_load is not None),
                       default=self.last_load)
            return {
                "loads": self.loads,
                "last_load": last,
                "seconds_since_last_load": None if last is None else round(now - last, 1),
                "last_error": self.last_error,
                "tables": {name: msgspec.to_builtins(t) for name, t in sorted(tables.items())},
            }


class LoaderTransport:
    """Runs one destination's loader for each batch; answers like a vendor would."""

    def __init__(self, loader: Any, stats: LoadStats) -> None:
        self.loader = loader
        self.stats = stats
        # Loaders keep a connection and are not thread-safe: one load (or close) at a time.
        # A threading lock, not an asyncio one: a cancelled send leaves its worker thread
        # running, and the close on shutdown must wait for that thread.
        self._lock = threading.Lock()

    def _load(self, stored: list, events: list) -> Any:
        from millpond.warehouses.batch import Loaded

        with self._lock:
            outcome = self.loader.load(stored)
        if isinstance(outcome, Loaded):
            # Here, in the worker thread: recording is a storage write.
            self.stats.record(outcome, events[-1] if events else None)
        return outcome

    def _close(self) -> None:
        with self._lock:
            close = getattr(self.loader, "close", None)
            if close is not None:
                close()

    async def send(self, request: OutboundRequest):
        from millpond.delivery.transport import Response
        from millpond.warehouses.batch import Loaded, StoredEvent

        events = request.events if isinstance(request, LoadRequest) else []
        stored = [StoredEvent(int(e.get("seq") or 0), str(e.get("source_id") or ""), e)
                  for e in events]
        outcome = await asyncio.to_thread(self._load, stored, events)
        if isinstance(outcome, Loaded):
            body: dict[str, Any] = {"events": outcome.events, "rows": outcome.rows,
                                    "discards": len(outcome.discards)}
            if outcome.screened:  # by index in the request: the pump's items are indexed
                gone = outcome.screened
                body["skipped"] = {str(i): gone[s.seq] for i, s in enumerate(stored)
                                   if s.seq in gone}
            return Response(200, {}, msgspec.json.encode(body))
        reason = outcome.reason if isinstance(outcome, (Retry, Reject)) else str(outcome)
        self.stats.failed(reason)
        return Response(503 if isinstance(outcome, Retry) else 422, {}, reason.encode())

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)


class LoaderDestination(DestinationType):
    """What the two loader-backed types share; subclasses name their ``settings_module``
    (``check_settings``, ``mask_settings``, ``check``: the create-time connection test)
    and their loader."""

    #: The warehouse package's settings module; typed loosely (a module), so each hook
    #: below takes the type's own settings Struct without a cast per type.
    settings_module: ClassVar[ModuleType]
    replayable = False
    history_from_start = True
    default_rate_limit = RateLimit(events_per_second=100_000.0)
    batching = BatchLimits(max_events=MAX_BATCH_EVENTS, max_bytes=MAX_BATCH_BYTES,
                           linger_seconds=60.0)
    dedupe_key = "messageId (postgres: id column merge) / seq (parquet: manifest ranges)"
    presets = (
        ActionSpec(
            name="Load event",
            trigger="type != null",
            # The loader reads the stored event (Item.event); the payload stays small.
            mapping={"messageId": {"@path": "$.messageId"}},
        ),
    )

    @classmethod
    def check_settings(cls, settings: msgspec.Struct) -> None:
        cls.settings_module.check_settings(settings)

    @classmethod
    def mask_settings(cls, raw: dict) -> dict:
        return cls.settings_module.mask_settings(raw)

    @classmethod
    def check_connection(cls, settings: msgspec.Struct) -> None:
        """Create-time test: raises SettingsError saying what to fix."""
        cls.settings_module.check(settings)

    @classmethod
    def check_move(cls, old: msgspec.Struct, new: msgspec.Struct, loaded_upto: int) -> None:
        """Refuse new settings that point a destination which has loaded events up to seq
        ``loaded_upto`` at a place holding none of its loads (SettingsError).

        Why: it would go on from its cursor there, so the new place would get only the
        events after it and the history would stay behind, with nothing to say so; this
        type is not replayable, so the gap could not be filled. A place that already
        holds loads is the same one (a password changed) or one the user moved the tables
        or files to, and is taken."""
        module = cls.settings_module
        field = module.moved(old, new)
        if field is None or loaded_upto <= 0 or module.holds_loads(new):
            return
        raise SettingsError(field, (
            f"this destination has loaded the events up to seq {loaded_upto:,} into"
            f" {module.place(old)}; {module.place(new)} holds none of them, so it would get"
            " only the later ones. To load the whole log there, create a new destination"
            " (its first sync starts at the beginning of the log); to move this one, move"
            " its tables or files there first"))

    def __init__(self, settings: msgspec.Struct) -> None:
        super().__init__(settings)
        interval = float(cast(Any, settings).batch_interval_seconds)  # both types have it
        self.batching = BatchLimits(MAX_BATCH_EVENTS, MAX_BATCH_BYTES, interval)
        self.stats = LoadStats()
        self._transport: LoaderTransport | None = None

    def make_loader(self, screen: Screen | None = None) -> Any:
        """A loader of this destination's settings; ``screen``: whose events it must
        leave out when it commits (millpond.warehouses.screening)."""
        raise NotImplementedError

    def transport(self, shared: Any, screen: Screen | None = None) -> Any:
        """This destination's own transport: its loader, not the shared HTTP client."""
        if self._transport is None:
            self._transport = LoaderTransport(self.make_loader(screen), self.stats)
        return self._transport

    def build_request(self, action: str, items: list[Item]) -> OutboundRequest:
        return LoadRequest("LOAD", f"{self.name}:", {}, b"", len(items),
                           events=[item.event for item in items])

    def classify(self, status: int, headers: Mapping[str, str], body: bytes,
                 item_count: int) -> Outcome:
        if 200 <= status <= 299:
            skipped = _skipped(body)
            if skipped:  # screened at the commit: skipped with the screen's reason
                return Partial(frozenset(range(item_count)) - skipped.keys(), {}, skipped)
            return Sent()
        text = body_text(body)
        if status == 503:
            return Retry(text, None)
        return Reject(text)

    def transport_error(self, exc: Exception) -> Outcome:
        return Retry(f"{type(exc).__name__}: {exc}")


class _Answer(msgspec.Struct):
    """The part of a :class:`LoaderTransport` answer :meth:`LoaderDestination.classify`
    reads: the items the loader left out (by index), with why."""

    skipped: dict[int, str] = msgspec.field(default_factory=dict)


_decode_answer = msgspec.json.Decoder(_Answer).decode


def _skipped(body: bytes) -> dict[int, str]:
    try:
        return _decode_answer(body).skipped
    except msgspec.DecodeError:
        return {}


@register
class PostgresDestination(LoaderDestination):
    """Segment's warehouse schema in a PostgreSQL database (see millpond.warehouses.postgres)."""

    name = "postgres"
    kind: ClassVar[str] = "warehouse"
    title = "PostgreSQL warehouse"
    docs = "https://segment.com/docs/connections/storage/warehouses/schema/"
    settings_type = postgres_settings.PostgresSettings
    settings_example: ClassVar[dict] = postgres_settings.SETTINGS_EXAMPLE
    secret_fields = postgres_settings.SECRET_FIELDS
    settings_module = postgres_settings

    def make_loader(self, screen: Screen | None = None) -> Any:
        from millpond.warehouses.postgres import PostgresLoader

        return PostgresLoader(cast(postgres_settings.PostgresSettings, self.settings),
                              screen=screen)

    def forget_rows(self, ids: list[str]) -> int:
        """Delete the people's rows from the warehouse (a regulation); blocking."""
        loader = self.make_loader()
        try:
            return loader.forget(ids)
        finally:
            loader.close()


@register
class ParquetDestination(LoaderDestination):
    """Parquet files in a local directory or an S3-compatible bucket."""

    name = "parquet"
    kind: ClassVar[str] = "storage"
    title = "Parquet files (directory or S3)"
    docs = "https://parquet.apache.org/docs/file-format/"
    settings_type = parquet_settings.ParquetSettings
    settings_example: ClassVar[dict] = parquet_settings.SETTINGS_EXAMPLE
    secret_fields = parquet_settings.SECRET_FIELDS
    settings_module = parquet_settings

    def forget_rows(self, ids: list[str]) -> int:
        """Write the files holding the people's rows again without them (a regulation;
        see millpond.warehouses.parquet.erase); blocking."""
        return self.make_loader().forget(ids)

    def make_loader(self, screen: Screen | None = None) -> Any:
        from millpond.warehouses.parquet import ParquetWriter

        return ParquetWriter(cast(parquet_settings.ParquetSettings, self.settings),
                             screen=screen)
