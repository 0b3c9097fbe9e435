"""The replay preview (dry run): what a replay would do, computed by doing it without sending.

Why the preview runs the very evaluator the replay runs (filter, triggers, age windows,
mappings, required fields, ``validate_item``): what it shows must be what happens. It
streams over the window chunk by chunk and keeps only counters and a few samples, so
memory stays flat however large the window is.

Why it is split into parts: counting does not need event-time order, so a large window
is cut into parts (``EventIndex.part_scanner()``) that worker processes tally on their
own (:class:`~millpond.workers.WorkerPool`); the tallies add up in window order. Small
windows, and indexes that cannot be read from another process, run in process (in a
worker thread: the tally is CPU work).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import msgspec

from millpond.actions import compile_trigger
from millpond.connections import config
from millpond.delivery.evaluate import Evaluator
from millpond.delivery.outcomes import Outcome
from millpond.replays.plan import FILTERED
from millpond.storage.contracts import EventIndex, PartScanner
from millpond.storage.models import Window, WindowPart
from millpond.timeutil import human_duration
from millpond.workers import Stopped, WorkerPool

#: Distinct event names / error groups kept; the rest are folded into "(other)".
MAX_KEYS = 200
SAMPLES = 3
CHUNK = 5000
#: Parts smaller than this are not worth a trip to another process.
MIN_PART_EVENTS = 50_000
#: More parts than workers, so one slow worker does not hold up the others' finish.
PARTS_PER_WORKER = 2


@dataclass(frozen=True, slots=True)
class Judge:
    """What the replay runner would do per event: its filter, then the actions."""

    filter: Callable[[dict], bool] | None
    evaluator: Evaluator


@dataclass(frozen=True, slots=True)
class PreviewJob:
    """What a worker needs to preview part of a window: plain data, so it pickles."""

    plan: dict
    type_name: str
    settings: dict
    actions: list[dict]
    #: A file that exists while the preview is wanted (see :func:`run_preview`).
    wanted: str | None = None

    def judge(self) -> Judge:
        """The replay's filter and the destination's evaluator, with mappings compiled not
        to copy: a preview only counts and never hands payloads to destination code."""
        rt = config.runtime(self.type_name, self.settings, self.actions, copy=False)
        flt = self.plan.get("filter")
        return Judge(compile_trigger(flt).matches if flt else None,
                     Evaluator(rt.dtype, rt.actions))



def _bump(counter: Counter, key: Any) -> None:
    if key in counter or len(counter) < MAX_KEYS:
        counter[key] += 1
    else:
        counter["(other)"] += 1


def _capped(counter: Counter) -> Counter:
    """Keep the MAX_KEYS most common keys and fold the rest into "(other)"."""
    if len(counter) <= MAX_KEYS:
        return counter
    other = counter.pop("(other)", 0)
    kept = Counter(dict(counter.most_common(MAX_KEYS - 1)))
    kept["(other)"] = other + sum(counter.values()) - sum(kept.values())
    return kept


class Tally:
    """Counters and samples of one part of the window; see :meth:`merged`."""

    def __init__(self) -> None:
        self.scanned = 0
        self.events = 0
        self.by_source: Counter = Counter()
        self.by_type: Counter = Counter()
        self.by_name: Counter = Counter()
        self.excluded: Counter = Counter()
        self.sends: Counter = Counter()
        self.skipped: Counter = Counter()
        self.unhandled: Counter = Counter()
        self.errors: Counter = Counter()
        self.error_samples: dict[Any, list] = {}
        self.samples: list[dict] = []

    def scan(self, chunks: Iterable[Iterable[tuple[int, bytes]]], plan: dict,
             judge: Judge) -> Tally:
        """Tally ``chunks`` of ``(seq, body)`` rows of the preview's window
        (:func:`preview_window`)."""
        for chunk in chunks:
            self.add(chunk, plan, judge)
        return self.finish()

    def finish(self) -> Tally:
        self.events = sum(self.by_source.values())
        return self

    def add(self, chunk: Iterable[tuple[int, bytes]], plan: dict, judge: Judge) -> None:
        """Why it runs the actions itself (``Evaluator.apply`` per matching action)
        rather than through ``Evaluator.decide``: it is the preview's per-event loop, and
        a ``Decision`` made per action only to be read back field by field cost a few
        percent of its time."""
        excluded = {e["id"] for e in plan["excluded_sources"]}
        decode = msgspec.json.Decoder().decode
        evaluator = judge.evaluator
        actions, apply = evaluator.actions, evaluator.apply
        keep = judge.filter
        samples = self.samples
        scanned = 0
        for seq, body in chunk:
            scanned += 1
            event = decode(body)
            src = event.get("source_id")
            if src in excluded:
                self.excluded[src] += 1
                continue
            event["seq"] = seq
            etype = event.get("type")
            self.by_source[src] += 1
            self.by_type[etype] += 1
            if etype == "track":
                _bump(self.by_name, event.get("event"))
            if keep is not None and not keep(event):
                self.skipped[("", FILTERED)] += 1
                continue
            matched = False
            for action in actions:
                if not action.trigger.matches(event):
                    continue
                matched = True
                outcome, reason, payload = apply(action, event)
                if outcome is None:
                    self.sends[action.name] += 1
                    if len(samples) < SAMPLES:
                        samples.append({"action": action.name, "seq": seq,
                                        "message_id": event.get("messageId"),
                                        "payload": payload})
                elif outcome is Outcome.SKIPPED:
                    self.skipped[(action.name, reason)] += 1
                else:
                    self._error(action.name, reason, seq, event)
            if not matched:
                self.unhandled[etype] += 1
        self.scanned += scanned

    def _error(self, action: str, reason: str, seq: int, event: dict) -> None:
        key = (action, reason)
        _bump(self.errors, key)
        group = self.error_samples.setdefault(key, []) if key in self.errors else None
        if group is not None and len(group) < SAMPLES:
            group.append({"seq": seq, "message_id": event.get("messageId"), "event": event})

    @classmethod
    def merged(cls, parts: list[Tally]) -> Tally:
        """The parts added up; samples are taken from the first parts of the window."""
        total = cls()
        for part in parts:
            total.scanned += part.scanned
            total.events += part.events
            for name in ("by_source", "by_type", "by_name", "excluded", "sends", "skipped",
                         "unhandled", "errors"):
                getattr(total, name).update(getattr(part, name))
            total.samples.extend(part.samples[:SAMPLES - len(total.samples)])
            for key, group in part.error_samples.items():
                mine = total.error_samples.setdefault(key, [])
                mine.extend(group[:SAMPLES - len(mine)])
        total.by_name = _capped(total.by_name)
        total.errors = _capped(total.errors)
        return total

    def result(self, plan: dict, source_names: dict[str, str], elapsed: float) -> dict:
        total_sends = sum(self.sends.values())
        rate = plan["rate"]
        seconds = total_sends / rate if rate else 0.0
        names = dict(source_names)
        return {
            "events": self.events,
            "by_source": {names.get(k, k): n for k, n in self.by_source.most_common()},
            "by_type": dict(self.by_type.most_common()),
            "by_event": dict(self.by_name.most_common()),
            "actions": [{"action": a, "would_send": n} for a, n in self.sends.most_common()],
            "would_send": total_sends,
            "unhandled": [{"type": t, "events": n,
                           "reason": f"no action of this destination handles {t}",
                           "message": f"{n:,} {t} events: no action of this destination "
                                      f"handles {t}"} for t, n in self.unhandled.most_common()],
            "skipped": [{"action": a or None, "reason": r, "events": n}
                        for (a, r), n in self.skipped.most_common()],
            "mapping_errors": [{"action": k[0], "reason": k[1], "events": n,
                                "samples": self.error_samples.get(k, [])}
                               for k, n in self.errors.most_common() if isinstance(k, tuple)],
            "excluded": [{**e, "events": self.excluded.get(e["id"], 0)}
                         for e in plan["excluded_sources"]],
            "samples": self.samples,
            "estimate": {"events": total_sends, "seconds": round(seconds, 3),
                         "human": human_duration(seconds), "rate": rate},
            "scan": {"scanned": self.scanned, "seconds": round(elapsed, 3),
                     "events_per_second": round(self.scanned / elapsed) if elapsed > 0
                     else None},
        }


def preview_window(plan: dict) -> Window:
    """The window a preview reads: the replay's, plus the sources it excludes (so it can
    say how many events they hold)."""
    excluded = tuple(e["id"] for e in plan["excluded_sources"])
    return Window(plan["ts_from"], plan["ts_to"], plan["max_seq"],
                  None if plan.get("all_sources") else (*plan["sources"], *excluded))


#: A stored event's ``(seq, body)``: the row :meth:`Tally.add` reads.
_SEQ_BODY = attrgetter("seq", "body")

#: Compiled evaluators of recent jobs, per worker process (a preview sends one job per part).
_JUDGES: dict[bytes, Judge] = {}


def _until(stopped: Callable[[], bool], chunks: Iterable[Any]) -> Iterator[Any]:
    """``chunks``, raising :class:`Stopped` once ``stopped()``, before the next one is
    read."""
    iterator = iter(chunks)
    while not stopped():
        chunk = next(iterator, None)
        if chunk is None:
            return
        yield chunk
    raise Stopped


def _tally_in_worker(scanner: PartScanner, job: PreviewJob, part: WindowPart) -> Tally:
    key = msgspec.json.encode((job.type_name, job.settings, job.actions,
                               job.plan.get("filter")))
    judge = _JUDGES.get(key)
    if judge is None:
        _JUDGES.clear()
        judge = _JUDGES[key] = job.judge()
    wanted = job.wanted
    chunks = scanner.scan(part, preview_window(job.plan), CHUNK)
    if wanted is not None:  # a stat per chunk of 5,000 events
        chunks = _until(lambda: not os.path.exists(wanted), chunks)
    return Tally().scan(chunks, job.plan, judge)


def _tally_parts(scanner: PartScanner, job: PreviewJob, pool: WorkerPool | None,
                 stop: threading.Event) -> Tally:
    """Blocking: split the window and tally its parts, in ``pool`` when there are several.
    Raises :class:`Stopped` soon after ``stop`` is set."""
    window = preview_window(job.plan)
    max_parts = pool.size * PARTS_PER_WORKER if pool is not None else 1
    parts = scanner.parts(window, max_parts, MIN_PART_EVENTS)
    if pool is None or len(parts) == 1:
        judge = job.judge()
        tallies = [Tally().scan(_until(stop.is_set, scanner.scan(part, window, CHUNK)),
                                job.plan, judge) for part in parts]
        return Tally.merged(tallies)
    # The workers are other processes: they learn that the preview is no longer wanted
    # from a file that is removed then (no event object crosses a process pool's pickling).
    fd, wanted = tempfile.mkstemp(prefix="millpond-preview-")
    os.close(fd)
    try:
        tallies = pool.map(_tally_in_worker,
                           [(scanner, replace(job, wanted=wanted), part) for part in parts],
                           stop=stop, on_stop=lambda: os.unlink(wanted))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(wanted)
    return Tally.merged(tallies)


async def run_preview(index: EventIndex, job: PreviewJob, source_names: dict[str, str],
                      pool: WorkerPool | None = None) -> dict:
    """Scan the window of ``job.plan`` through the destination's actions, and count.

    With a part scanner the work runs in a thread (and in ``pool`` when the window is
    large enough to split); without one the window is read here and tallied chunk by
    chunk in a thread.

    Cancelled (its client went away: :mod:`millpond.app.abandoned`), it stops within a
    chunk of each part being tallied: a thread and worker processes go on after the task
    awaiting them is cancelled, so they are told (``stop``), and the parts not started
    are dropped."""
    started = time.perf_counter()
    plan = job.plan
    scanner = index.part_scanner()
    if scanner is not None:
        stop = threading.Event()
        try:
            tally = await asyncio.to_thread(_tally_parts, scanner, job, pool, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
    else:
        judge = job.judge()
        tally = Tally()
        async for chunk in index.scan(preview_window(plan), chunk=CHUNK):
            await asyncio.to_thread(tally.add, map(_SEQ_BODY, chunk), plan, judge)
        tally = Tally.merged([tally.finish()])
    return tally.result(plan, source_names, time.perf_counter() - started)
