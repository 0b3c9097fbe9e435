"""``millpond segments``: the twin of ``/api/segments`` (and of the person's "why")."""

from __future__ import annotations

import json
from typing import Any

import click

from millpond.cli.client import ApiError
from millpond.cli.common import api_command, json_argument, json_option, twin_of
from millpond.cli.output import console, fail, print_json, print_table

_DEFINITION_HELP = ('The definition as JSON, or @FILE (@- reads standard input), e.g. '
                    '\'{"event": "Order Completed", "at_least": 2, "within": "30d"}\'.')


def _definition(text: str) -> Any:
    """The JSON of ``--definition``."""
    return json_argument("--definition", text, '{"event": "Order Completed"}')


@click.group()
def segments() -> None:
    """People who match conditions on traits and event history."""


def segment_row(seg: dict) -> dict:
    """A segment as one table row: its state with the build's progress and time left."""
    progress = seg.get("progress") or {}
    state = seg["state"]
    if progress.get("phase") == "waiting":
        state += " (waiting for the build running now)"
    elif progress:
        eta = progress.get("eta_seconds")
        state += (f" ({progress['phase']} {progress['done']:,}/{progress['total']:,}"
                  f" {progress['unit']}" + ("" if eta is None else f", about {eta:g} s left")
                  + ")")
    return {"id": seg["id"], "key": seg["key"], "name": seg["name"], "state": state,
            "members": seg["members"]}


@segments.command("add")
@twin_of("POST /api/segments")
@click.argument("key")
@click.option("--definition", "definition", required=True, help=_DEFINITION_HELP)
@click.option("--name", default=None, help="A name for people (default: the key).")
@json_option
@api_command
def add(key: str, definition: str, name: str | None, as_json: bool, client) -> None:
    """Save a segment; it builds over the whole log (state building, then ready)."""
    body = {"key": key, "definition": _definition(definition)}
    if name:
        body["name"] = name
    seg = client.post("/api/segments", json=body)
    if as_json:
        print_json(seg)
        return
    console.print(f"segment {seg['key']} ({seg['id']}) saved, {seg['state']}", highlight=False)


@segments.command("list")
@twin_of("GET /api/segments")
@json_option
@api_command
def list_(as_json: bool, client) -> None:
    """Every segment with its state and member count."""
    data = client.get("/api/segments")
    if as_json:
        print_json(data)
        return
    print_table([segment_row(s) for s in data["segments"]],
                ["id", "key", "name", "state", "members"])


@segments.command("show")
@twin_of("GET /api/segments/{ref}")
@click.argument("ref")
@json_option
@api_command
def show(ref: str, as_json: bool, client) -> None:
    """One segment (by id or key) with its definition."""
    seg = client.get(f"/api/segments/{ref}")
    if as_json:
        print_json(seg)
        return
    print_table([segment_row(seg)], ["id", "key", "name", "state", "members"])
    console.print(json.dumps(seg["definition"], indent=2), highlight=False)


@segments.command("update")
@twin_of("PATCH /api/segments/{ref}")
@click.argument("ref")
@click.option("--definition", "definition", default=None, help=_DEFINITION_HELP)
@click.option("--name", default=None, help="A new name.")
@json_option
@api_command
def update(ref: str, definition: str | None, name: str | None, as_json: bool, client) -> None:
    """Rename a segment or change its definition (which rebuilds it)."""
    body: dict[str, Any] = {}
    if definition is not None:
        body["definition"] = _definition(definition)
    if name is not None:
        body["name"] = name
    if not body:
        fail("nothing to change: give --definition and/or --name")
    seg = client.patch(f"/api/segments/{ref}", json=body)
    if as_json:
        print_json(seg)
        return
    console.print(f"segment {seg['key']} updated, {seg['state']}", highlight=False)


@segments.command("preview")
@twin_of("POST /api/segments/preview")
@click.option("--definition", "definition", required=True, help=_DEFINITION_HELP)
@click.option("--sample", default=10, show_default=True, help="Members to show.")
@click.option("--why", "person", default=None, metavar="PERSON",
              help="Also say why this person (user id, anonymous id or profile id) is in it "
                   "or not.")
@json_option
@api_command
def preview(definition: str, sample: int, person: str | None, as_json: bool, client) -> None:
    """How many people a definition holds now, and some of them; saves nothing."""
    body = {"definition": _definition(definition)}
    if person is not None:
        body["person"] = person
    data = client.post("/api/segments/preview", json=body, params={"sample": sample})
    if as_json:
        print_json(data)
        return
    console.print(f"{data['count']} member(s) of {data['people_evaluated']} people",
                  highlight=False)
    if data["sample"]:
        print_table(data["sample"], ["id", "user_id", "anonymous_id", "since"])
    why = data.get("why")
    if why:
        verdict = "would be a member" if why["member"] else "would not be a member"
        _print_explained(f"{why['person']} {verdict} {since_text(why['since'])}", why)


