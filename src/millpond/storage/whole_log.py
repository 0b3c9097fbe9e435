"""``EventLog.read_all`` for every backend: the archived files a row group at a time,
then the rest of the log by seq.

Why one function for all: each backend's log reads its hot store its own way (SQLite,
JetStream, memory) but the order-free pass over the whole log is the same: every file
of the archive tier listed now (:meth:`~.archive.reader.ArchiveReader.scan_file`: each
row group decoded once), then the log's own :meth:`~.contracts.EventLog.read` from the
last archived seq, which also finds whatever is archived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from millpond.storage.models import StoredEvent

if TYPE_CHECKING:
    from millpond.storage.archive.reader import ArchiveReader
    from millpond.storage.contracts import EventLog


async def read_all(archive: ArchiveReader | None, log: EventLog, upto_seq: int,
                   chunk: int) -> AsyncIterator[list[StoredEvent]]:
    after = 0
    if archive is not None:
        listed = [f for f in archive.files() if f.first_seq <= upto_seq]
        for f in listed:
            rows = archive.scan_file(f, upto_seq)
            while (part := await asyncio.to_thread(next, rows, None)) is not None:
                yield part
        after = min(listed[-1].last_seq, upto_seq) if listed else 0
    while after < upto_seq:
        part = await log.read(after, chunk, upto_seq=upto_seq)
        if not part:
            break
        yield part
        after = part[-1].seq
