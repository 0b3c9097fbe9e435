"""The memory log read by event time and by attributes: filters over a snapshot of its rows."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from millpond.storage.memory.log import MemoryEventLog, Row
from millpond.storage.models import EventQuery, StoredEvent, Window, WindowCursor


def _in_window(row: Row, window: Window) -> bool:
    e = row.event
    return (window.ts_from <= e.ts_ms < window.ts_to
            and (window.max_seq is None or e.seq <= window.max_seq)
            and (window.source_ids is None or row.source_id in window.source_ids))


class MemoryEventIndex:
    """:class:`~millpond.storage.contracts.EventIndex` over a :class:`MemoryEventLog`.

    A scan sorts the window once, when it starts: events appended meanwhile are not seen
    (the contract allows either)."""

    def __init__(self, log: MemoryEventLog):
        self._log = log

    async def scan(self, window: Window, *, after: WindowCursor | None = None,
                   chunk: int = 2000) -> AsyncGenerator[list[StoredEvent]]:
        events = sorted((r.event for r in self._log.rows() if _in_window(r, window)),
                        key=lambda e: (e.ts_ms, e.seq))
        if after is not None:
            events = [e for e in events if (e.ts_ms, e.seq) > (after.ts, after.seq)]
        for start in range(0, len(events), chunk):
            yield events[start:start + chunk]

    async def count(self, window: Window) -> int:
        return sum(1 for r in self._log.rows() if _in_window(r, window))

    async def query(self, q: EventQuery) -> list[StoredEvent]:
        def keep(r: Row) -> bool:
            e = r.event
            return ((not q.source_ids or r.source_id in q.source_ids)
                    and (not q.types or r.type in q.types)
                    and (q.event_name is None or r.event_name == q.event_name)
                    and (q.user_id is None or r.user_id == q.user_id)
                    and (q.ts_from is None or e.ts_ms >= q.ts_from)
                    and (q.ts_to is None or e.ts_ms < q.ts_to)
                    and (q.received_from is None or r.received_ms >= q.received_from)
                    and (q.received_to is None or r.received_ms < q.received_to)
                    and (q.after_seq is None or e.seq > q.after_seq)
                    and (q.before_seq is None or e.seq < q.before_seq))

        rows = self._log.rows()
        if q.descending:
            rows.reverse()
        out: list[StoredEvent] = []
        for row in rows:
            if len(out) >= q.limit:
                break
            if keep(row):
                out.append(row.event)
        return out

    async def person_events(self, ids: Sequence[str], *, before: WindowCursor | None = None,
                            limit: int = 50) -> list[StoredEvent]:
        """A scan of every row: this backend is for tests, where logs are small."""
        events = self._of_person(ids)
        if before is not None:
            events = [e for e in events if (e.ts_ms, e.seq) < (before.ts, before.seq)]
        return events[:limit]

    async def count_person_events(self, ids: Sequence[str]) -> int:
        return len(self._of_person(ids))

    def _of_person(self, ids: Sequence[str]) -> list[StoredEvent]:
        wanted = set(ids)
        return sorted((r.event for r in self._log.rows()
                       if (r.user_id if r.user_id is not None else r.anonymous_id)
                       in wanted),
                      key=lambda e: (e.ts_ms, e.seq), reverse=True)

    def part_scanner(self) -> None:
        """None: another process cannot see this process's memory."""
        return None
