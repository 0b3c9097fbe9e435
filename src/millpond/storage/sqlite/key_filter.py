"""The SQLite log's Bloom filter of the dedupe keys in the runs (see :mod:`.dedupe`), and
its building off the writer's thread.

Why off the writer's thread: the filter is made from the tables, a Python loop over every
stored key (about half a second per million). Built inside the writer's first commit, it
held that commit, a collector's first event after a start, for as long: 0.42 s at
845,000 keys on an idle machine, 1.7 s beside a segment preview, and an equal stall
each time the filter filled and was rebuilt four times larger, growing with the log.
Now a thread builds it from its own read snapshot while the writer goes on: until a
filter is in, every key of a commit is looked up in the runs (exact, a seek per key and
run: the cost the filter spares, never a wrong answer), and a full filter keeps
serving, with more false hits, until its larger successor is in.

Why the writer records what it moves meanwhile (:meth:`FilterKeeper.add`): the builder
sees the runs as they were when its snapshot began. A key moved into a run after that is
one the new filter must still hold, so the writer keeps the keys it moves from the
moment it asks for a build, and adds them to the built filter when it takes it in (on
its own thread, so none is missed in between).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("millpond.log")

#: The filter's least size, bits (4 MiB), and the bits per key it keeps at least: with
#: two probes, 8 bits a key is 5% false hits at worst; it is rebuilt four times as large
#: when it gets fuller than that.
FILTER_MIN_BITS = 1 << 25
FILTER_BITS_PER_KEY = 8
#: Keys the builder reads between two looks at whether it should stop.
_READ_KEYS = 65_536
#: Seconds before a failed build is tried again.
RETRY_SECONDS = 5.0


class KeyFilter:
    """A Bloom filter of 64-bit keys with two probes, taken from the key's two halves (the
    keys are already uniform hashes): "maybe there" or "surely not". It never says "surely
    not" of a key it was given, so dedupe stays exact; a false "maybe" only costs a lookup."""

    def __init__(self, bits: int):
        self.bits = bits  # a power of two, at most 2**32
        self._mask = bits - 1
        self._set = bytearray(bits // 8)
        #: Keys added (with repeats): when it passes ``bits / FILTER_BITS_PER_KEY`` the
        #: filter is too full to stay selective and is rebuilt larger.
        self.keys = 0

    @classmethod
    def sized_for(cls, keys: int) -> KeyFilter:
        bits = FILTER_MIN_BITS
        while bits < 4 * FILTER_BITS_PER_KEY * keys and bits < 1 << 32:
            bits <<= 1
        return cls(bits)

    def full(self) -> bool:
        return self.keys * FILTER_BITS_PER_KEY > self.bits and self.bits < 1 << 32

    def add(self, keys: Iterable[int]) -> None:
        bits, mask, count = self._set, self._mask, 0
        for h in keys:
            a = h & mask
            b = (h >> 32) & mask
            bits[a >> 3] |= 1 << (a & 7)
            bits[b >> 3] |= 1 << (b & 7)
            count += 1
        self.keys += count

    def hits(self, keys: Iterable[int]) -> list[int]:
        """Those of ``keys`` that may be in the filter."""
        if not self.keys:  # nothing added: every key is surely absent
            return []
        bits, mask = self._set, self._mask
        return [h for h in keys
                if bits[(a := h & mask) >> 3] >> (a & 7) & 1
                and bits[(b := (h >> 32) & mask) >> 3] >> (b & 7) & 1]


def build(conn: sqlite3.Connection, stop: threading.Event | None = None) -> KeyFilter | None:
    """The filter of every key in ``dedupe`` and the runs, read in one snapshot of
    ``conn`` (so the count it is sized by and the keys agree); None if ``stop`` was set."""
    conn.execute("BEGIN")
    try:
        held = conn.execute("SELECT (SELECT count(*) FROM dedupe)"
                            " + (SELECT coalesce(sum(keys), 0) FROM dedupe_run_list)"
                            ).fetchone()[0]
        made = KeyFilter.sized_for(held)
        rows = conn.execute("SELECT h FROM dedupe UNION ALL SELECT h FROM dedupe_runs")
        while part := rows.fetchmany(_READ_KEYS):
            if stop is not None and stop.is_set():
                return None
            made.add(h for (h,) in part)
        return made
    finally:
        conn.execute("ROLLBACK")


class FilterKeeper:
    """The writer's filter: asked for candidates (:meth:`maybe_held`) and told of every key
    moved into a run (:meth:`add`), only ever from the writer's thread; a build runs on a
    thread of its own with a connection from ``connect``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]):
        self._connect = connect
        self._filter: KeyFilter | None = None
        #: Keys moved into runs since the running build was asked for (None: no build).
        self._moved: list[int] | None = None
        self._built: KeyFilter | None = None
        self._failed_at: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start()

    def maybe_held(self, keys: list[int]) -> list[int]:
        """Those of ``keys`` the runs may hold: the filter's hits, or all of them while no
        filter is built yet."""
        self._take_in()
        if self._filter is None or self._filter.full():
            self._start()
        return keys if self._filter is None else self._filter.hits(keys)

    def add(self, keys: Iterable[int]) -> None:
        """``keys`` were moved into a run (in the writer's open transaction)."""
        keys = list(keys)
        if self._filter is not None:
            self._filter.add(keys)
        if self._moved is not None:
            self._moved.extend(keys)

    def close(self) -> None:
        """Stop a running build (it checks between reads) and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _start(self) -> None:
        if self._moved is not None or self._stop.is_set():
            return  # one is running, or closing
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return
        self._moved = []  # before the builder's snapshot begins: see the module docstring
        self._thread = threading.Thread(target=self._build, name="millpond-dedupe-filter",
                                        daemon=True)
        self._thread.start()

    def _build(self) -> None:
        started = time.perf_counter()
        try:
            conn = self._connect()
            try:
                made = build(conn, self._stop)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - logged; tried again RETRY_SECONDS later
            log.warning("the dedupe filter could not be built (%s); every key of a commit"
                        " is looked up in the stored runs until it is", exc)
            self._failed_at = time.monotonic()
            self._built = None
        else:
            if made is not None:
                log.debug("dedupe filter of %d keys built in %.2f s", made.keys,
                          time.perf_counter() - started)
            self._built = made

    def _take_in(self) -> None:
        """On the writer's thread: install a finished build, with the keys moved since it
        was asked for."""
        thread = self._thread
        if thread is None or thread.is_alive():
            return
        self._thread = None
        made, self._built = self._built, None
        moved, self._moved = self._moved, None
        if made is not None:
            made.add(moved or ())
            self._filter = made
