"""The console's one door into the server: every read and write the pages do is here.

Why one module: the console must use the very service objects the admin API uses
(:class:`~millpond.app.services.Services`: sources, pumps, replays, imports,
profiles and log), never a
second implementation; and those objects are being reshaped (the storage seam, then
``delivery/`` + ``destinations/`` + ``replays/``). Pages and templates only see the
plain dicts this adapter returns, shaped like the admin API's JSON answers, so adapting
to new service shapes touches this file alone.

Everything that may block (SQLite reads, file writes) runs in a worker thread, so a
page never stalls the event loop the collector shares.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from millpond.actions import compile_trigger
from millpond.actions.fql import TriggerSyntaxError
from millpond.actions.fql.explain import explain_trigger
from millpond.backfill import ImportInputError, ImportOptions
from millpond.backfill.jobs import CANCEL_WAIT, MAX_UPLOAD_BYTES
from millpond.connections import config as pump_config
from millpond.connections.behind import events_behind
from millpond.connections.lookup import event_at, find_event
from millpond.connections.present import dead_letter_dict, destination_dict
from millpond.connections.tester import try_event
from millpond.destinations import catalog
from millpond.errors import BadRequest, NotFound
from millpond.profiles.service import people_search, person_view
from millpond.sources.service import source_dict
from millpond.sources.snippets import snippet
from millpond.storage.models import DeadLetterState, EventQuery, StoredEvent, WindowCursor
from millpond.storage.status import tier_status
from millpond.timeutil import iso_to_seconds

if TYPE_CHECKING:
    from millpond.app.services import Services

SDKS = ("segment", "customerio", "rudderstack")
#: Seconds the Overview's storage line may be old: counting the hot tier's events is a
#: scan of the log's table (0.1-0.3 s on 1,000,000 events), which no page waits for.
TIERS_EVERY = 30.0
#: Seconds a count of the tiers may take before pages stop waiting for one.
SLOW_COUNT = 0.1
_decode = msgspec.json.Decoder().decode


def _event(stored: StoredEvent) -> dict:
    """A stored event as the API shows it (with ``seq``)."""
    return _decode(stored.json())


class ConsoleServices:
    """The server's services, as the console needs them. One per server."""

    def __init__(self, mp: Services):
        self.mp = mp
        #: Arrival bounds already found: (instant, seq). Received times grow with seq,
        #: so the seq of a past instant never changes once the log has passed it.
        self._seq_at_cache: dict[float, int] = {}
        #: The storage tiers as last counted (when, how long it took, tiers), and the
        #: background recount.
        self._tiers: tuple[float, float, list[dict]] | None = None
        self._tiers_task: asyncio.Task[None] | None = None

    # -- the log ----------------------------------------------------------------------------
    def last_seq(self) -> int:
        return self.mp.log.last_seq()

    async def wait(self, after_seq: int, timeout: float) -> int:
        return await self.mp.log.wait(after_seq, timeout)

    async def read_after(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Raw (seq, body) rows: the Debugger decodes only what it shows."""
        return [(e.seq, e.body) for e in await self.mp.log.read(after_seq, limit)]

    async def event_at(self, seq: int) -> dict | None:
        return await event_at(self.mp.log, seq)

    async def find_event(self, message_id: str) -> dict | None:
        ids = [s.id for s in self.mp.sources.list()]
        return await find_event(self.mp.log, ids, message_id)

    async def recent_events(self, source_id: str | None = None, limit: int = 20,
                            before_seq: int | None = None) -> list[dict]:
        q = EventQuery(source_ids=[source_id] if source_id else None, descending=True,
                       limit=limit, before_seq=before_seq)
        return [_event(e) for e in await self.mp.storage.index.query(q)]

    async def rejections(self, source_id: str | None, after_id: int, limit: int) -> list[dict]:
        rows = await asyncio.to_thread(self.mp.storage.rejections.list, source_id, after_id,
                                       limit)
        return [{"id": r.id, "source_id": r.source_id, "received_ms": r.received_ms,
                 "index": r.index, "code": r.code, "reason": r.reason, "field": r.field,
                 "body": r.body.decode(errors="replace")} for r in rows]

    async def latest_rejection_id(self) -> int:
        """The highest rejection id, found with a few id lookups (the store lists oldest
        first from an id, and has no "newest")."""
        store = self.mp.storage.rejections

        def probe(after: int) -> bool:
            return bool(store.list(None, after, 1))

        def search() -> int:
            hi = 1
            while probe(hi):
                hi *= 2
            lo = hi // 2 if hi > 1 else 0
            if lo == 0 and not probe(0):
                return 0
            while lo + 1 < hi:  # probe(lo) is true, probe(hi) false: the answer is in (lo, hi]
                mid = (lo + hi) // 2
                if probe(mid):
                    lo = mid
                else:
                    hi = mid
            return hi
        return await asyncio.to_thread(search)

    async def storage_tiers(self) -> list[dict]:
        """``GET /api/storage``'s tiers (the Overview's storage line). Counted afresh while
        that is cheap; once a count takes :data:`SLOW_COUNT` seconds or more (a big hot
        tier: counting is a scan of the log's table), a page gets the last count, at most
        :data:`TIERS_EVERY` seconds old, while a recount runs in the background."""
        last = self._tiers
        if last is None or last[1] < SLOW_COUNT:
            await self._recount_tiers()
        elif time.monotonic() - last[0] > TIERS_EVERY and (
                self._tiers_task is None or self._tiers_task.done()):
            self._tiers_task = asyncio.create_task(self._recount_tiers())
        assert self._tiers is not None
        return self._tiers[2]

    async def _recount_tiers(self) -> None:
        started = time.monotonic()
        tiers = await asyncio.to_thread(tier_status, self.mp.storage)
        self._tiers = (started, time.monotonic() - started, tiers)

    async def arrivals(self, minutes: int = 60) -> dict:
        """Events received per minute over the last ``minutes`` (whole clock minutes),
        and per second now.

        Received times grow with ``seq``, so the seq at any instant is a binary search
        of point look-ups; past minutes' bounds never change and are kept, so a page
        after the first searches only for the current minute and the last 10 seconds."""
        now = time.time()
        last = self.mp.log.last_seq()
        minute = now - now % 60
        bounds = []
        lo = 0
        for i in range(minutes, -1, -1):
            lo = await self._seq_at(minute - 60 * i, lo, last)
            bounds.append(lo)
        bounds.append(last)
        per_minute = [b - a for a, b in zip(bounds, bounds[1:], strict=False)][-minutes:]
        recent = last - await self._seq_at(now - 10, bounds[-2], last, keep=False)
        if len(self._seq_at_cache) > 4 * minutes:
            for instant in sorted(self._seq_at_cache)[:-2 * minutes]:
                del self._seq_at_cache[instant]
        return {"per_minute": per_minute, "per_second_now": round(recent / 10, 1),
                "last_hour": sum(per_minute), "last_seq": last}

    async def _received_at(self, seq: int) -> float | None:
        found = await self.mp.log.get(seq)
        return None if found is None else iso_to_seconds(_decode(found.body).get("receivedAt"))

    async def _seq_at(self, instant: float, lo: int, hi: int, keep: bool = True) -> int:
        """The last seq in (lo, hi] received before ``instant`` (lo when none)."""
        if instant in self._seq_at_cache:
            return max(lo, self._seq_at_cache[instant])
        top = hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            at = await self._received_at(mid)
            if at is not None and at < instant:
                lo = mid
            else:
                hi = mid - 1
        if keep and lo < top:  # the log has passed the instant: the bound is final
            self._seq_at_cache[instant] = lo
        return lo

    # -- sources ----------------------------------------------------------------------------
    def sources(self) -> list[dict]:
        return [source_dict(s) for s in self.mp.sources.list()]

    def source(self, ref: str) -> dict:
        return source_dict(self.mp.sources.get(ref))

    def source_names(self) -> dict[str, str]:
        return {s.id: s.name for s in self.mp.sources.list()}

    def create_source(self, name: str, kind: str, replayable: bool | None,
                      allowed_origins: list[str] | None, retention: str = "forever") -> dict:
        return source_dict(self.mp.sources.create(name, kind, replayable, allowed_origins,
                                                  True, retention))

    def update_source(self, ref: str, **changes: Any) -> dict:
        return source_dict(self.mp.sources.update(ref, **changes))

    def rotate_key(self, ref: str) -> dict:
        return source_dict(self.mp.sources.rotate_key(ref))

    def delete_source(self, ref: str) -> dict:
        return source_dict(self.mp.sources.delete(ref))

    def snippet(self, ref: str, sdk: str, form: str, scope: dict) -> str:
        """The very text ``millpond sources snippet`` prints (the API's snippet route)."""
        address = self.mp.public.resolve(scope)
        return snippet(self.mp.sources.get(ref), address, sdk, form)

    # -- destinations -----------------------------------------------------------------------
    @staticmethod
    def catalog() -> list[dict]:
        return catalog()

    @staticmethod
    def destination_type(name: str) -> dict:
        for entry in catalog():
            if entry["name"] == name:
                return entry
        raise NotFound(f"no destination type {name!r}", field="type")

    async def destinations(self) -> list[dict]:
        return [{**destination_dict(d), "stats": stats}
                for d, stats in await self.mp.pumps.all_stats()]

    async def destination(self, ref: str) -> dict:
        dest = self.mp.pumps.destinations.get(ref)
        return {**destination_dict(dest), "stats": await self.mp.pumps.stats(dest)}

    async def events_behind(self, ref: str, *, run: str, step: str, action: str,
                            reason: str | None, cursor: str | None, limit: int) -> dict:
        """What ``GET /api/destinations/{ref}/outcomes`` answers."""
        dest = self.mp.pumps.destinations.get(ref)
        return await events_behind(self.mp.pumps.runs, self.mp.log, dest, run=run, step=step,
                                   action=action, reason=reason, cursor=cursor, limit=limit,
                                   kept_days=self.mp.config.delivery.outcome_retention_days)

    async def retrying(self, ref: str, *, run: str, action: str | None, limit: int) -> dict:
        """What ``GET /api/destinations/{ref}/retrying`` answers."""
        return await self.mp.pumps.retrying(ref, run=run, action=action, limit=limit)

    def retrying_counts(self, dest_id: str) -> dict:
        """Events held for a next attempt now, per run and action (the funnel's column)."""
        return self.mp.pumps.retrying_counts(dest_id)

    async def create_destination(self, body: dict) -> dict:
        return destination_dict(await self.mp.pumps.create(body))

    async def update_destination(self, ref: str, body: dict) -> dict:
        return destination_dict(await self.mp.pumps.update(ref, body))

    async def set_enabled(self, ref: str, enabled: bool) -> dict:
        return destination_dict(await self.mp.pumps.set_enabled(ref, enabled))

    async def retry_now(self, ref: str) -> dict:
        """End the destination's wait for its next attempt (the API's retry-now)."""
        return await self.mp.pumps.retry_now(ref)

    async def delete_destination(self, ref: str) -> dict:
        return destination_dict(await self.mp.pumps.delete(ref))

    async def test_event(self, ref: str, event: dict) -> dict:
        """The event tester (the API's ``POST /destinations/{ref}/test``), plus, per action
        that did not match, which clause of its trigger failed."""
        dest = self.mp.pumps.destinations.get(ref)
        rt = pump_config.runtime(dest.type, dest.settings, dest.actions)
        result = try_event(rt, dest.settings, event)
        triggers = {a["name"]: a.get("trigger") for a in dest.actions}
        for entry in result["actions"]:
            trigger = triggers.get(entry["action"])
            entry["trigger"] = trigger
            entry["clauses"] = explain_trigger(trigger, event) if trigger else []
        return result

    async def send_test(self, ref: str, event: dict) -> list[dict]:
        """Send one event for real through each action that would send it, with the
        destination's own transport, and return the vendor's answers. Not counted in
        delivery stats: it is the owner's test, not delivery."""
        dest = self.mp.pumps.destinations.get(ref)
        rt = pump_config.runtime(dest.type, dest.settings, dest.actions)
        from millpond.destinations.base import Item

        answers = []
        for stored, action in rt.all_actions:
            if not stored.get("enabled", True) or not action.trigger.matches(event):
                continue
            payload = action.mapping.apply(event)
            request = rt.dtype.build_request(action.name, [Item(payload, event)])
            try:
                response = await self.mp.pumps.transport.send(request)
                answers.append({"action": action.name, "status": response.status,
                                "body": _text(response.body)})
            except Exception as exc:  # noqa: BLE001 - shown to the owner as the answer
                answers.append({"action": action.name, "status": None,
                                "body": f"{type(exc).__name__}: {exc}"})
        return answers

    def dead_letters(self, ref: str, state: str | None = "dead", after_id: int = 0,
                     limit: int = 50) -> list[dict]:
        """What ``GET /api/destinations/{ref}/dead-letters`` lists."""
        dest = self.mp.pumps.destinations.get(ref)
        rows = self.mp.pumps.runs.dead_letters(
            dest.id, state=None if state is None else DeadLetterState(state),
            after_id=after_id, limit=limit)
        return [dead_letter_dict(d) for d in rows]

    async def redrive(self, ref: str, ids: list[int] | None) -> dict:
        return await self.mp.pumps.redrive(ref, ids)

    # -- replays ----------------------------------------------------------------------------
    async def preview_replay(self, body: dict) -> dict:
        return await self.mp.replays.create({**body, "dry_run": True})

    async def start_replay(self, body: dict) -> dict:
        return await self.mp.replays.create({**body, "dry_run": False})

    def replays(self, destination: str | None = None) -> list[dict]:
        return self.mp.replays.list(destination)

    def replay(self, replay_id: str) -> dict:
        return self.mp.replays.get(replay_id)

    async def pause_replay(self, replay_id: str) -> dict:
        return await self.mp.replays.pause(replay_id)

    async def resume_replay(self, replay_id: str) -> dict:
        return await self.mp.replays.resume(replay_id)

    async def cancel_replay(self, replay_id: str) -> dict:
        return await self.mp.replays.cancel(replay_id)

    # -- imports ----------------------------------------------------------------------------
    def imports(self) -> list[dict]:
        return self.mp.imports.list()

    def import_job(self, job_id: str) -> dict:
        return self.mp.imports.get(job_id)

    async def cancel_import(self, job_id: str) -> dict:
        """What ``POST /api/imports/{id}/cancel`` does: stop at the next checkpoint and
        answer once stopped."""
        jobs = self.mp.imports
        jobs.cancel(job_id)
        await asyncio.to_thread(jobs.wait, job_id, CANCEL_WAIT)
        return jobs.get(job_id)

    def resume_import(self, job_id: str) -> dict:
        """What ``POST /api/imports/{id}/resume`` does."""
        jobs = self.mp.imports
        return jobs.resume(job_id, self.mp.sources.get(jobs.store.get(job_id).source_id))

    async def start_import(self, source: str, upload, file_name: str, kind: str | None,
                           **options: Any) -> dict:
        """What ``POST /api/imports`` does, for a file uploaded through a form: store it in
        the data dir, check it, and start the same background job."""
        src = self.mp.sources.get(source)
        try:
            return await self.mp.imports.start_upload(
                src, file_name or "upload.csv", ImportOptions(**options),
                lambda path: asyncio.to_thread(_copy_upload, upload, path), kind)
        except ImportInputError as exc:
            raise BadRequest(str(exc), field=exc.field or "file") from None

    def import_report(self, job_id: str, limit: int = 200) -> tuple[Path | None, list[dict]]:
        """The error report (row, line, column, code, reason) of an import: its path and
        the first ``limit`` rows."""
        import csv

        job = self.mp.imports.get(job_id)
        path = (self.mp.imports.dir / job["id"] / "errors.csv")
        summary = job.get("summary") or {}
        named = summary.get("error_report")
        if named:
            path = Path(named)
        if not path.is_file():
            return None, []
        rows: list[dict] = []
        with path.open(newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                if i >= limit:
                    break
                rows.append(row)
        return path, rows

    # -- people -----------------------------------------------------------------------------
    async def person(self, any_id: str) -> dict | None:
        """What ``GET /api/people/{id}`` shows, segments too (None: no such person)."""
        return await person_view(self.mp, any_id)

    async def search_people(self, query: str, cursor: str | None, limit: int) -> dict:
        """What ``GET /api/people?query=`` lists (the same service function)."""
        return await people_search(self.mp, query, cursor, limit)

    async def activity(self, person: dict, before: WindowCursor | None,
                       per_page: int = 50) -> dict:
        """A page of ``person``'s activity log (every event of any of its user and
        anonymous ids), newest first in event time, from the event index's per-person
        index: the cost of a page does not grow with the log or with the person."""
        ids = [*person.get("user_ids", []), *person.get("anonymous_ids", [])]
        index = self.mp.storage.index
        rows = await index.person_events(ids, before=before, limit=per_page + 1)
        more = len(rows) > per_page
        rows = rows[:per_page]
        total = await index.count_person_events(ids)
        older = WindowCursor(rows[-1].ts_ms, rows[-1].seq) if more else None
        return {"events": [_event(e) for e in rows], "total": total, "older": older}


def compile_filter(text: str):
    """A compiled FQL filter, or BadRequest with the parser's message (shown on the form)."""
    try:
        return compile_trigger(text)
    except TriggerSyntaxError as exc:
        raise BadRequest(f"filter: {exc.message} (at character {exc.position + 1})",
                         field="filter") from None


def _copy_upload(upload, path: Path) -> int:
    size = 0
    upload.file.seek(0)
    with open(path, "wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise BadRequest("the file is larger than 20 GiB", field="file")
            out.write(chunk)
    return size


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        body = json.dumps(body)
    return body[:4000]
