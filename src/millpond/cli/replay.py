"""``millpond replay``: the twin of ``/api/replays`` (preview, start, watch, steer)."""

from __future__ import annotations

import json
import re
import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from millpond.cli.common import api_command, connection_options, json_option, twin_of
from millpond.cli.output import console, err_console, print_json, print_table

FINAL = ("completed", "cancelled", "failed")


@click.group()
@connection_options
def replay() -> None:
    """Resend a past window of events to a destination: preview, start, watch, steer."""


def _request(destination: str, sources: tuple[str, ...], since: str | None, until: str | None,
             flt: str | None, rate: float | None, include_live: bool, dry_run: bool) -> dict:
    body: dict = {"destination": destination, "dry_run": dry_run}
    if sources:
        body["sources"] = list(sources)
    for key, value in (("from", since), ("to", until), ("filter", flt), ("rate", rate)):
        if value is not None:
            body[key] = value
    if include_live:
        body["include_live"] = True
    return body


def _options(func):
    for option in reversed([
        click.argument("destination"),
        click.option("--source", "sources", multiple=True,
                     help="Source name or id (repeatable; default: every replayable one)."),
        click.option("--from", "since", help="Window start: ISO 8601, Unix seconds or -30d."),
        click.option("--to", "until", help="Window end (default: everything that arrived "
                                           "before the destination was connected)."),
        click.option("--filter", "flt", help='FQL filter, e.g. \'type = "track"\'.'),
        click.option("--rate", type=float, help="Events/s (default and maximum: the "
                                                "destination's rate limit)."),
        click.option("--include-live", is_flag=True,
                     help="Also events that arrived after the destination was connected."),
    ]):
        func = option(func)
    return func


#: Quoted values inside a reason (a user id, a value): folded so that one kind of error is
#: one line however many users it hit.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
#: How many entries of a long "by ..." list a person sees (``--json`` has them all).
TOP = 10


def fold_reason(reason: str) -> str:
    """``reason`` with its quoted values replaced by ``'…'`` (field names in backticks
    stay): ``userId 'ab' is shorter than 5`` and ``userId 'x' is shorter than 5`` are
    one kind of error."""
    return _QUOTED.sub("'…'", reason)


def folded_errors(errors: list[dict]) -> list[dict]:
    """The preview's mapping errors grouped by action and folded reason: events summed,
    how many different values it folded, and the first samples; most events first."""
    groups: dict[tuple, dict] = {}
    for row in errors:
        key = (row["action"], fold_reason(row["reason"]))
        group = groups.setdefault(key, {"action": key[0], "reason": key[1], "events": 0,
                                        "variants": 0, "samples": []})
        group["events"] += row["events"]
        group["variants"] += 1
        room = 3 - len(group["samples"])
        if room > 0:
            group["samples"].extend(
                {**sample, "reason": row["reason"]} for sample in row.get("samples", [])[:room])
    return sorted(groups.values(), key=lambda g: -g["events"])


def _counts(title: str, counts: dict) -> None:
    """``title: a 10, b 3, … and N more`` (the largest first, as the API orders them)."""
    items = list(counts.items())
    shown = ", ".join(f"{k} {v:,}" for k, v in items[:TOP])
    more = f", and {len(items) - TOP:,} more" if len(items) > TOP else ""
    console.print(f"{title}: {shown or 'none'}{more}", soft_wrap=True)


def _print_preview(answer: dict) -> None:
    """What ``--json`` shows, for a person: counts by source, type and event, what each
    action would do, mapping errors folded by reason, and samples."""
    pv = answer["preview"]
    console.print(f"Replay preview for {answer['destination_name']}: {pv['events']:,} events "
                  f"from {answer['window']['from']} to {answer['window']['to'] or 'now'}",
                  soft_wrap=True)
    _counts("by source", pv["by_source"])
    _counts("by type", pv["by_type"])
    _counts("by event", pv.get("by_event", {}))
    errors = folded_errors(pv["mapping_errors"])
    rows = [(f"send via {row['action']}", row["would_send"]) for row in pv["actions"]]
    rows += [(f"skip: no action handles {row['type']}", row["events"])
             for row in pv["unhandled"]]
    rows += [(f"skip ({row['action'] or 'all'}): {row['reason']}", row["events"])
             for row in pv["skipped"]]
    for group in errors:
        variants = f" ({group['variants']:,} different values)" if group["variants"] > 1 \
            else ""
        rows.append((f"error ({group['action']}): {group['reason']}{variants}",
                     group["events"]))
    rows += [(f"excluded: {row['reason']}", row["events"]) for row in pv["excluded"]]
    print_table([{"what would happen": what, "events": f"{n:,}"} for what, n in rows],
                ["what would happen", "events"])
    for group in errors:
        for sample in group["samples"]:
            console.print(f"  error sample: seq {sample.get('seq')}, messageId "
                          f"{sample.get('message_id')}: {sample['reason']}", soft_wrap=True)
    for sample in pv.get("samples", []):
        payload = json.dumps(sample.get("payload"), ensure_ascii=False, default=str)
        console.print(f"sample ({sample['action']}, seq {sample['seq']}, messageId "
                      f"{sample.get('message_id')}): {payload}", soft_wrap=True)
    est = answer["estimate"]
    console.print(f"estimated duration: {est['human']} ({est['events']:,} sends at "
                  f"{answer['rate']:,.0f}/s)")