@segments.command("members")
@twin_of("GET /api/segments/{ref}/members")
@click.argument("ref")
@click.option("--limit", default=50, show_default=True, help="People per page.")
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@api_command
def members(ref: str, limit: int, cursor: str | None, as_json: bool, client) -> None:
    """The current members, a page at a time."""
    data = client.get(f"/api/segments/{ref}/members", {"limit": limit, "cursor": cursor})
    if as_json:
        print_json(data)
        return
    if data["state"] == "building":
        console.print("still building: the list is not complete yet", highlight=False)
    print_table(data["people"], ["id", "user_id", "since"])
    if data.get("next_cursor"):
        console.print(f"more: add --cursor {data['next_cursor']}", highlight=False)


@segments.command("why")
@twin_of("GET /api/people/{person_id}/segments/{key}")
@click.argument("person_id")
@click.argument("key")
@json_option
@api_command
def why(person_id: str, key: str, as_json: bool, client) -> None:
    """Why a person is or is not in a segment: each condition with its value (the
    counted events by seq), and their history there."""
    try:
        data = client.get(f"/api/people/{person_id}/segments/{key}")
    except ApiError as exc:
        raise _swapped(client, exc, person_id, key) from None
    if as_json:
        print_json(data)
        return
    verdict = "a member" if data["member"] else "not a member"
    change = data.get("next_change")
    _print_explained(f"{data['person']} is {verdict} of {data['segment']} "
                     f"{since_text(data['since'])}"
                     + (f"; by time passing alone, this changes at {change}" if change else ""),
                     data)
    console.print("history:" + ("" if data["history"] else " no change recorded"),
                  highlight=False)
    for h in data["history"]:
        console.print(history_line(h), highlight=False, soft_wrap=True)


def _swapped(client, exc: ApiError, person_id: str, key: str) -> ApiError:
    """``exc``, with the command the user likely meant when they gave the segment first
    (as ``segments members KEY`` takes it) and it is one."""
    if exc.status != 404 or exc.field != "segment":
        return exc
    try:
        client.get(f"/api/segments/{person_id}")
    except ApiError:
        return exc
    return ApiError(exc.status, exc.code, f"{exc.message}; the person comes first: "
                    f"millpond segments why {key} {person_id}", exc.field)


def since_text(since: str | None) -> str:
    """``since <event time>``; ``since always`` when nothing dates the state (no event
    of the person is left in the log, or there never was one), as the console says."""
    return f"since {since or 'always'}"


def history_line(change: dict) -> str:
    """One membership change: when in event time (none for a change no event dates: the
    person's events all left the log), and when it was processed."""
    at = f"at {change['at']} (event time)" if change["at"] else "with no event time left"
    return (f"  {'entered' if change['member'] else 'exited'} {at},"
            f" processed {change['processed_at']}")


def _print_explained(verdict: str, why: dict) -> None:
    """The verdict line, then each condition with its value, indented."""
    for line in (verdict, *_explain(why["conditions"], 0)):
        console.print(line, highlight=False, soft_wrap=True)


def _explain(node: dict, depth: int) -> list[str]:
    pad, mark = "  " * depth, "yes" if node["result"] else "no "
    for kind in ("all", "any"):
        if kind in node:
            lines = [f"{pad}[{mark}] {kind} of:"]
            for child in node[kind]:
                lines += _explain(child, depth + 1)
            return lines
    if "not" in node:
        return [f"{pad}[{mark}] not:", *_explain(node["not"], depth + 1)]
    if "trait" in node:
        return [f"{pad}[{mark}] trait {node['trait']} {node['op']} "
                f"{json.dumps(node.get('value'))}: is {json.dumps(node['actual'])}"
                f" (set at {node['set_at']})"]
    if "event" in node:
        line = f"{pad}[{mark}] event {node['event']!r}{_window(node.get('window'))}: " \
               f"{node['count']} counted{_seen(node['events'])}"
        if node.get("not_counted"):
            line += f"; {node['not_counted']} not counted" \
                    f"{_seen(node['not_counted_events'])}"
        return [line]
    since = node.get("since")
    when = "" if since is None else f" since {since}" if node["result"] else \
        f", out since {since}"
    return [f"{pad}[{mark}] in segment {node['in_segment']}{when}"]


def _window(window: dict[str, str] | None) -> str:
    if not window:
        return ""
    if "after" in window:
        return f" after {window['after']} up to {window['until']}"
    return f" from {window['from']} to before {window['before']}"


def _seen(events: list[dict[str, Any]]) -> str:
    seen = ", ".join(f"seq {e['seq']} at {e['timestamp']}" for e in events)
    return f" ({seen})" if seen else ""


@segments.command("delete")
@twin_of("DELETE /api/segments/{ref}")
@click.argument("ref")
@json_option
@api_command
def delete(ref: str, as_json: bool, client) -> None:
    """Delete a segment with its memberships (its past Audience events stay in the log)."""
    data = client.delete(f"/api/segments/{ref}")
    if as_json:
        print_json(data)
        return
    console.print(f"segment {data['key']} deleted", highlight=False)
