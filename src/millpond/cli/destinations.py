"""``millpond destinations``: the twin of ``/api/destinations`` and ``/api/destination-types``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from millpond.cli.common import (
    api_command,
    connection_options,
    json_argument,
    json_option,
    twin_of,
)
from millpond.cli.output import console, fail, print_json, print_table

LIST_COLUMNS = ["id", "name", "type", "enabled", "state", "sent", "dead_lettered",
                "events_behind", "lag_seconds"]


@click.group()
@connection_options
def destinations() -> None:
    """Configure where events go, watch delivery, and test events against actions."""


# -- helpers ------------------------------------------------------------------------------
def _coerce(value: str, schema: dict | None) -> Any:
    """``--setting k=v`` values are strings unless the setting's schema wants a number,
    boolean, object or array, so a numeric secret stays a string."""
    kinds = set()
    for option in [schema or {}, *(schema or {}).get("anyOf", [])]:
        kind = option.get("type")
        kinds.update(kind if isinstance(kind, list) else [kind] if kind else [])
    if kinds and kinds <= {"string", "null"}:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _settings(client, type_name: str, pairs: tuple[str, ...], settings_json: str | None,
              base: dict | None = None) -> dict | None:
    if not pairs and settings_json is None:
        return None
    settings = dict(base or {})
    if settings_json is not None:
        loaded = json_argument("--settings-json", settings_json, '{"api_secret": "..."}')
        if not isinstance(loaded, dict):
            fail('--settings-json must be a JSON object, e.g. \'{"api_secret": "..."}\'')
        settings.update(loaded)
    if pairs:
        props = _schema_properties(client, type_name)
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                fail(f"--setting must look like key=value; got {pair!r}")
            settings[key] = _coerce(value, props.get(key))
    return settings


def _schema_properties(client, type_name: str) -> dict:
    for t in client.get("/api/destination-types")["types"]:
        if t["name"] == type_name:
            schema = t.get("settings_schema") or {}
            ref = schema.get("$ref", "")
            if ref:
                schema = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], schema)
            return schema.get("properties", {})
    return {}


def _actions(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read actions from {path}: {exc}")
    if isinstance(data, dict) and "actions" in data:
        data = data["actions"]
    if not isinstance(data, list):
        fail(f"{path} must hold a JSON list of actions (or {{\"actions\": [...]}})")
    return data


def _rate(rate: float | None, requests: float | None,
          max_retry_after: float | None = None, max_in_flight: int | None = None) -> dict | None:
    out: dict[str, float | int] = {}
    if rate is not None:
        out["events_per_second"] = rate
    if requests is not None:
        out["requests_per_second"] = requests
    if max_retry_after is not None:
        out["max_retry_after"] = max_retry_after
    if max_in_flight is not None:
        out["max_in_flight"] = max_in_flight
    return out or None


def _row(dest: dict) -> dict:
    stats = dest.get("stats", {})
    return {**dest, **{k: stats.get(k) for k in ("state", "sent", "dead_lettered",
                                                  "events_behind", "lag_seconds")}}


def _print_destination(dest: dict) -> None:
    stats = dest.get("stats", {})
    console.print(f"{dest['name']} ({dest['id']}) type={dest['type']} "
                  f"enabled={dest['enabled']} connected_at={dest['connected_at']}",
                  highlight=False)
    settings = json.dumps(dest["settings"], ensure_ascii=False)  # masks print as ••••cret
    console.print(f"settings: {settings}", highlight=False, markup=False)
    console.print(f"rate limit: {json.dumps(dest['rate_limit'])}", highlight=False)
    print_table([{"name": a["name"], "enabled": a.get("enabled", True),
                  "trigger": a["trigger"], "max_event_age": a.get("max_event_age")}
                 for a in dest["actions"]], ["name", "enabled", "trigger", "max_event_age"],
                title="actions")
    if stats:
        _print_stats(stats)


def when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_loads(loads: dict) -> None:
    """A warehouse's or storage's tables: rows loaded, discards and last load."""
    print_table([{"table": name, "rows": t["rows"], "discards": t["discards"],
                  "last load": when(t["last_load"])} for name, t in loads["tables"].items()],
                ["table", "rows", "discards", "last load"])
    console.print(f"{loads['loads']} loads; last {when(loads['last_load'])}; "
                  f"lag {loads['lag_seconds']}s", highlight=False, markup=False)


def _print_stats(stats: dict) -> None:
    console.print(f"state: {stats['state']}  cursor: {stats['cursor']}  events behind: "
                  f"{stats['events_behind']}  lag: {stats['lag_seconds']}s  "
                  f"dead letters waiting: {stats['dead_letters_waiting']}", highlight=False)
    if stats.get("delivered_by"):
        age = stats.get("state_age")
        console.print(f"delivered by {stats['delivered_by']}"
                      + (f" (its state as of {age:g}s ago)" if age is not None else ""),
                      highlight=False, markup=False)
    if "in_flight" in stats:
        console.print(f"sending: {stats['sent_per_second']:g} events/s, {stats['in_flight']} of "
                      f"{stats['max_in_flight']} requests in flight", highlight=False)
    if stats.get("last_error"):
        console.print(f"last error: {stats['last_error']}", highlight=False, markup=False)
    if stats.get("loads"):
        _print_loads(stats["loads"])
    if stats.get("retry_now"):
        console.print(f"next attempt in {stats.get('next_attempt_in') or 0:.0f}s (vendor waits "
                      f"are capped at {stats.get('max_retry_after', 300):g}s); to try now: "
                      "millpond destinations retry-now <name>", highlight=False, markup=False)
    rows = [{"action": name, "sent": a["sent"], "dead_lettered": a["dead_lettered"],
             "retried": a["retried"],
             "skipped": ", ".join(f"{r}: {n}" for r, n in a["skipped"].items())}
            for name, a in stats.get("actions", {}).items()]
    rows.append({"action": "(all)", "sent": stats["sent"],
                 "dead_lettered": stats["dead_lettered"], "retried": stats["retried"],
                 "skipped": ", ".join(f"{r}: {n}" for r, n in stats["skipped"].items())})
    print_table(rows, ["action", "sent", "skipped", "dead_lettered", "retried"], title="delivery")


# -- commands -----------------------------------------------------------------------------
@destinations.command("types")
@twin_of("GET /api/destination-types")
@json_option
@api_command
def types(as_json: bool, client) -> None:
    """The destination catalog: types, default rate limits and preset actions."""
    data = client.get("/api/destination-types")["types"]
    if as_json:
        print_json(data)
        return
    print_table([{"name": t["name"], "kind": t["kind"], "title": t["title"],
                  "replayable": t["replayable"],
                  "events/s": t["default_rate_limit"]["events_per_second"],
                  "batch": t["batching"]["max_events"],
                  "presets": ", ".join(p["name"] for p in t["presets"])} for t in data],
                ["name", "kind", "title", "replayable", "events/s", "batch", "presets"])


@destinations.command("add")
@twin_of("POST /api/destinations")
@click.argument("name")
@click.option("--type", "type_name", required=True, help="Destination type (see `types`).")
@click.option("--setting", "pairs", multiple=True, metavar="KEY=VALUE",
              help="One setting (repeatable).")
@click.option("--settings-json", default=None,
              help="All settings as a JSON object, or @FILE (@- reads standard input).")
@click.option("--rate", type=float, default=None, help="Events per second (default: type's).")
@click.option("--requests-rate", type=float, default=None, help="Requests per second.")
@click.option("--max-in-flight", type=click.IntRange(1), default=None,
              help="Requests on the wire at once (default: type's); per-user order is kept.")
@click.option("--actions-file", type=click.Path(dir_okay=False), default=None,
              help="JSON list of actions (default: the type's presets).")
@click.option("--disabled", is_flag=True, help="Create without starting delivery.")
@json_option
@api_command
def add(name, type_name, pairs, settings_json, rate, requests_rate, max_in_flight, actions_file,
        disabled, as_json, client) -> None:
    """Connect a destination; live delivery starts with the next event."""
    body: dict[str, Any] = {"name": name, "type": type_name,
                            "settings": _settings(client, type_name, pairs, settings_json) or {},
                            "enabled": not disabled}
    if (limit := _rate(rate, requests_rate, max_in_flight=max_in_flight)) is not None:
        body["rate_limit"] = limit
    if (actions := _actions(actions_file)) is not None:
        body["actions"] = actions
    dest = client.post("/api/destinations", body)
    if as_json:
        print_json(dest)
        return
    console.print(f"created destination {dest['name']} ({dest['id']}, "
                  f"{dest['type']}) with {len(dest['actions'])} action(s); delivering events "
                  f"after seq {dest['connected_seq']}", highlight=False)


@destinations.command("list")
@twin_of("GET /api/destinations")
@json_option
@api_command
def list_(as_json: bool, client) -> None:
    """List destinations with their delivery state."""
    data = client.get("/api/destinations")["destinations"]
    print_json(data) if as_json else print_table([_row(d) for d in data], LIST_COLUMNS)


@destinations.command("show")
@twin_of("GET /api/destinations/{ref}")
@click.argument("ref")
@json_option
@api_command
def show(ref: str, as_json: bool, client) -> None:
    """One destination (by id or name): settings (masked), actions and stats."""
    data = client.get(f"/api/destinations/{ref}")
    print_json(data) if as_json else _print_destination(data)


@destinations.command("stats")
@twin_of("GET /api/destinations/{ref}/stats")
@click.argument("ref", required=False)
@json_option
@api_command
def stats(ref: str | None, as_json: bool, client) -> None:
    """Delivery counts by action and outcome, lag and events behind (one or all)."""
    if ref:
        data = client.get(f"/api/destinations/{ref}/stats")
        if as_json:
            print_json(data)
        else:
            console.print(f"{data['name']} ({data['id']})", highlight=False)
            _print_stats(data["stats"])
        return
    data = client.get("/api/destinations")["destinations"]
    if as_json:
        print_json([{"id": d["id"], "name": d["name"], "stats": d["stats"]} for d in data])
    else:
        print_table([_row(d) for d in data], LIST_COLUMNS)


@destinations.command("update")
@twin_of("PATCH /api/destinations/{ref}")
@click.argument("ref")
@click.option("--name", default=None, help="New name.")
@click.option("--setting", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Change one setting (repeatable); others stay.")
@click.option("--settings-json", default=None,
              help="Settings to change, as a JSON object, or @FILE (@- reads standard input).")
@click.option("--rate", type=float, default=None, help="Events per second.")
@click.option("--requests-rate", type=float, default=None, help="Requests per second.")
@click.option("--max-in-flight", type=click.IntRange(1), default=None,
              help="Requests on the wire at once (default: type's); per-user order is kept.")
@click.option("--max-retry-after", type=float, default=None,
              help="Longest vendor Retry-After honoured, in seconds (default 300).")
@click.option("--max-retry-age", default=None, metavar="DURATION",
              help='Give up (dead-letter) after failing this long, e.g. "4h" (the default).')
@click.option("--actions-file", type=click.Path(dir_okay=False), default=None,
              help="Replace the actions with this JSON list.")
@click.option("--preset-actions", is_flag=True, help="Go back to the type's preset actions.")
@json_option
@api_command
def update(ref, name, pairs, settings_json, rate, requests_rate, max_in_flight, max_retry_after,
           max_retry_age, actions_file, preset_actions, as_json, client) -> None:
    """Change a destination; delivery restarts with the new configuration."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if pairs or settings_json is not None:
        current = client.get(f"/api/destinations/{ref}")
        body["settings"] = _settings(client, current["type"], pairs, settings_json,
                                     base=current["settings"])
    if (limit := _rate(rate, requests_rate, max_retry_after, max_in_flight)) is not None:
        body["rate_limit"] = limit
    if max_retry_age is not None:
        body["rate_limit"] = {**body.get("rate_limit", {}), "max_retry_age": max_retry_age}
    if actions_file and preset_actions:
        fail("give --actions-file or --preset-actions, not both")
    if actions_file:
        body["actions"] = _actions(actions_file)
    elif preset_actions:
        body["actions"] = None
    if not body:
        fail("nothing to change; see --help")
    dest = client.patch(f"/api/destinations/{ref}", body)
    if as_json:
        print_json(dest)
    else:
        console.print(f"updated destination {dest['name']} ({dest['id']})", highlight=False)