def _print_status(answer: dict) -> None:
    p = answer["progress"]
    rows = [{"id": answer["id"], "state": answer["state"],
             "destination": answer["destination_name"], "scanned": p["scanned"],
             "of": answer["estimate"]["events"], "sent": p["sent"],
             "skipped": sum(p["skipped"].values()), "dead_lettered": p["dead_lettered"],
             "rate": answer["current_rate"], "eta_s": answer["eta_seconds"]}]
    print_table(rows, list(rows[0]))
    if answer.get("report"):
        console.print(answer["report"]["summary"])
    elif answer.get("error"):
        console.print(f"error: {answer['error']}")


def _watch(client, rid: str, every: float = 0.5) -> dict:
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                        TextColumn("{task.completed:,}/{task.total:,} scanned"),
                        TextColumn("{task.fields[sent]:,} sent"),
                        TextColumn("{task.fields[rate]:,.0f}/s"), TimeRemainingColumn(),
                        console=err_console)
    answer = client.get(f"/api/replays/{rid}")
    with progress:
        task = progress.add_task(f"replay {rid}", total=answer["estimate"]["events"] or None,
                                 sent=0, rate=0.0)
        while True:
            p = answer["progress"]
            progress.update(task, completed=p["scanned"], sent=p["sent"],
                            rate=answer["current_rate"])
            if answer["state"] in FINAL or answer["state"] == "paused":
                break
            time.sleep(every)
            answer = client.get(f"/api/replays/{rid}")
    return answer


@replay.command()
@twin_of("POST /api/replays")
@_options
@json_option
@api_command
def preview(destination, sources, since, until, flt, rate, include_live, as_json, client):
    """Dry run: what a replay would send, skip and fail on, and how long it would take."""
    answer = client.post("/api/replays", _request(destination, sources, since, until, flt, rate,
                                                  include_live, True))
    print_json(answer) if as_json else _print_preview(answer)


@replay.command()
@twin_of("POST /api/replays")
@_options
@click.option("--watch", is_flag=True, help="Show a progress bar until it ends.")
@json_option
@api_command
def start(destination, sources, since, until, flt, rate, include_live, watch, as_json, client):
    """Start a replay (refused with the reason when it cannot run)."""
    answer = client.post("/api/replays", _request(destination, sources, since, until, flt, rate,
                                                  include_live, False))
    if watch:
        answer = _watch(client, answer["id"])
    if as_json:
        print_json(answer)
        return
    if not watch:
        console.print(f"started replay {answer['id']}: {answer['estimate']['events']:,} events, "
                      f"about {answer['estimate']['seconds']:,.0f} s")
    _print_status(answer)


@replay.command()
@twin_of("GET /api/replays/{replay_id}")
@click.argument("replay_id")
@click.option("--watch", is_flag=True, help="Show a progress bar until it ends.")
@json_option
@api_command
def status(replay_id, watch, as_json, client):
    """Progress of a replay (and its final report once it ended)."""
    answer = _watch(client, replay_id) if watch else client.get(f"/api/replays/{replay_id}")
    print_json(answer) if as_json else _print_status(answer)


def _steer(verb: str):
    @replay.command(name=verb, help=f"{verb.capitalize()} a replay.")
    @twin_of(f"POST /api/replays/{{replay_id}}/{verb}")
    @click.argument("replay_id")
    @json_option
    @api_command
    def command(replay_id, as_json, client):
        answer = client.post(f"/api/replays/{replay_id}/{verb}")
        print_json(answer) if as_json else _print_status(answer)

    return command


pause, resume, cancel = _steer("pause"), _steer("resume"), _steer("cancel")


@replay.command(name="list")
@twin_of("GET /api/replays")
@click.option("--destination", help="Only this destination's replays.")
@json_option
@api_command
def list_replays(destination, as_json, client):
    """Every replay, oldest first."""
    replays = client.get("/api/replays", {"destination": destination})["replays"]
    if as_json:
        print_json(replays)
        return
    print_table([{"id": r["id"], "state": r["state"], "destination": r["destination_name"],
                  "from": r["window"]["from"], "to": r["window"]["to"],
                  "scanned": r["progress"]["scanned"], "sent": r["progress"]["sent"]}
                 for r in replays], ["id", "state", "destination", "from", "to", "scanned",
                                     "sent"])
