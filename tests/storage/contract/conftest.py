"""Every backend, and what the contract suite needs to know about each: the one place to add
a backend (as litestream's ``RunWithReplicaClient`` runs one suite over every replica
client, and Jitsu bulker's over every database).

A backend is a :class:`Backend`: how to open it on a fresh place, how to open it again on
the same one, its capabilities, and two things no contract offers that the suite needs
to check what the contract promises: removing events (what retention will do, for gaps
in seq) and breaking a checkpoint half-way (for atomicity).

Tests that need a capability ask for a fixture named after it (``durable_backend``,
``parts_backend``); :func:`pytest_generate_tests` runs them over the backends that have
it, so a backend without it simply has no such test (nothing is skipped).

A backend still being built lists what it does not do yet in :attr:`Backend.not_yet`
(test modules or single tests, each with the reason): those tests are not generated for
it, and the run's summary says which and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from millpond.storage import Storage, StorageConfig, open_storage


class Backend:
    """One backend under test, on its own place (``tmp_path``)."""

    name = ""
    #: What ``append`` acknowledged survives the process (and a reopen).
    durable = False
    #: ``index.part_scanner()`` returns a scanner for other processes.
    scans_parts = False
    #: What the backend does not do yet: test module name, or ``module::test``, -> why.
    not_yet: dict[str, str] = {}

    def __init__(self, tmp_path: Path, **_options: Any):
        self.tmp_path = tmp_path

    def spec(self) -> dict[str, Any]:
        """What :meth:`from_spec` needs to open the same place in another process."""
        return {"name": self.name, "tmp_path": str(self.tmp_path)}

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> Backend:
        options = dict(spec)
        return BACKENDS[options.pop("name")](Path(options.pop("tmp_path")), **options)

    def cleanup(self) -> None:
        """Remove what the backend left outside ``tmp_path`` (a stream on the cluster)."""

    def config(self) -> StorageConfig:
        return StorageConfig(backend=self.name, data_dir=str(self.tmp_path / "data"))

    def open(self) -> Storage:
        """The backend on this place: the same data again after a close, if durable."""
        return open_storage(self.config())

    def remove_events(self, storage: Storage, seqs: Iterable[int]) -> None:
        """Delete stored events as retention would: their seqs become gaps."""
        raise NotImplementedError

    def break_checkpoints(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make every later checkpoint with dead letters fail after its run update."""
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"
    durable = True
    scans_parts = True

    def _file(self, name: str) -> sqlite3.Connection:
        return sqlite3.connect(self.tmp_path / "data" / name, isolation_level=None)

    def remove_events(self, storage: Storage, seqs: Iterable[int]) -> None:
        # As retention must in this backend: keep the removed events' exact keys, where
        # a later hash hit is confirmed without the event (see storage/sqlite/dedupe.py).
        marks = [(s,) for s in seqs]
        with self._file("log.db") as conn:
            conn.executemany("INSERT OR IGNORE INTO dedupe_overflow SELECT source_id,"
                             " message_id FROM events WHERE seq = ?", marks)
            conn.executemany("DELETE FROM events WHERE seq = ?", marks)

    def break_checkpoints(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        # A trigger fails the dead-letter insert inside the checkpoint's transaction, after
        # the run's row was updated: a failure in the middle, as a full disk would cause.
        with self._file("state.db") as conn:
            conn.execute("CREATE TRIGGER broken BEFORE INSERT ON dead_letters"
                         " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")


class MemoryBackend(Backend):
    name = "memory"

    def remove_events(self, storage: Storage, seqs: Iterable[int]) -> None:
        storage.log.forget(seqs)  # type: ignore[attr-defined]

    def break_checkpoints(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(*_args, **_kwargs):
            raise RuntimeError("injected failure")

        monkeypatch.setattr(storage.runs, "_new_dead_letter", broken)


class _Partial:
    """The stores of :class:`~millpond.storage.contracts.Storage` a backend being built has
    so far (the rest are in its :attr:`Backend.not_yet`)."""

    def __init__(self, log: Any, state: Any):
        from millpond.storage.postgres import (
            PgDestinationStore,
            PgImportJobStore,
            PgRejectionStore,
            PgRunStore,
            PgSourceStore,
        )

        self.log, self._state = log, state
        self.sources = PgSourceStore(state)
        self.destinations = PgDestinationStore(state)
        self.imports = PgImportJobStore(state)
        self.rejections = PgRejectionStore(state)
        self.runs = PgRunStore(state)

    def close(self) -> None:
        self.log.close()
        self._state.close()


class ClusterBackend(Backend):
    """The scale-out backend on the session's cluster: the log on NATS JetStream (a stream
    of this test's own), the state on PostgreSQL (a schema of this test's own)."""

    name = "cluster"
    durable = True
    not_yet = {
        "test_event_index": "the event index is the PostgreSQL side of #18, not built yet",
        "test_people_search": "profiles are the PostgreSQL side of #18, not built yet",
        "test_person_events": "the per-person index is the PostgreSQL side, not built yet",
        "test_profiles": "profiles are the PostgreSQL side of #18, not built yet",
        "test_segments": "segments are the PostgreSQL side of #18, not built yet",
        "test_load_stats": "warehouse load totals are the PostgreSQL side, not built yet",
        "test_regulations": "regulations and the eraser are not built on PostgreSQL yet",
        "test_retention": "retention (expire / expired) is not built on JetStream yet",
        "test_state::test_outcome_events_list_the_events_behind_each_count_newest_first":
            "per-event outcome rows are not built on PostgreSQL yet",
        "test_state::test_outcome_events_page_through_every_event_once":
            "per-event outcome rows are not built on PostgreSQL yet",
        "test_state::test_outcomes_are_part_of_the_checkpoint_transaction":
            "per-event outcome rows are not built on PostgreSQL yet",
        "test_state::test_prune_outcomes_forgets_the_oldest_rows_in_steps_and_keeps_the_counts":
            "per-event outcome rows (and their retention) are not built on PostgreSQL yet",
        "test_state::test_counters_and_cursors_survive_a_reopen":
            "it checks per-event outcome rows, not built on PostgreSQL yet",
        "test_state::test_a_sources_retention_is_kept_and_changed_and_outlives_it":
            "a source's retention setting is not stored on PostgreSQL yet",
    }

    def __init__(self, tmp_path: Path, servers: list[str] | None = None,
                 dsn: str | None = None, place: str | None = None, **_options: Any):
        super().__init__(tmp_path)
        assert servers and dsn, "the cluster backend needs the session's cluster"
        self.servers, self.dsn = servers, dsn
        #: the stream's name, which is also the schema's
        self.stream = place or f"t{uuid.uuid4().hex[:12]}"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "servers": self.servers, "dsn": self.dsn,
                "place": self.stream}

    def open(self) -> Storage:
        from millpond.storage.nats import LogSettings, open_log
        from millpond.storage.postgres import PgDedupeTable, PgState

        log = open_log(LogSettings(servers=tuple(self.servers), stream=self.stream,
                                   subject=self.stream),
                       PgDedupeTable(self.dsn, schema=self.stream))
        try:
            return _Partial(log, PgState(self.dsn, schema=self.stream))  # type: ignore[return-value]
        except BaseException:
            log.close()
            raise

    async def _js(self, work: Any) -> None:
        import nats

        nc = await nats.connect(self.servers)
        try:
            await work(nc.jetstream())
        finally:
            await nc.close()

    def remove_events(self, storage: Storage, seqs: Iterable[int]) -> None:
        async def delete(js: Any) -> None:
            for seq in seqs:
                await js.delete_msg(self.stream, seq)

        asyncio.run(self._js(delete))

    def break_checkpoints(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        # A trigger fails the dead-letter insert inside the checkpoint's transaction, after
        # the run's row was updated: a failure in the middle, as a lost server would cause.
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE FUNCTION {self.stream}.broken() RETURNS trigger AS $$"  # type: ignore[arg-type]
                         " BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql;"
                         f" CREATE TRIGGER broken BEFORE INSERT ON {self.stream}.dead_letters"
                         f" FOR EACH ROW EXECUTE FUNCTION {self.stream}.broken()")

    def cleanup(self) -> None:
        import psycopg

        async def drop(js: Any) -> None:
            import nats.js.errors

            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(self.stream)

        asyncio.run(self._js(drop))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.stream} CASCADE")  # type: ignore[arg-type]


