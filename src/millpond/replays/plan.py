"""Turning a replay request into a plan, or refusing it with the reason, before anything starts.

Why refusals live in one pure function: the preview and the start must refuse the same
things for the same reasons, and every refusal must say *why* (DESIGN.md: "A refusal
always says why") so the owner knows what to change. The plan is plain JSON stored with
the replay, so a replay resumed after a restart runs exactly the window it was given,
even if the destination or its sources changed meanwhile.

Exactly once with live delivery: unless ``include_live`` is set, the plan stops at the
destination's ``connected_seq`` (the live pump starts right after it), and ``to``
defaults to the moment the destination was connected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from millpond.actions import TriggerSyntaxError, compile_trigger
from millpond.destinations.base import DestinationType
from millpond.errors import BadRequest, Conflict
from millpond.storage.models import Destination, Source, Window
from millpond.timeutil import format_ms, parse_time_bound

#: The skip reason of an event the replay's filter leaves out (the runner and the preview
#: both say it; here so the preview need not import the runner and its HTTP client).
FILTERED = "filtered out by the replay filter"
#: Far enough in the future for "no upper bound" and still an SQLite integer.
END_OF_TIME_MS = 1 << 62


class NotReplayable(BadRequest):
    code = "not_replayable"


def _time(value: str | float | None, field: str) -> int | None:
    """Unix ms of a bound given as text (ISO 8601, relative) or Unix seconds."""
    if value is None or isinstance(value, str):
        return parse_time_bound(value, field)
    return int(value * 1000)


def _source_reason(source: Source) -> str:
    why = " (track sources usually replay from their upstream CDP)" if source.kind == "track" \
        else ""
    if source.deleted_at is not None:
        return f"source {source.name} (deleted) was not replayable{why}; its events stay " \
               "out of replays"
    return f"source {source.name} is not replayable{why}; mark it replayable to include it"


def plan(body: dict[str, Any], dest: Destination, dtype: type[DestinationType],
         sources: Sequence[Source], active: str | None = None) -> dict:
    """The resolved plan for ``body`` against ``dest``; raises BadRequest/Conflict with the
    reason for every refusal. ``active`` is the id of an active replay of ``dest``;
    ``sources`` the live sources then the deleted ones (``SourceService.origins``).

    ``body`` is a :class:`~millpond.api.models.ReplayRequest` as plain values: its shape
    is checked; what is checked here depends on the destination and the sources."""
    if not dtype.replayable:
        raise NotReplayable(
            f"destination {dest.name} ({dtype.name}) is not replayable: its first sync "
            "already includes history; create a new destination to load again",
            field="destination")
    if not dest.enabled:
        raise Conflict(f"destination {dest.name} is disabled; enable it before replaying",
                       field="destination")
    dry_run = bool(body.get("dry_run", False))
    include_live = bool(body.get("include_live", False))
    if active is not None and not dry_run:
        raise Conflict(f"replay {active} is already active for destination {dest.name}; "
                       "pause, cancel or wait for it (replays are not queued)",
                       field="destination")

    # ``sources`` are every origin of events in the log: deleted ones (tombstones) too,
    # since their events stay and are replayable only if their source was. A name taken
    # by a live source and a tombstone means the live one.
    by_ref = {s.name: s for s in reversed(sources)} | {s.id: s for s in sources}
    wanted = body.get("sources")
    if wanted is None:
        scope = list(sources)
    else:
        missing = [s for s in wanted if s not in by_ref]
        if missing:
            raise BadRequest(f"no source {missing[0]!r}", field="sources")
        scope = list({by_ref[s].id: by_ref[s] for s in wanted}.values())
    included = [s for s in scope if s.replayable]
    excluded = [{"id": s.id, "name": s.name, "reason": _source_reason(s)}
                for s in scope if not s.replayable]
    if not included:
        why = "; ".join(e["reason"] for e in excluded) or "there are no sources"
        raise NotReplayable(f"nothing to replay: only non-replayable sources in scope ({why})",
                            field="sources")

    ts_from = _time(body.get("from"), "from")
    ts_from = 0 if ts_from is None else ts_from
    ts_to = _time(body.get("to"), "to")
    if ts_to is None:
        # "Up to the connection" is bounded by arrival (max_seq = connected_seq), not by
        # event time: an event that arrived before the connection but carries a later
        # timestamp belongs to the replay too, or neither replay nor live would send it.
        ts_to = END_OF_TIME_MS
    if ts_from >= ts_to:
        raise BadRequest(f"empty window: from ({format_ms(ts_from)}) must be before to "
                         f"({format_ms(min(ts_to, 253402300799999))})", field="from")

    dest_rate = float(dest.rate_limit["events_per_second"])
    rate = body.get("rate")
    if rate is None:
        rate = dest_rate
    elif rate > dest_rate:
        raise BadRequest(f"rate {rate:g}/s is above the destination's rate limit "
                         f"({dest_rate:g}/s); a replay may use at most that", field="rate")

    flt = body.get("filter")
    if flt is not None:
        if not flt.strip():
            raise BadRequest('filter must be FQL text, e.g. type = "track"', field="filter")
        try:
            compile_trigger(flt)
        except TriggerSyntaxError as exc:
            raise BadRequest(f"filter is not valid FQL: {exc}", field="filter") from None

    return {
        "destination": dest.id, "destination_name": dest.name,
        "sources": [s.id for s in included],
        "source_names": {s.id: s.name for s in included},
        "all_sources": wanted is None and not excluded,
        "excluded_sources": excluded,
        "ts_from": ts_from, "ts_to": ts_to,
        "from": format_ms(ts_from),
        "to": None if ts_to >= END_OF_TIME_MS else format_ms(ts_to),
        "max_seq": None if include_live else dest.connected_seq,
        "include_live": include_live, "filter": flt, "rate": float(rate),
        "dry_run": dry_run,
    }


def plan_window(p: dict) -> Window:
    """The window of the plan's replayed events."""
    return Window(p["ts_from"], p["ts_to"], p["max_seq"],
                  None if p.get("all_sources") else tuple(p["sources"]))
