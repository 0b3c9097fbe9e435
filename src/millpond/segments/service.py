"""Segments as the API, the CLI and the console use them: validate, save, build, read.

Every write validates first and saves nothing on bad input (``BadRequest`` naming the
field); reads say when a segment is still ``building`` (with progress and an ETA).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Any

from millpond.errors import BadRequest, Conflict, NotFound
from millpond.storage.contracts import Storage
from millpond.storage.models import Expiry, Member, Segment, Window
from millpond.timeutil import format_ms

from .definition import Condition, check_references, parse_definition, references, to_json
from .engine import SegmentEngine
from .evaluate import Evaluator
from .people import Person, facts, resolve
from .preview import preview_of

log = logging.getLogger("millpond.segments")
#: How often the process that runs builds looks for segments waiting for one, seconds.
PENDING_INTERVAL = 1.0
#: How long a segment whose build failed waits before it is built again, seconds.
RETRY_FAILED_SECONDS = 60.0
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Every event time: what retention removed, whenever the events happened.
ALL_TIME = Window(-(2**62), 2**62)


def _ms(value: int | None) -> str | None:
    return None if value is None else format_ms(value)


class SegmentService:
    def __init__(self, storage: Storage, engine: SegmentEngine) -> None:
        self.storage = storage
        self.engine = engine
        self._builds: set[asyncio.Task[Any]] = set()
        #: Segment ids waiting for the next build (in the order asked), and those of the
        #: build running now (see :meth:`_start_build`).
        self._queued: dict[str, None] = {}
        self._running: frozenset[str] = frozenset()
        self._runner: asyncio.Task[Any] | None = None
        #: Whether this process runs builds: the one that follows the log (the embedded
        #: store's server; in a cluster, the holder of the jobs lease). Elsewhere a save
        #: leaves the segment ``building`` and that process starts the build
        #: (:meth:`run_pending`), so a build and the follower never run apart.
        self.builds_here = True
        #: segment id -> when its last build failed (loop time): retried after a while.
        self._failed: dict[str, float] = {}

    # -- shapes --------------------------------------------------------------------------

    def view(self, segment: Segment) -> dict[str, Any]:
        """``{"id", "key", "name", "definition", "state", "members", "progress"}``;
        ``progress``: ``{"phase": "waiting"|"scanning"|"evaluating", "done", "total", "unit":
        "events"|"people", "eta_seconds"}`` (the estimate is for the current phase)."""
        out: dict[str, Any] = {
            "id": segment.id, "key": segment.key, "name": segment.name,
            "definition": segment.definition, "state": segment.state,
            "members": self.storage.segments.count_members(segment.id),
            "created_at": _ms(segment.created_ms),
        }
        if segment.state == "building":
            done, total = segment.build_done, segment.build_total
            elapsed = max(1, self.engine.clock() - segment.build_started_ms)
            eta = None if not done or not segment.build_started_ms else \
                round(elapsed * (total - done) / done / 1000, 1)
            phase = segment.build_phase or "scanning"
            # Scanning counts log positions, evaluating counts people; waiting (for the
            # build running now), nothing yet.
            unit = "people" if phase == "evaluating" else "events"
            out["progress"] = {"phase": phase, "done": done, "total": total,
                               "unit": unit, "eta_seconds": eta}
        return out

    @staticmethod
    def member_view(m: Member) -> dict[str, Any]:
        return {"id": m.person_id, "user_id": m.user_id, "anonymous_id": m.anonymous_id,
                "since": _ms(m.since_ms)}

    # -- validation ----------------------------------------------------------------------

    def _validate(self, key: str, definition: object, *, exclude: str | None = None):
        cond = parse_definition(definition)
        known = {s.key: s for s in self.storage.segments.list() if s.id != exclude}

        def lookup(ref: str):
            s = known.get(ref)
            return parse_definition(s.definition) if s else None

        check_references(key, cond, lookup)
        return cond

    @staticmethod
    def _text(body: dict, name: str, required: bool = True) -> str | None:
        value = body.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise BadRequest(f"{name} must be a non-empty text of at most 200 characters",
                             field=name)
        return value.strip()

    # -- writes --------------------------------------------------------------------------

    async def create(self, body: object) -> dict[str, Any]:
        """Validate, save in state ``building`` and start the build over the log."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object with key, name and definition")
        unknown = sorted(set(body) - {"key", "name", "definition"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        key = self._text(body, "key")
        assert key is not None
        if not KEY.match(key):
            raise BadRequest(f"key must be lowercase letters, digits, '-' or '_' (e.g. "
                             f"\"recent-buyers\"); got {key!r}", field="key")
        name = self._text(body, "name", required=False) or key
        if "definition" not in body:
            raise BadRequest("definition is required, e.g. {\"event\": \"Order Completed\"}",
                             field="definition")
        cond = self._validate(key, body["definition"])
        now = self.engine.clock()
        segment = Segment("seg_" + secrets.token_hex(6), key, name, to_json(cond),
                          created_ms=now, updated_ms=now)
        # The built-in source appears with the first segment, not on every fresh server.
        self.engine.ensure_source()
        self.storage.segments.create(segment)
        log.info("segment %s created (%s); building it over the log", segment.key, segment.id,
                 extra={"segment_id": segment.id, "phase": "created"})
        self._start_build([segment.id])
        return self.view(segment)

    def _start_build(self, segment_ids: list[str]) -> None:
        """Build the segments after the build running now, if any, together with every
        other segment asked for meanwhile: one build at a time, each with one scan for
        all of its segments. Not in a process that does not run builds.

        Why a queue, not a build per request: ten segments saved one after the other (a
        script, or someone in the console) were ten builds at once, each scanning the
        whole log and holding its own scan: on a million events, 178 s and 2.3 GB where
        one build of the ten takes about 25 s and 450 MB. A segment whose definition
        changes while it is being built is built again next: the running build stops
        writing it at its next batch once it sees the change (``build._Progress``), so
        two builds never write one segment at once."""
        if not self.builds_here:
            return
        waiting = [sid for sid in segment_ids if sid not in self._queued]
        self._queued.update(dict.fromkeys(segment_ids))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run_builds())
            self._builds.add(self._runner)
            self._runner.add_done_callback(self._builds.discard)
        else:
            self._mark_waiting(waiting)

    def _mark_waiting(self, segment_ids: list[str]) -> None:
        """Show ``segment_ids`` as waiting for the build running now (their progress)."""
        for sid in segment_ids:
            try:
                segment = self.storage.segments.get(sid)
            except NotFound:
                continue
            if segment.state == "building":
                segment.build_phase, segment.build_done, segment.build_total = "waiting", 0, 0
                self.storage.segments.update(segment)

    async def _run_builds(self) -> None:
        try:
            while self._queued:
                ids = list(self._queued)
                self._queued.clear()
                self._running = frozenset(ids)
                await self._build(ids)
        finally:
            # Cancelled (a stop, a lost jobs lease): those still queued stay ``building``
            # for whoever runs builds next (:meth:`start_pending`).
            self._running = frozenset()
            self._queued.clear()

    async def _build(self, segment_ids: list[str]) -> None:
        existing = {s.id for s in self.storage.segments.list()}
        gone = [sid for sid in segment_ids if sid not in existing]
        if gone:
            log.info("segment(s) %s deleted before their build began", ", ".join(gone))
            self.engine.building.difference_update(gone)  # held back by a superseded build
        try:
            began = time.monotonic()
            built = await self.engine.build_many([sid for sid in segment_ids
                                                  if sid in existing])
            if built:
                log.info("segment(s) built in %.1f s: %s", time.monotonic() - began,
                         ", ".join(f"{s.key} ({self.storage.segments.count_members(s.id):,}"
                                   " members)" for s in built))
        except NotFound:
            log.info("a segment of %s was deleted while it was being built",
                     ", ".join(segment_ids))
        except Exception:
            log.exception("building segment(s) %s failed; tried again in %s s",
                          ", ".join(segment_ids), int(RETRY_FAILED_SECONDS))
            now = asyncio.get_running_loop().time()
            self._failed.update(dict.fromkeys(segment_ids, now))

    def start_pending(self) -> list[str]:
        """Start the builds of segments still ``building`` that no build here holds: one a
        stop interrupted (a build is the same work from the start, its Audience events
        are deduped by their messageIds and the rows it wrote are its previous state),
        one saved by another process of a cluster, or one whose build failed a while ago.
        With one scan for all of them; their ids."""
        if not self.builds_here:
            return []
        now = asyncio.get_running_loop().time()
        pending = [s.id for s in self.storage.segments.list() if s.state == "building"
                   and s.id not in self._queued and s.id not in self._running
                   and now - self._failed.get(s.id, -RETRY_FAILED_SECONDS)
                   >= RETRY_FAILED_SECONDS]
        if pending:
            log.info("building segment(s) %s, which no build here held", ", ".join(pending))
            self._start_build(pending)
        return pending

    async def run_pending(self, interval: float | None = None) -> None:
        """:meth:`retention_missed`, then :meth:`start_pending` now and every
        ``interval`` seconds (default :data:`PENDING_INTERVAL`), until cancelled (the
        server's lifecycle owns the task; it stops the builds with :meth:`stop_builds`)."""
        try:
            await self.retention_missed()
        except Exception:  # noqa: BLE001 - a storage error: the next start looks again
            log.exception("could not compare retention's removals with the memberships")
        while True:
            try:
                self.start_pending()
            except Exception:  # noqa: BLE001 - a storage error: try again at the next round
                log.exception("could not look for segments to build")
            await asyncio.sleep(PENDING_INTERVAL if interval is None else interval)

    # -- retention ------------------------------------------------------------------------

    async def events_removed(self, source_id: str, before_ms: int, expiry: Expiry) -> None:
        """One step of the retention job (``RetentionJob.on_removed``): the owners of the
        removed events are evaluated again without them (:meth:`SegmentEngine.
        events_removed`), or, should that fail, every segment is built again (which
        settles everyone the log and the stored rows name); once the source's pass is
        done, its cutoff is recorded as applied (``SegmentStore.set_retention_applied``).
        """
        try:
            await self.engine.events_removed(expiry.owners)
        except Exception:  # noqa: BLE001 - logged; the rebuild covers them
            log.exception("could not re-evaluate the %s people whose events of source %s "
                          "retention removed; building every segment again",
                          f"{len(expiry.owners):,}", source_id)
            self._rebuild_all()
        if expiry.done:
            await asyncio.to_thread(self.storage.segments.set_retention_applied, source_id,
                                    before_ms)

    async def retention_missed(self) -> dict[str, int]:
        """Where the log says retention removed events later than the memberships
        reflect (a stop or a crash between a retention step and its re-evaluation; a
        store from before segments followed retention): every segment is built again,
        then those cutoffs count as applied. The sources and cutoffs concerned."""
        removed = await self.storage.log.expired(ALL_TIME)
        applied = await asyncio.to_thread(self.storage.segments.retention_applied)
        behind = {e.source_id: e.before_ms for e in removed
                  if e.before_ms > applied.get(e.source_id, e.before_ms - 1)}
        if behind and self._rebuild_all():
            log.warning("retention removed events of %s source(s) whose owners were not all"
                        " evaluated again (a stop in between): building every segment again",
                        len(behind), extra={"sources": sorted(behind)})
        for source_id, before_ms in behind.items():
            await asyncio.to_thread(self.storage.segments.set_retention_applied, source_id,
                                    before_ms)
        return behind

    def _rebuild_all(self) -> list[str]:
        """Mark every segment ``building`` and build them (here, or where builds run)."""
        every = self.storage.segments.list()
        for segment in every:
            segment.state = "building"
            self.storage.segments.update(segment)
        if every:
            self._start_build([s.id for s in every])
        return [s.id for s in every]

    async def stop_builds(self) -> None:
        """Cancel the builds running here and wait for them (a stop, a lost jobs lease):
        their segments stay ``building`` and are built again by whoever runs builds."""
        tasks = list(self._builds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_builds(self) -> None:
        """Until every build started here has finished (tests, ``--wait``)."""
        while self._builds:
            await asyncio.gather(*list(self._builds), return_exceptions=True)

    async def update(self, ref: str, body: object) -> dict[str, Any]:
        segment = self.storage.segments.get(ref)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object with name and/or definition")
        unknown = sorted(set(body) - {"name", "definition"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r} (the key cannot change)",
                             field=unknown[0])
        if "name" in body:
            segment.name = self._text(body, "name") or segment.name
        rebuild = False
        if "definition" in body:
            cond = self._validate(segment.key, body["definition"], exclude=segment.id)
            segment.definition, rebuild = to_json(cond), True
        segment.updated_ms = self.engine.clock()
        if rebuild:
            segment.state = "building"
        self.storage.segments.update(segment)
        log.info("segment %s changed: %s", segment.key,
                 ", ".join(k for k in ("name", "definition") if k in body)
                 + ("; building it again" if rebuild else ""),
                 extra={"segment_id": segment.id, "phase": "changed"})
        if rebuild:
            # Those reading it with in_segment change with it: built again, with it.
            dependents = self._dependents(segment.key)
            for other in dependents:
                other.state = "building"
                self.storage.segments.update(other)
            self._start_build([segment.id, *(s.id for s in dependents)])
        return self.view(segment)

    def _dependents(self, key: str) -> list[Segment]:
        """The segments that read ``key`` with ``in_segment``, directly or through others."""
        every = self.storage.segments.list()
        reads = {s.key: references(parse_definition(s.definition)) for s in every}
        found: set[str] = set()
        todo = [key]
        while todo:
            current = todo.pop()
            for other, refs in reads.items():
                if current in refs and other not in found:
                    found.add(other)
                    todo.append(other)
        return [s for s in every if s.key in found]

    def delete(self, ref: str) -> dict[str, Any]:
        segment = self.storage.segments.get(ref)
        for other in self.storage.segments.list():
            if other.id != segment.id and segment.key in references(
                    parse_definition(other.definition)):
                raise Conflict(f"segment {other.key!r} refers to {segment.key!r} with "
                               "in_segment; change or delete it first", field="segment")
        self.storage.segments.delete(segment.id)
        log.info("segment %s deleted (%s)", segment.key, segment.id,
                 extra={"segment_id": segment.id, "phase": "deleted"})
        return {"deleted": segment.id, "key": segment.key}

    # -- reads ---------------------------------------------------------------------------

    def list(self) -> dict[str, Any]:
        return {"segments": [self.view(s) for s in self.storage.segments.list()]}

    def get(self, ref: str) -> dict[str, Any]:
        return self.view(self.storage.segments.get(ref))

    def members(self, ref: str, cursor: str | None, limit: int) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise BadRequest("limit must be between 1 and 1000", field="limit")
        segment = self.storage.segments.get(ref)
        page = self.storage.segments.members(segment.id, after=cursor or None, limit=limit)
        return {"state": segment.state, "people": [self.member_view(m) for m in page.members],
                "next_cursor": page.next_cursor}

    def person_segments(self, person_id: str) -> list[dict[str, Any]]:
        """``[{"key", "since"}]`` for ``GET /api/people/{id}``."""
        keys = {s.id: s.key for s in self.storage.segments.list()}
        return [{"key": keys[m.segment_id], "since": _ms(m.since_ms)}
                for m in self.storage.segments.person_segments(person_id)
                if m.segment_id in keys]

    async def why(self, person_ref: str, ref: str) -> dict[str, Any]:
        """Each condition with its value for one person, and their history."""
        segment = self.storage.segments.get(ref)
        await self._profiles_current()
        definitions = {s.key: parse_definition(s.definition)
                       for s in self.storage.segments.list()}
        person, explained = await self._explain(person_ref, segment.key, definitions,
                                                field="id")
        history = self.storage.segments.history(person.id, segment.id)
        return {**explained, "segment": segment.key, "state": segment.state,
                "history": [{"member": h.member, "at": _ms(h.at_ms),
                             "processed_at": _ms(h.processed_ms)} for h in history]}

    async def _profiles_current(self) -> None:
        """Let the profiles take in the whole log first, so a person is explained with what
        the caller just sent (read-your-writes; a preview's count does the same)."""
        if self.engine.profiles_upto is not None:
            await self.engine.profiles_upto(self.storage.log.last_seq())

    async def _explain(self, person_ref: str, key: str, definitions: dict[str, Condition],
                       field: str) -> tuple[Person, dict[str, Any]]:
        """The person ``person_ref`` names, and ``{"person", "member", "since",
        "next_change", "conditions"}`` for the segment ``key`` of ``definitions`` now
        (NotFound naming ``field`` when no profile and no event has that id)."""
        person = resolve(self.storage, person_ref, True)
        if person.profile is None and not await self.storage.index.count_person_events(
                person.ids):
            raise NotFound(f"no person with id {person_ref!r}", field=field)
        data = await facts(self.storage, person)
        ev = Evaluator(definitions)
        now = self.engine.clock()
        m = ev.membership(definitions[key], data, now)
        return person, {"person": person.id, "member": m.member, "since": _ms(m.since_ms),
                        "next_change": _ms(m.next_change_ms),
                        "conditions": ev.why(definitions[key], data, now)}

    async def preview(self, body: object, sample: int = 10, *,
                      count: bool = True) -> dict[str, Any]:
        """Count and a sample of members of an unsaved definition, over everyone in the
        log, and with ``person`` in the body, why that person is in it or not (nothing is
        saved; :mod:`.preview`). ``count=False``: only the why, which reads one person's
        data where the count reads the whole log (the console's person box)."""
        if not isinstance(body, dict) or "definition" not in body:
            raise BadRequest("the body must be {\"definition\": {...}}", field="definition")
        given_key = body.get("key")
        key = given_key if isinstance(given_key, str) else "__preview__"
        cond = self._validate(key, body["definition"])
        definitions = {s.key: parse_definition(s.definition)
                       for s in self.storage.segments.list()}
        asked = body.get("person")
        if asked is not None and (not isinstance(asked, str) or not asked.strip()):
            raise BadRequest("person: a user id, anonymous id or profile id", field="person")
        explained = None
        if asked:
            await self._profiles_current()
            _, explained = await self._explain(asked.strip(), key,
                                               {**definitions, key: cond}, field="person")
        out: dict[str, Any] = {}
        if count:
            found = await preview_of(self.engine, key, cond, definitions, sample)
            out = {"count": found.count, "people_evaluated": found.people,
                   "sample": [{"id": person.id, "user_id": person.user_id,
                               "anonymous_id": person.anonymous_id,
                               "since": _ms(m.since_ms)} for person, m in found.sample]}
        if explained is not None:
            out["why"] = explained
        return out