@destinations.command("delete")
@twin_of("DELETE /api/destinations/{ref}")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_command
def delete(ref: str, yes: bool, client) -> None:
    """Delete a destination with its cursor, counters and dead letters."""
    if not yes:
        click.confirm(f"delete destination {ref} (and its dead letters)?", abort=True)
    data = client.delete(f"/api/destinations/{ref}")["deleted"]
    console.print(f"deleted destination {data['name']} ({data['id']})", highlight=False)


@destinations.command("enable")
@twin_of("POST /api/destinations/{ref}/enable")
@click.argument("ref")
@api_command
def enable(ref: str, client) -> None:
    """Resume delivery from where it stopped (the backlog is still in the log)."""
    data = client.post(f"/api/destinations/{ref}/enable")
    console.print(f"enabled {data['name']}; {data['stats']['events_behind']} events behind",
                  highlight=False)


@destinations.command("retry-now")
@twin_of("POST /api/destinations/{ref}/retry-now")
@click.argument("ref")
@json_option
@api_command
def retry_now(ref: str, as_json: bool, client) -> None:
    """Try a waiting request again now, not after the vendor's Retry-After (or backoff)."""
    data = client.post(f"/api/destinations/{ref}/retry-now")
    if as_json:
        print_json(data)
    else:
        console.print(data["message"], highlight=False, markup=False)


