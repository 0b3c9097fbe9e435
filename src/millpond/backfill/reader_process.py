"""The import's reader process: parsing, event building and validation off the server's GIL.

Why a process: an import into the log does two kinds of work, turning rows into
validated event records (csv parse, type inference, the identify event, its JSON, the
collector's checks) and committing them (the log's single writer thread: row binding,
the dedupe claim, fsync). In one interpreter they take turns on the GIL and neither
runs at full speed; a thread cannot help. So the first half runs in a child process,
which streams each batch, already prepared by the sink
(:class:`~millpond.backfill.sinks.PreparingSink`), to the parent; the parent only
rebuilds the records and queues them on the log, with the runner's usual in-order
settling and checkpoints. Only sinks that prepare records use it: an HTTP import is
bound by the server it talks to, so the HTTP sink keeps the simpler in-process reader.
The log sink's preparer takes each batch in chunks of
:data:`~millpond.backfill.batching.CHUNK_EVENTS` as the batch is cut, so an event is
validated and freed while still in the CPU's cache: a whole 5,000-event batch (some 10 MB
of dicts and strings) prepared and freed at once cost about 1 µs a row more, in cache misses.

How: a ``multiprocessing`` *spawn* child (the server is multi-threaded, and a forked
copy of a process whose other threads hold locks can deadlock), and a one-way pipe
carrying one msgspec-msgpack message per batch. The pipe is the back-pressure: the
child blocks on a full pipe while the parent has ``max_in_flight`` batches committing,
so memory stays at a few batches whatever the file's size.

Ending: the child is stopped and reaped whenever the parent stops reading, for any
reason (finished, a failed batch, a cancelling progress callback, an exception); it is
a daemon (terminated if the parent's interpreter exits) and it dies on its next write
if the parent vanished. It ignores SIGINT: Ctrl-C in a terminal reaches the whole
process group, and the parent decides how the import stops. An exception raised in the
child is re-raised in the parent as the same exception (same type, same message), with
the child's traceback as a note; if the child disappears without a word (killed, out of
memory), :class:`ReaderFailed` says how it ended.

As with anything started by ``spawn``, the child imports the parent's ``__main__``
module again, so a script that calls ``run_import`` with a log sink must keep its
top-level work under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from millpond.backfill.batching import Batch, ChunkPreparer, End, Item
from millpond.backfill.model import RowError
from millpond.backfill.reading import ReadSpec, open_batches
from millpond.backfill.rows import StreamStats

try:
    import fcntl
except ImportError:  # not POSIX: the pipe keeps its default size
    fcntl = None  # type: ignore[assignment]

Preparer = Callable[[list[dict[str, Any]], list[bytes]], Any]

_ITEMS, _ERROR = 0, 1
#: Rejected rows the child collects before sending them without a batch (a long bad run).
MAX_HELD_REJECTIONS = 4096
#: Allocations between two young-generation collections in the child (default: 700).
_GC_THRESHOLD = 50_000
#: The pipe's buffer: the child can run this far ahead of the parent (beyond one batch).
_PIPE_BYTES = 1024 * 1024
#: How long a child that was told to stop may take to exit before it is killed.
_STOP_TIMEOUT = 5.0


class ReaderFailed(Exception):
    """The reader process ended without finishing or explaining (killed, crashed)."""


def _child_main(conn: Connection, spec: ReadSpec, prepare: Preparer) -> None:
    """The child's whole life: read ``spec``'s batches, prepare each, send it down ``conn``.

    A message is ``[_ITEMS, rejections, batch, end, blank, skipped, bytes_read]``:
    the runner's rejections since the previous message, then at most one batch
    (``[rows, through, blank, prepared]``) or the end (``through``), then the stream's
    counters. A message with neither is a progress tick (skipping) or a full load of
    rejections. An exception ends the stream with ``[_ERROR, pickled, text, traceback]``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every row allocates a few dicts and lists that refcounting frees at once; with the
    # default thresholds the cyclic collector runs every few hundred rows for nothing
    # (10-15% of the child's time). Cycles are still collected, just less often.
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, 20, 100)
    encode = msgspec.msgpack.Encoder().encode
    stats = StreamStats()
    rejections: list[RowError] = []
    bytes_read: Callable[[], int] = lambda: 0  # noqa: E731 - replaced once the file is open

    def send(batch: Any = None, end: int | None = None) -> None:
        conn.send_bytes(encode((_ITEMS, rejections, batch, end, stats.blank, stats.skipped,
                                bytes_read())))
        rejections.clear()

    stats.on_skip = send
    # A preparer that takes a batch in chunks gets each batch's events as they are cut.
    chunks = prepare if isinstance(prepare, ChunkPreparer) else None
    try:
        with open_batches(spec, stats, chunks) as (items, bytes_read):
            for item in items:
                if type(item) is RowError:
                    rejections.append(item)
                    if len(rejections) >= MAX_HELD_REJECTIONS:
                        send()
                elif type(item) is Batch:
                    prepared = (item.prepared if chunks is not None
                                else prepare(item.events, item.encoded))  # type: ignore[arg-type]
                    send((item.rows, item.through, item.blank, prepared))
                else:
                    send(end=item.through)  # type: ignore[union-attr]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped reading: nobody is left to tell
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        with contextlib.suppress(OSError):
            conn.send_bytes(encode((_ERROR, _pickled(exc), f"{type(exc).__name__}: {exc}",
                                    traceback.format_exc())))
    finally:
        conn.close()


