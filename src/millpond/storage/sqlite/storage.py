"""All the SQLite stores of one data dir, opened together (see the package docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from millpond import metrics
from millpond.storage.archive.place import open_place
from millpond.storage.health import StorageHealth
from millpond.storage.models import Tier
from millpond.storage.sqlite.activity import PersonIndex
from millpond.storage.sqlite.archive import SQLiteArchive
from millpond.storage.sqlite.connection import StateDB
from millpond.storage.sqlite.destinations import SQLiteDestinationStore
from millpond.storage.sqlite.eraser import SQLiteEraser
from millpond.storage.sqlite.imports import SQLiteImportJobStore
from millpond.storage.sqlite.index import SQLiteEventIndex
from millpond.storage.sqlite.loadstats import SQLiteLoadStatsStore
from millpond.storage.sqlite.log import SQLiteEventLog
from millpond.storage.sqlite.profiles import SQLiteProfileStore
from millpond.storage.sqlite.regulations import SQLiteRegulationStore
from millpond.storage.sqlite.rejections import SQLiteRejectionStore
from millpond.storage.sqlite.runs import SQLiteRunStore
from millpond.storage.sqlite.segments import SQLiteSegmentStore
from millpond.storage.sqlite.sources import SQLiteSourceStore
from millpond.storage.sqlite.time_index import part_size

FILES = {"log": "log.db", "state": "state.db", "profiles": "profiles.db",
         "activity": "activity.db", "segments": "segments.db"}


class SQLiteStorage:
    """:class:`~millpond.storage.contracts.Storage` on one data dir.

    ``synchronous`` is the log's durability (``FULL``: an acknowledged event survives a
    power loss; ``NORMAL``: a process crash). ``max_pending`` and ``max_group`` bound the
    log's queue and its group commits; ``on_commit(events, seconds)`` hears of each commit
    (the server's metrics by default)."""

    def __init__(self, data_dir: str | Path, synchronous: str = "FULL", *,
                 max_pending: int = 200_000, max_group: int = 20_000,
                 on_commit: Callable[[int, float], None] | None = metrics.record_commit,
                 archive: str = "", archive_endpoint: str = "", archive_range: int = 0):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        #: Whether writes succeed now (a full disk: one episode, logged once; stats).
        self.health = StorageHealth()
        self._state = StateDB(self.data_dir / FILES["state"], self.health)
        self.sources = SQLiteSourceStore(self._state)
        self.destinations = SQLiteDestinationStore(self._state)
        self.runs = SQLiteRunStore(self._state)
        self.load_stats = SQLiteLoadStatsStore(self._state)
        self.imports = SQLiteImportJobStore(self._state)
        self.rejections = SQLiteRejectionStore(self._state)
        self.regulations = SQLiteRegulationStore(self._state)
        self.eraser = SQLiteEraser({name: self.data_dir / file
                                    for name, file in FILES.items()})
        self._on_commit = on_commit
        self._people: PersonIndex | None = None
        self.archive: SQLiteArchive | None = None
        self.log = SQLiteEventLog(self.data_dir / FILES["log"], synchronous=synchronous,
                                  max_pending=max_pending, max_group=max_group,
                                  on_commit=self._committed, health=self.health,
                                  part_seqs=part_size(archive_range))
        #: The archive tier: sealed ranges of the log as Parquet (None: off).
        if archive_range > 0:
            place = open_place(archive or str(self.data_dir / "archive"), archive_endpoint)
            self.archive = self.log.open_archive(place, archive_range)
            self.eraser.archive = self.archive
        self._people = PersonIndex(self.data_dir / FILES["activity"], self.log)
        if self.archive is not None:
            self.archive.before_seal.append(self._people.catch_up)
            self.archive.start()
        self.index = SQLiteEventIndex(self.log, self._people)
        self.profiles = SQLiteProfileStore(self.data_dir / FILES["profiles"],
                                           health=self.health)
        self.segments = SQLiteSegmentStore(self.data_dir / FILES["segments"])
        self._closed = False

    def _committed(self, events: int, seconds: float) -> None:
        """After each log commit (on the writer thread): the hook, a nudge for the
        per-person index's follower, and one for the sealer when a range is full."""
        if self._on_commit is not None:
            self._on_commit(events, seconds)
        if self._people is not None:
            self._people.nudge()
        if self.archive is not None:
            self.archive.nudge(self.log.last_seq())

    def sizes(self) -> dict[str, int]:
        """Bytes on disk per file (``log.db``, ``state.db``, ``profiles.db``,
        ``activity.db``, ``segments.db``), its write-ahead log included."""
        out: dict[str, int] = {}
        for file in FILES.values():
            size = 0
            for suffix in ("", "-wal"):
                with contextlib.suppress(OSError):
                    size += (self.data_dir / f"{file}{suffix}").stat().st_size
            out[file] = size
        if self.archive is not None:
            out["archive"] = sum(f.bytes for f in self.archive.files())
        return out

    def tiers(self) -> list[Tier]:
        archived = self.archive.archived_upto() if self.archive is not None else 0
        with self.log.reading() as conn:
            # After the archived ranges: a seal deletes a listed range's rows afterwards.
            events, ts_min, ts_max = conn.execute(
                "SELECT count(*), min(ts), max(ts) FROM events WHERE seq > ?",
                (archived,)).fetchone()
            pages = [conn.execute(f"PRAGMA {p}").fetchone()[0]
                     for p in ("page_size", "page_count", "freelist_count")]
        # Pages in use: those an archived range freed are reused by new events (the file
        # does not grow again until they are), so they are not the hot tier's.
        used = pages[0] * (pages[1] - pages[2])
        out = [Tier("hot", used, events, ts_min, ts_max)]
        if self.archive is not None:
            span = self.archive.span()
            out.append(Tier("archive", 0, 0, None, None) if span is None
                       else Tier("archive", span[1], span[0], span[2], span[3]))
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.profiles.close()
        self.segments.close()
        self._state.close()
        if self._people is not None:
            self._people.close()
        self.log.close()

