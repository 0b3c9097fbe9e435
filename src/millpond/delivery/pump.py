"""The pump: one slice of the log through one destination's actions, at its rate.

Live delivery, redrives and replays are the same machine (DESIGN.md "One mechanism for
live and replay"); they differ only in what they are given:

- a :class:`~millpond.delivery.slices.Slice` (the live tail, a redrive's rows, a
  replay's event-time window), whose chunks carry each row's ledger key;
- a :class:`~millpond.delivery.sender.Deliverer`, shared per destination (rate budget,
  ``max_in_flight`` request slots, retries), a priority on it and, for a background run, a
  :class:`~millpond.delivery.share.BackgroundShare`;
- a ``persist`` function that writes a checkpoint (cursor or finished rows, counters,
  dead letters) in one transaction (:class:`~millpond.delivery.runs.Checkpoint`).

Inside, two tasks joined by a small queue: the *reader* decodes events, evaluates the
actions and fills the :class:`~millpond.delivery.batcher.Batcher`; the *sender* hands
ready batches to :class:`~millpond.delivery.inflight.OrderedLanes`, which keeps up to
twice ``max_in_flight`` of them going at once (the deliverer's slots bound the requests
actually on the wire) and never lets a batch start before an earlier one of the same
users (``Work.user``) finished. Each finished batch waits for a checkpoint that holds
its outcome (asks made while one is being written fold into one write after it), so a
crash resends at most the batches going at once, as with one request in flight it
resent at most that one. The queue is bounded, so
a destination that is down stops its own reader (its backlog stays in the log) and
nothing else.

For a destination type with ``raw_payloads`` (its requests carry payloads as they are),
each item is *packed* as it is evaluated (:meth:`~millpond.delivery.evaluate.Evaluator.evaluate`):
the payload becomes its JSON (``msgspec.Raw``) and the event just its ``seq`` and
``messageId``. Why: a pump holds a
few thousand items (a batch filling while the previous one is in flight); as dicts they
are tens of thousands of containers the cyclic GC walks again and again and that are
freed long after they left the CPU cache, which cost more than evaluating the events.
Packed, the decoded event is freed at once and the request body is a splice of bytes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import Raw

from millpond.delivery.batcher import Batch, Batcher, Work
from millpond.delivery.dead_log import DeadLetterLog
from millpond.delivery.evaluate import Evaluates
from millpond.delivery.inflight import OrderedLanes
from millpond.delivery.ledger import Ledger
from millpond.delivery.outcomes import SKIPPED, CountKey, Outcome, category, dead_letter
from millpond.delivery.screen import Screen
from millpond.delivery.sender import LIVE, Deliverer, Result, StoppedAfterSending
from millpond.delivery.share import BackgroundShare
from millpond.delivery.slices import Slice
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.models import DeadLetter

log = logging.getLogger("millpond.pumps")

#: Seconds a reader waits at the tail before checking lingering batches and checkpoints.
IDLE_WAIT = 1.0
#: Persist progress at least this often while only skips move the cursor.
CHECKPOINT_EVERY = 1.0
#: Seconds between attempts to save progress while the storage refuses writes (a full
#: disk): sending stops meanwhile, so at most one batch is delivered but unsaved.
UNAVAILABLE_WAIT = 1.0
#: Events evaluated between yields to the event loop: a few milliseconds of work, so a
#: pump catching up on a backlog never holds the collector back for long.
YIELD_EVERY = 100

#: ``(ledger key, counter deltas, new dead letters, finished keys, the keys of the events
#: finished by outcome key)`` -> one checkpoint.
Persist = Callable[[int, Counter[CountKey], list[DeadLetter], list[int],
                    dict[CountKey, list[int]]], None]


class Pump:
    """See the module docstring. ``run`` returns when a closed source is exhausted and
    everything is delivered; a live pump runs until cancelled, checkpointing on the way
    out."""

    def __init__(self, source: Slice, evaluator: Evaluates, deliverer: Deliverer,
                 batcher: Batcher, ledger: Ledger, persist: Persist, *,
                 priority: int = LIVE, only: dict[int, frozenset[str]] | None = None,
                 share: BackgroundShare | None = None,
                 on_saved: Callable[[int, Counter[CountKey]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, queue_size: int = 2,
                 dead_log: DeadLetterLog | None = None, max_in_flight: int = 1,
                 run: str = "live"):
        self.source = source
        self.evaluator = evaluator
        self.deliverer = deliverer
        self.batcher = batcher
        self.ledger = ledger
        self._persist = persist
        self._priority = priority
        self._share = share
        self._only = only
        self._on_saved = on_saved
        #: Whose items the deliverer holds while retrying: ``live`` or the replay's id.
        self.run_label = run
        #: Says in the log what each checkpoint dead-lettered (throttled; see dead_log).
        self._dead_log = dead_log
        self._clock = clock
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=queue_size)
        self._retry_save: asyncio.Task[bool] | None = None
        #: The write the next checkpoint callers wait for, and the task writing.
        self._next_write: asyncio.Future[bool] | None = None
        self._writer: asyncio.Task[None] | None = None
        #: Batches going at once (waiting for a slot, the rate, or an earlier batch).
        self._lanes = 1 if max_in_flight <= 1 else 2 * max_in_flight
        self._last_save = clock()
        self._decode = msgspec.json.Decoder().decode
        #: Why progress cannot be saved now (the storage is unavailable), or None: stats
        #: show it as the destination's error state instead of ``running``.
        self.unavailable: str | None = None

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(), name="pump-reader")
                group.create_task(self._send(), name="pump-sender")
        finally:
            await self.source.aclose()
            await asyncio.shield(self.checkpoint())
            if self._dead_log is not None:
                self._dead_log.flush(force=True)

    async def _read(self) -> None:
        batcher, ledger, queue = self.batcher, self.ledger, self._queue
        evaluate, decode, only = self.evaluator.evaluate, self._decode, self._only
        dead_log, screen = self._dead_log, self.deliverer.screen
        ordered = self._lanes > 1
        while True:
            if dead_log is not None:
                dead_log.flush()  # what earlier checkpoints held back, once it is due
            for batch in batcher.due():
                await queue.put(batch)
            if ledger.dirty and self._clock() - self._last_save >= CHECKPOINT_EVERY:
                await self.checkpoint()
            deadline = batcher.next_deadline()
            timeout = IDLE_WAIT if deadline is None else \
                min(IDLE_WAIT, max(0.0, deadline - self._clock()))
            chunk = await self.source.next_chunk(timeout)
            if chunk is None:
                break
            for i, (pos, row) in enumerate(zip(*chunk, strict=True)):
                if i and not i % YIELD_EVERY:
                    await asyncio.sleep(0)  # let the collector and other pumps run
                seq, body = row.seq, row.body
                event: dict[str, Any] = decode(body)
                event["seq"] = seq
                if screen is not None and screen.active and (reason := screen.blocked(
                        event.get("userId"), event.get("anonymousId"), seq)):
                    ledger.open(pos, 0, event.get("receivedAt"), [("", SKIPPED, reason)])
                    continue
                items, counts, dead = evaluate(event, only.get(seq) if only else None)
                ledger.open(pos, len(items), event.get("receivedAt"), counts or None,
                            dead or None)
                if items:
                    user = ""
                    if ordered:  # one batch at a time keeps every order: no user needed
                        user = event.get("userId") or event.get("anonymousId") or ""
                        if type(user) is not str:
                            user = str(user)
                    for key, work in items:
                        work.seq = pos  # the ledger's key; dead letters read the event's seq
                        work.user = user
                        for batch in batcher.add(key, work):
                            await queue.put(batch)
            await asyncio.sleep(0)
        for batch in batcher.drain():
            await queue.put(batch)
        await queue.put(None)

    async def _send(self) -> None:
        queue = self._queue
        ordered = self._lanes > 1
        async with OrderedLanes(self._lanes) as lanes:
            while (batch := await queue.get()) is not None:
                await lanes.submit({w.user for w in batch.items} if ordered else (),
                                   functools.partial(self._deliver, batch))

    async def _deliver(self, batch: Batch) -> None:
        screen = self.deliverer.screen
        if screen is not None and screen.active and not self._screen(batch, screen):
            return
        try:
            done = await self.deliverer.deliver(batch, priority=self._priority,
                                                on_retry=self._on_retry, share=self._share,
                                                run=self.run_label)
        except StoppedAfterSending as stopped:  # counted, so the final checkpoint keeps it
            self._sent(stopped.sent)
            raise
        self._sent(done.sent)
        for result in done.skipped:  # left out by the destination (a loader's screen)
            self.ledger.done(result.work.seq, (result.work.action, SKIPPED, result.reason))
        for result in done.dead:
            self._dead(result)
        # Hold delivery while progress cannot be saved: sending on would pile up
        # events delivered but not checkpointed, all sent again after a restart.
        while not await self.checkpoint() and self.unavailable is not None:
            await asyncio.sleep(UNAVAILABLE_WAIT)

    def _screen(self, batch: Batch, screen: Screen) -> bool:
        """Skip the items of people screened since the reader let them through (a
        regulation accepted meanwhile); whether any item is left to send."""
        kept: list[Work] = []
        for work in batch.items:
            event = work.event
            reason = screen.blocked(event.get("userId"), event.get("anonymousId"),
                                    event.get("seq", 0))
            if reason:
                self.ledger.done(work.seq, (work.action, SKIPPED, reason))
            else:
                kept.append(work)
        if len(kept) < len(batch.items):
            batch.items = kept
        return bool(kept)

    def _sent(self, works: list[Work]) -> None:
        if not works:
            return
        action = works[0].action
        if all(w.action == action for w in works):  # one action per request, mostly
            self.ledger.done_all([w.seq for w in works], (action, Outcome.SENT, ""))
            return
        for work in works:
            self.ledger.done(work.seq, (work.action, Outcome.SENT, ""))

    def _dead(self, result: Result) -> None:
        work = result.work
        payload = work.payload
        if isinstance(payload, Raw):  # packed: dead letters keep the payload as an object
            payload = self._decode(payload)
        letter = dead_letter(work.event, work.action, result.reason, payload, result.status,
                             result.response)
        self.ledger.done(work.seq, (work.action, Outcome.DEAD_LETTERED, category(letter)),
                         letter)

    def _on_retry(self, works: list[Work], reason: str) -> None:
        """Count the retry and save it now: while a destination is down, the sender waits
        and the reader is blocked, so no other checkpoint would show it until recovery."""
        for action, n in Counter(w.action for w in works).items():
            self.ledger.count((action, Outcome.RETRIED, ""), n)
        if self._retry_save is None or self._retry_save.done():
            self._retry_save = asyncio.create_task(self.checkpoint(), name="pump-retry-save")

    async def checkpoint(self) -> bool:
        """Persist what the ledger released (one transaction, in a worker thread); return
        once a write that began after this call has finished, with whether everything
        released so far is saved. Callers that ask while a write is under way share the
        one write after it."""
        fut = self._next_write
        if fut is None:
            fut = self._next_write = asyncio.get_running_loop().create_future()
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write(), name="pump-checkpoint")
        return await asyncio.shield(fut)

    async def _write(self) -> None:
        while (fut := self._next_write) is not None:
            self._next_write = None
            saved = False
            try:
                saved = await self._save()  # one writer: this task
            finally:
                fut.set_result(saved)

    async def _save(self) -> bool:
        if not self.ledger.dirty:
            return True
        cursor, counts, dead, finished = self.ledger.take()
        outcomes = self.ledger.take_outcomes()
        try:
            await asyncio.to_thread(self._persist, cursor, counts, dead, finished, outcomes)
        except StorageUnavailable as exc:  # the storage logs the episode, once
            self.unavailable = exc.message
            self.ledger.give_back(cursor, counts, dead, finished)
            self.ledger.give_back_outcomes(outcomes)
            return False
        except Exception:
            log.exception("could not save delivery progress; will retry")
            self.ledger.give_back(cursor, counts, dead, finished)
            self.ledger.give_back_outcomes(outcomes)
            return False
        finally:
            self._last_save = self._clock()
        self.unavailable = None
        if self._on_saved is not None:
            self._on_saved(cursor, counts)
        if dead and self._dead_log is not None:
            self._dead_log.add(dead)
        return True
