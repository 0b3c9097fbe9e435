"""The log's contract, so the embedded SQLite log and later scale-out backends are swappable."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import msgspec

from millpond.errors import Overloaded


class NewEvent(msgspec.Struct, array_like=True, gc=False):
    """One validated message ready to append. ``body`` is its final JSON without ``seq``.

    A msgspec Struct rather than a dataclass: it is built once per event on the hot
    path, where a Struct is cheaper, and a batch of them crosses a process boundary (an
    import's reader process, see ``millpond.backfill.reader_process``) as one msgpack
    array of arrays that decodes straight into NewEvents. It holds no containers, so
    the cyclic garbage collector need not track it (``gc=False``).

    ``dedupe_key``, when set, must be ``dedupe_hash(source_id, message_id)``
    (:mod:`millpond.log.dedupe`): a producer that has a core to spare (an import's reader
    process) computes it there, and the log's writer computes the missing ones itself.
    """

    source_id: str
    type: str
    message_id: str
    event_name: str | None
    user_id: str | None
    anonymous_id: str | None
    ts_ms: int
    received_ms: int
    body: bytes
    dedupe_key: int | None = None


@dataclass(slots=True)
class NewRejection:
    """A message refused inside an accepted request, kept so the owner can see why."""

    source_id: str
    index: int
    code: str
    reason: str
    field: str | None
    received_ms: int
    body: bytes


@dataclass(slots=True)
class AppendResult:
    """What happened to each event of one append, in order: its ``seq`` or ``None`` (duplicate)."""

    seqs: list[int | None]

    @property
    def stored(self) -> int:
        return sum(1 for s in self.seqs if s is not None)

    @property
    def duplicates(self) -> int:
        return sum(1 for s in self.seqs if s is None)


@dataclass(frozen=True, slots=True)
class WindowPart:
    """A piece of an event-time window (``after_seq < seq <= upto_seq``) that a reader can
    scan on its own, so order-free work over a window (a replay preview) can be spread
    over processes. ``dense`` says the window holds most rows of the range: reading rows
    in seq order and skipping the few outside is then cheaper than the time index."""

    after_seq: int
    upto_seq: int
    dense: bool = False


@dataclass(slots=True)
class EventQuery:
    """Filters for reading the log; every bound is optional. Times are Unix milliseconds."""

    source_ids: list[str] | None = None
    types: list[str] | None = None
    event_name: str | None = None
    user_id: str | None = None
    #: Events whose userId or anonymousId is one of these: a person's activity log, read
    #: in one pass whatever the number of the person's ids.
    person_ids: list[str] | None = None
    ts_from: int | None = None
    ts_to: int | None = None
    received_from: int | None = None
    received_to: int | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    descending: bool = False
    limit: int = 100
    extra: dict = field(default_factory=dict)


class EventLog(ABC):
    """An append-only, deduplicating event log.

    Guarantees every implementation gives:
    - ``append`` returns only after the events are durable (they survive a process crash);
    - a message whose ``messageId`` the same source already stored is not stored again
      (its slot in :class:`AppendResult` is ``None``), so SDK retries are idempotent;
    - ``seq`` increases strictly in commit order and is never reused.
    """

    @abstractmethod
    async def append(self, events: list[NewEvent],
                     rejections: list[NewRejection] = ()) -> AppendResult:
        """Durably store ``events`` (and ``rejections``) in one group commit; raises Overloaded."""

    @abstractmethod
    def append_sync(self, events: list[NewEvent],
                    rejections: list[NewRejection] = ()) -> AppendResult:
        """Blocking twin of :meth:`append` for threads and tools outside the event loop."""

    def submit(self, events: list[NewEvent],
               rejections: list[NewRejection] = ()) -> Future[AppendResult]:
        """Queue ``events`` (and ``rejections``) for :meth:`append` and return without waiting.

        The future resolves exactly as :meth:`append_sync` would return: only once the
        events are durable, with the same dedupe; it holds the exception if the commit
        failed. Overloaded is raised here, at once, when the log cannot queue more.
        Lets a producer prepare its next batch while this one commits. This default
        commits before returning (an already resolved future); backends override it.
        """
        future: Future[AppendResult] = Future()
        try:
            future.set_result(self.append_sync(events, rejections))
        except Overloaded:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed commit is the future's outcome
            future.set_exception(exc)
        return future

    @abstractmethod
    def query(self, q: EventQuery) -> list[bytes]:
        """Stored events matching ``q`` as JSON bytes (with ``seq``), ordered by ``seq``."""

    @abstractmethod
    def find_message(self, source_id: str, message_id: str) -> bytes | None:
        """The stored event (JSON with ``seq``) a source sent with this ``messageId``."""

    @abstractmethod
    def read_after(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """The next ``limit`` events after ``after_seq`` in arrival order: the pumps' feed."""

    @abstractmethod
    def read_range(self, after_seq: int, until_seq: int,
                   types: tuple[str, ...]) -> list[tuple[int, bytes]]:
        """Events with ``after_seq < seq <= until_seq`` of the given types, in seq order.

        For followers that need a few types out of a busy log (profiles): the filter runs
        inside the store instead of decoding every event.
        """

    @abstractmethod
    def scan_window(self, ts_from: int, ts_to: int, max_seq: int | None,
                    batch: int = 5000, *, source_ids: tuple[str, ...] | None = None,
                    after: tuple[int, int] | None = None,
                    ) -> Iterator[list[tuple[int, int, bytes]]]:
        """Events with ``ts_from <= ts < ts_to`` (and ``seq <= max_seq``) in event-time order,
        as (ts, seq, body) chunks. ``source_ids`` keeps only those sources (an empty tuple:
        nothing); ``after`` resumes strictly after that (ts, seq), as a replay's cursor."""

    def count_window(self, ts_from: int, ts_to: int, max_seq: int | None, *,
                     source_ids: tuple[str, ...] | None = None) -> int:
        """How many events :meth:`scan_window` would yield for the same arguments."""
        return sum(len(chunk) for chunk in self.scan_window(
            ts_from, ts_to, max_seq, 20_000, source_ids=source_ids))

    def window_parts(self, ts_from: int, ts_to: int, max_seq: int | None, *,
                     max_parts: int = 1, min_events: int = 1) -> list[WindowPart]:
        """Split a window into at most ``max_parts`` parts of about ``min_events`` or more.

        This default does not split (one part over every seq); backends that can say how
        large a window is override it."""
        upto = self.last_seq() if max_seq is None else min(max_seq, self.last_seq())
        return [WindowPart(0, upto)]

    def scan_part(self, part: WindowPart, ts_from: int, ts_to: int, batch: int = 5000, *,
                  source_ids: tuple[str, ...] | None = None,
                  ) -> Iterator[list[tuple[int, bytes]]]:
        """The window's events inside ``part`` as (seq, body) chunks, in no promised order."""
        for chunk in self.scan_window(ts_from, ts_to, part.upto_seq, batch,
                                      source_ids=source_ids):
            rows = [(seq, body) for _ts, seq, body in chunk if seq > part.after_seq]
            if rows:
                yield rows

    def reader_factory(self) -> Callable[[], EventLog] | None:
        """A picklable function that opens this log for reading in another process, or
        None when the backend cannot be read from elsewhere (then work stays in process)."""
        return None

    def window_chunk(self, ts_from: int, ts_to: int, max_seq: int | None, limit: int, *,
                     source_ids: tuple[str, ...] | None = None,
                     after: tuple[int, int] | None = None) -> list[tuple[int, int, bytes]]:
        """The first chunk (at most ``limit`` rows) ``scan_window`` would yield: what a
        replay reads ahead in a worker thread, one chunk at a time. Backends override it
        when they can build a chunk without holding the GIL row by row."""
        scan = self.scan_window(ts_from, ts_to, max_seq, limit, source_ids=source_ids,
                                after=after)
        try:
            return next(scan, [])
        finally:
            scan.close()

    @abstractmethod
    def last_seq(self) -> int:
        """The highest committed ``seq`` (0 for an empty log)."""

    @abstractmethod
    async def wait_for(self, after_seq: int, timeout: float) -> int:
        """Wait until an event after ``after_seq`` is committed (or timeout); return last seq."""

    @abstractmethod
    def rejections(self, source_id: str | None, after_id: int | None, limit: int) -> list[dict]:
        """Stored rejections, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Finish in-flight commits, then release the store."""