BACKENDS: dict[str, type[Backend]] = {"sqlite": SQLiteBackend, "memory": MemoryBackend,
                                      "cluster": ClusterBackend}
#: Fixture name -> the capability its backends must have (None: any backend).
CAPABILITIES = {"backend": None, "durable_backend": "durable", "parts_backend": "scans_parts"}


def _not_yet(backend: type[Backend], item: pytest.Metafunc) -> str | None:
    module = item.module.__name__.rpartition(".")[2]
    return (backend.not_yet.get(f"{module}::{item.function.__name__}")
            or backend.not_yet.get(module))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, flag in CAPABILITIES.items():
        if fixture in metafunc.fixturenames:
            names = [n for n, b in BACKENDS.items()
                     if (flag is None or getattr(b, flag)) and not _not_yet(b, metafunc)]
            metafunc.parametrize(fixture, names, indirect=True)
            return


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which contract tests a backend does not run yet, and why (never silently)."""
    for name, backend in BACKENDS.items():
        if backend.not_yet:
            terminalreporter.write_line(f"contract suite: the {name} backend does not run "
                                        f"{len(backend.not_yet)} parts yet:")
            for what, why in backend.not_yet.items():
                terminalreporter.write_line(f"  {what}: {why}")


def _make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    options: dict[str, Any] = {}
    if request.param == "cluster":
        cluster = request.getfixturevalue("dev_cluster")
        options.update(servers=cluster.nats.urls, dsn=cluster.postgres.dsn())
    backend = BACKENDS[request.param](tmp_path, **options)
    yield backend
    backend.cleanup()


@pytest.fixture
def backend(request, tmp_path) -> Iterator[Backend]:
    yield from _make(request, tmp_path)


@pytest.fixture
def durable_backend(request, tmp_path) -> Iterator[Backend]:
    yield from _make(request, tmp_path)


@pytest.fixture
def parts_backend(request, tmp_path) -> Iterator[Backend]:
    yield from _make(request, tmp_path)


@pytest.fixture
def storage(backend) -> Iterator[Storage]:
    opened = backend.open()
    yield opened
    opened.close()