def _pickled(exc: BaseException) -> bytes | None:
    """The exception as the parent can rebuild it, or None when it cannot be."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - not every exception survives pickling
        return None
    return data


class ReaderProcess:
    """The parent's end: starts the child, yields its items, and always stops it.

    Iterating yields what :func:`~millpond.backfill.batching.cut_batches` would in the
    same process (batches carry ``prepared`` instead of events), while ``stats`` and
    :meth:`bytes_read` follow the child's counters. Use as a context manager.
    """

    def __init__(self, spec: ReadSpec, prepare: Preparer, stats: StreamStats):
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe(duplex=False)
        _widen(self._conn)
        self._process = context.Process(target=_child_main, args=(child_conn, spec, prepare),
                                        name="millpond-import-reader", daemon=True)
        try:
            self._process.start()
        except BaseException:
            self._conn.close()
            raise
        finally:
            child_conn.close()  # the child has its own copy; EOF must mean the child is gone
        self.pid = self._process.pid
        self._stats = stats
        self._bytes = 0
        self._finished = False

    def bytes_read(self) -> int:
        return self._bytes

    def __iter__(self) -> Iterator[Item]:
        decode = msgspec.msgpack.Decoder().decode
        stats = self._stats
        while True:
            try:
                raw = self._conn.recv_bytes()
            except (EOFError, OSError):  # OSError: the child died in the middle of a message
                raise ReaderFailed(self._how_it_ended()) from None
            message = decode(raw)
            if message[0] == _ERROR:
                self._finished = True
                raise _rebuild(*message[1:])
            _, rejections, batch, end, blank, skipped, self._bytes = message
            ticked = skipped != stats.skipped
            stats.blank, stats.skipped = blank, skipped
            for rejection in rejections:
                yield RowError(*rejection)
            if batch is not None:
                rows, through, batch_blank, prepared = batch
                yield Batch(rows, through, batch_blank, prepared=prepared)
            elif end is not None:
                self._finished = True
                yield End(end)
                return
            elif ticked and stats.on_skip is not None:
                stats.on_skip()

    def _how_it_ended(self) -> str:
        self._process.join(_STOP_TIMEOUT)
        code = self._process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"the import's reader process stopped unexpectedly ({how})"

    def close(self) -> None:
        """Stop the child (at once unless it has finished) and reap it."""
        self._conn.close()
        process = self._process
        if not self._finished and process.exitcode is None:
            process.terminate()
        process.join(_STOP_TIMEOUT)
        if process.exitcode is None:
            process.kill()
            process.join()
        process.close()

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _widen(conn: Any) -> None:  # Any: typeshed types a Pipe's ends per platform
    """Give the pipe a 1 MiB buffer (Linux; the default 64 KiB means ~50 wake-ups a batch)."""
    if fcntl is None:
        return
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or above pipe-max-size
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _rebuild(pickled: bytes | None, text: str, child_traceback: str) -> BaseException:
    exc: BaseException = RuntimeError(text)
    if pickled is not None:
        with contextlib.suppress(Exception):  # checked in the child; else the text will do
            exc = pickle.loads(pickled)
    exc.add_note(f"raised in the import's reader process:\n{child_traceback}")
    return exc
