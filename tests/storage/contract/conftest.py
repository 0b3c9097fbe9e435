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
    #: Has an archive tier: :meth:`open_archived` opens it with one, whose
    #: ``storage.archive.seal_once()`` moves the next sealed range to a Parquet file.
    archives = False
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

    def open_archived(self, range_size: int) -> Storage:
        """The backend on this place with an archive tier of ``range_size`` events per
        file (sealed only by ``storage.archive.seal_once()`` calls of the test, or by the
        backend's own archiver)."""
        raise NotImplementedError

    def archive_bytes(self, storage: Storage) -> list[bytes]:
        """The bytes of every file in the archive's place (listed or not)."""
        place = storage.archive.place  # type: ignore[attr-defined]
        out = []
        for name in sorted(place.names()):
            handle = place.open(name)
            if isinstance(handle, Path):
                out.append(handle.read_bytes())
            else:
                with handle:
                    out.append(handle.read())
        return out

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
    archives = True

    def open_archived(self, range_size: int) -> Storage:
        # the archive in the data dir: the embedded store's default place
        return open_storage(StorageConfig(data_dir=str(self.tmp_path / "data"),
                                          archive_range=range_size))

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


class ClusterBackend(Backend):
    """The scale-out backend on the session's cluster: the log on NATS JetStream (a stream
    of this test's own), the state on PostgreSQL (a schema of this test's own)."""

    name = "cluster"
    durable = True
    archives = True

    #: The session's cluster (servers, dsn), for a backend made by a test without them
    #: (``type(backend)(path)``: a second place beside the test's).
    session: tuple[list[str], str] | None = None
    #: Places made that way, removed with the test's own backend.
    extra: list[ClusterBackend] = []

    def __init__(self, tmp_path: Path, servers: list[str] | None = None,
                 dsn: str | None = None, place: str | None = None,
                 s3: str | None = None, bucket: str | None = None, **_options: Any):
        super().__init__(tmp_path)
        if not (servers and dsn):
            assert self.session, "the cluster backend needs the session's cluster"
            servers, dsn = self.session
            ClusterBackend.extra.append(self)
        self.servers, self.dsn = servers, dsn
        #: the session's S3 endpoint and a bucket of this test's own (archive tests)
        self.s3, self.bucket = s3, bucket
        #: the stream's name, which is also the schema's
        self.stream = place or f"t{uuid.uuid4().hex[:12]}"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "servers": self.servers, "dsn": self.dsn,
                "place": self.stream, "s3": self.s3, "bucket": self.bucket}

    def open(self) -> Storage:
        from millpond.storage.cluster import open_cluster_storage

        return open_cluster_storage(tuple(self.servers), self.dsn, self.stream)

    def open_archived(self, range_size: int) -> Storage:
        from millpond.storage.cluster import open_cluster_storage

        assert self.s3 and self.bucket, "archive tests get the session's S3 (archive_backend)"
        return open_cluster_storage(tuple(self.servers), self.dsn, self.stream,
                                    archive=f"s3://{self.bucket}/log",
                                    archive_endpoint=self.s3, archive_range=range_size)

    async def _js(self, work: Any) -> None:
        import nats

        nc = await nats.connect(self.servers)
        try:
            await work(nc.jetstream())
        finally:
            await nc.close()

    def remove_events(self, storage: Storage, seqs: Iterable[int]) -> None:
        # As retention does in this backend: from the stream, then from the index.
        import psycopg

        gone = list(seqs)

        async def delete(js: Any) -> None:
            for seq in gone:
                await js.delete_msg(self.stream, seq)

        asyncio.run(self._js(delete))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {self.stream}.events WHERE seq = ANY(%s)",  # type: ignore[arg-type]
                         (gone,))

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
CAPABILITIES = {"backend": None, "durable_backend": "durable", "parts_backend": "scans_parts",
                "archive_backend": "archives"}


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


def _make(request: pytest.FixtureRequest, tmp_path: Path,
          archive: bool = False) -> Iterator[Backend]:
    options: dict[str, Any] = {}
    if request.param == "cluster":
        cluster = request.getfixturevalue("dev_cluster")
        options.update(servers=cluster.nats.urls, dsn=cluster.postgres.dsn())
        if archive:  # a bucket of this test's own on the session's S3
            bucket = f"lake-{uuid.uuid4().hex[:12]}"
            cluster.s3.client().create_bucket(Bucket=bucket)
            options.update(s3=cluster.s3.endpoint, bucket=bucket)
        ClusterBackend.session = (cluster.nats.urls, cluster.postgres.dsn())
    backend = BACKENDS[request.param](tmp_path, **options)
    yield backend
    backend.cleanup()
    while ClusterBackend.extra:
        ClusterBackend.extra.pop().cleanup()


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
def archive_backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    """A backend with an archive tier; S3's credentials in the environment, where the
    archive reads them (moto takes any)."""
    from millpond.devcluster.s3 import ACCESS_KEY, REGION, SECRET_KEY

    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY), ("AWS_REGION", REGION)):
        monkeypatch.setenv(name, value)
    yield from _make(request, tmp_path, archive=True)


@pytest.fixture
def storage(backend) -> Iterator[Storage]:
    opened = backend.open()
    yield opened
    opened.close()
