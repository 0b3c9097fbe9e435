"""``millpond events``: read the log (``tail``, ``list``) and what was refused (``rejected``)."""

from __future__ import annotations

import json

import click

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, print_json, print_table, write_stdout
from millpond.segments.outputs import COMPUTED_SOURCE_ID
from millpond.timeutil import format_ms, iso_to_seconds


@click.group()
@connection_options
def events() -> None:
    """Read the event log."""


def _summary(ev: dict) -> dict:
    who = ev.get("userId") or f"anon:{ev.get('anonymousId')}"
    what = ev.get("event") or ev.get("name") or ev.get("groupId") or ev.get("previousId") or ""
    # Which segment an Audience Entered / Exited is of, as the console says it: a page
    # of them names several, and the title alone does not tell them apart.
    properties = ev.get("properties")
    audience = properties.get("audience_key") if ev.get("source_id") == COMPUTED_SOURCE_ID \
        and isinstance(properties, dict) else None
    if isinstance(audience, str):
        what = f"{what} of {audience}"
    return {"seq": ev["seq"], "timestamp": ev.get("timestamp"), "type": ev["type"],
            "what": what, "who": who, "messageId": ev.get("messageId"),
            "source": ev.get("source_id")}


def _time(value: object) -> str:
    """Every time in one format (UTC, milliseconds), whatever form the event carries."""
    seconds = iso_to_seconds(value)
    return format_ms(round(seconds * 1000)) if seconds is not None else str(value or "")


def _fit(text: str, width: int) -> str:
    """``text`` padded to ``width``, or cut with an ellipsis (free text, never an id)."""
    return f"{text:<{width}}" if len(text) <= width else text[:width - 1] + "…"


#: ``events tail`` columns: seq, time, type, what, who; the messageId last, whole.
TAIL_HEADER = f"{'seq':>8}  {'timestamp':<24}  {'type':<8}  {'what':<30}  {'who':<30}  messageId"


def _line(ev: dict) -> str:
    s = _summary(ev)
    return (f"{s['seq']:>8}  {_time(s['timestamp']):<24}  {s['type']:<8}  "
            f"{_fit(str(s['what']), 30)}  {_fit(str(s['who']), 30)}  {s['messageId']}")


@events.command("tail")
@twin_of("GET /api/events")
@click.option("--source", "sources", multiple=True, help="Only this source (id or name).")
@click.option("-n", "--lines", default=10, show_default=True, help="How many recent events.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive.")
@json_option
@api_command
def tail(sources: tuple[str, ...], lines: int, follow: bool, as_json: bool, client) -> None:
    """Show the most recent events, and with --follow every new one as it arrives."""
    params = {"source": list(sources) or None}
    recent = client.get("/api/events", {**params, "order": "desc", "limit": max(1, lines)})
    shown = list(reversed(recent["events"]))[-lines:] if lines else []
    if not as_json:
        write_stdout(TAIL_HEADER)
    for ev in shown:
        write_stdout(json.dumps(ev) if as_json else _line(ev))
    if not follow:
        return
    cursor = str(shown[-1]["seq"]) if shown else None
    if cursor is None:
        cursor = client.get("/api/events", {**params, "limit": 1, "order": "desc"})
        cursor = str(cursor["events"][0]["seq"]) if cursor["events"] else "0"
    while True:  # until Ctrl-C (status 130, see millpond.cli.main)
        page = client.get("/api/events", {**params, "cursor": cursor, "limit": 500,
                                          "wait": 25})
        for ev in page["events"]:
            write_stdout(json.dumps(ev) if as_json else _line(ev))
        cursor = page["next_cursor"] or cursor


@events.command("list")
@twin_of("GET /api/events")
@click.option("--source", "sources", multiple=True)
@click.option("--type", "types", multiple=True)
@click.option("--event", default=None, help="Event name.")
@click.option("--user-id", default=None)
@click.option("--from", "from_", default=None, help="Event time from (ISO 8601 or -7d).")
@click.option("--to", default=None, help="Event time before (ISO 8601).")
@click.option("--received-from", default=None, help="Arrival time from (ISO 8601 or -7d).")
@click.option("--received-to", default=None, help="Arrival time before (ISO 8601).")
@click.option("--message-id", default=None,
              help="The event with this messageId (deleted sources' too).")
@click.option("--newest", is_flag=True, help="Newest first (by seq).")
@click.option("--cursor", default=None, metavar="C", help="next_cursor of the page before.")
@click.option("--limit", default=50, show_default=True)
@json_option
@api_command
def list_(sources, types, event, user_id, from_, to, received_from, received_to, message_id,
          newest, cursor, limit, as_json, client) -> None:
    """Query the log with filters, oldest first (--newest: newest first), a page at a
    time."""
    data = client.get("/api/events", {"source": list(sources) or None,
                                      "type": list(types) or None, "event": event,
                                      "user_id": user_id, "from": from_, "to": to,
                                      "received_from": received_from,
                                      "received_to": received_to, "message_id": message_id,
                                      "order": "desc" if newest else None, "cursor": cursor,
                                      "limit": limit})
    if as_json:
        print_json(data)
        return
    print_table([_summary(e) for e in data["events"]],
                ["seq", "timestamp", "type", "what", "who", "messageId", "source"])
    if len(data["events"]) >= limit and data["next_cursor"]:  # a full page: maybe more
        console.print(f"more: --cursor {data['next_cursor']}", highlight=False, markup=False)


@events.command("rejected")
@twin_of("GET /api/rejections")
@click.option("--source", default=None)
@click.option("--limit", default=50, show_default=True)
@json_option
@api_command
def rejected(source, limit, as_json, client) -> None:
    """Messages the collector refused, with the reason."""
    data = client.get("/api/rejections", {"source": source, "limit": limit})
    if as_json:
        print_json(data)
    else:
        print_table(data["rejections"], ["id", "source_id", "index", "code", "reason", "field"])
