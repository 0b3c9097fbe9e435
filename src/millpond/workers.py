"""A pool of worker processes for CPU-bound scans that would otherwise share the server's GIL.

Why processes: a replay preview runs triggers and mappings over every event of a window,
which is pure Python work. In a thread it gets one core at best and slows down the event
loop that answers the SDKs; in processes it uses every core and leaves the server
responsive.

Why the ``forkserver`` start method: the server has threads (the log writer, uvicorn),
and forking such a process copies locks other threads may hold. The fork server is a
clean single-threaded process that imports millpond once (``preload``), so each worker
then starts in milliseconds instead of re-importing everything as ``spawn`` would.

Why each worker settles its heap first (:func:`millpond.heap.settle`, as the server
does): a worker inherits everything the preload imported (the destination catalog, the
actions' parsers and compilers; not the HTTP client, nor pyarrow or psycopg, which only
senders and loader destinations load) and then allocates per event, so without it every
full collection walked those start-up objects again; in a Mixpanel preview that was
several percent of the worker's time.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from millpond import heap

#: How often :meth:`WorkerPool.map` looks at its ``stop`` while the workers run, seconds.
STOP_POLL_SECONDS = 0.1


class Stopped(Exception):
    """Work given up before its end: the one who asked for it has gone."""


class WorkerPool:
    """Lazily started worker processes; :meth:`close` stops them (by their own PIDs).

    ``start_method`` ``"spawn"`` (with no ``preload``) suits a pool whose workers need a
    few modules only: a worker forked from the fork server carries everything the
    server preloaded for the previews. ``initializer(*initargs)`` runs first in each
    worker (by default :func:`millpond.heap.settle`)."""

    def __init__(self, workers: int | None = None, preload: Sequence[str] = (), *,
                 start_method: str = "forkserver",
                 initializer: Callable[..., object] = heap.settle,
                 initargs: tuple[Any, ...] = ()):
        self.size = max(1, workers or os.cpu_count() or 1)
        self._preload = list(preload)
        self._start_method = start_method
        self._initializer = initializer
        self._initargs = initargs
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                ctx = multiprocessing.get_context(self._start_method)
                if self._preload:
                    ctx.set_forkserver_preload(self._preload)
                self._executor = ProcessPoolExecutor(self.size, mp_context=ctx,
                                                     initializer=self._initializer,
                                                     initargs=self._initargs)
            return self._executor

    def map(self, fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]], *,
            stop: threading.Event | None = None,
            on_stop: Callable[[], None] | None = None) -> list[Any]:
        """``[fn(*args) for args in calls]`` across the workers, results in call order.

        Once ``stop`` is set, the calls not started are dropped, ``on_stop`` is called
        (to tell the running ones, which a pool cannot interrupt: a worker's work ends
        where it looks for that), and :class:`Stopped` is raised when they have ended.

        A worker that died (killed, out of memory) breaks the whole executor; the next
        call starts a fresh one, and this call raises so its caller can say what failed.
        """
        executor = self._get()
        try:
            futures: list[Future] = [executor.submit(fn, *args) for args in calls]
            while stop is not None and wait(futures, STOP_POLL_SECONDS).not_done:
                if stop.is_set():
                    for future in futures:
                        future.cancel()
                    if on_stop is not None:
                        on_stop()
                    wait(futures)
                    raise Stopped
            return [f.result() for f in futures]
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            raise

    def pids(self) -> list[int]:
        """The running workers' process ids (none before the first call)."""
        executor = self._executor
        return list(getattr(executor, "_processes", None) or ()) if executor else []

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