@destinations.command("disable")
@twin_of("POST /api/destinations/{ref}/disable")
@click.argument("ref")
@api_command
def disable(ref: str, client) -> None:
    """Pause delivery; events keep arriving in the log and wait."""
    data = client.post(f"/api/destinations/{ref}/disable")
    console.print(f"disabled {data['name']}", highlight=False)


@destinations.command("test")
@twin_of("POST /api/destinations/{ref}/test")
@click.argument("ref")
@click.option("--event", "event_json", default=None,
              help="The event as JSON, or @FILE (@- reads standard input).")
@click.option("--event-file", type=click.Path(dir_okay=False), default=None)
@click.option("--message-id", default=None, help="A stored event's messageId.")
@click.option("--seq", type=int, default=None, help="A stored event's seq.")
@json_option
@api_command
def try_event(ref, event_json, event_file, message_id, seq, as_json, client) -> None:
    """Show what each action would do with one event, and the request it would send
    (secrets masked), without sending anything."""
    given = [x for x in (event_json, event_file, message_id, seq) if x is not None]
    if len(given) != 1:
        fail("give exactly one of --event, --event-file, --message-id or --seq")
    if event_json is not None or event_file is not None:
        body: dict[str, Any] = {"event": json_argument(
            "--event", event_json if event_json is not None else f"@{event_file}",
            '{"type": "track", "event": "Order Completed", "userId": "u1"}')}
    elif message_id is not None:
        body = {"message_id": message_id}
    else:
        body = {"seq": seq}
    data = client.post(f"/api/destinations/{ref}/test", body)
    if as_json:
        print_json(data)
        return
    console.print(f"event outcome: {data['outcome']}"
                  + (f" ({data['reason']})" if data["reason"] else ""), highlight=False)
    for a in data["actions"]:
        verdict = "disabled" if not a["enabled"] else (
            a["outcome"] if a["matched"] else "trigger does not match")
        console.print(f"\n{a['action']}: {verdict}"
                      + (f" ({a['reason']})" if a["reason"] else ""), highlight=False)
        if a["request"]:
            r = a["request"]
            console.print(f"{r['method']} {r['url']}", highlight=False, markup=False)
            for k, v in r["headers"].items():
                console.print(f"{k}: {v}", highlight=False, markup=False)
            body_text = r["body"] if isinstance(r["body"], str) else json.dumps(
                r["body"], indent=2, ensure_ascii=False)
            console.print(body_text, highlight=False, markup=False)
