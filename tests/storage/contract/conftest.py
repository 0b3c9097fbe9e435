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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from millpond.storage import Storage, StorageConfig, open_storage


class Backend:
    """One backend under test, on its own place (``tmp_path``)."""

    name = ""
    #: What ``append`` acknowledged survives the process (and a reopen).
    durable = False
    #: ``index.part_scanner()`` returns a scanner for other processes.
    scans_parts = False

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

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


BACKENDS: dict[str, type[Backend]] = {"sqlite": SQLiteBackend, "memory": MemoryBackend}
#: Fixture name -> the capability its backends must have.
CAPABILITIES = {"durable_backend": "durable", "parts_backend": "scans_parts"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, flag in CAPABILITIES.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, [n for n, b in BACKENDS.items() if getattr(b, flag)],
                                 indirect=True)


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def durable_backend(request, tmp_path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def parts_backend(request, tmp_path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def storage(backend) -> Iterator[Storage]:
    opened = backend.open()
    yield opened
    opened.close()
