"""``millpond replay``: the twin of ``/api/replays`` (preview, start, watch, steer)."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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


def _print_preview(answer: dict) -> None:
    pv = answer["preview"]
    console.print(f"Replay preview for {answer['destination_name']}: "
                  f"{pv['events']:,} events from {answer['window']['from']} to "
                  f"{answer['window']['to'] or 'now'}")
    table = Table(show_header=True, title="what would happen")
    table.add_column("")
    table.add_column("events", justify="right")
    for row in pv["actions"]:
        table.add_row(f"send via {row['action']}", f"{row['would_send']:,}")
    for row in pv["unhandled"]:
        table.add_row(f"skip: no action handles {row['type']}", f"{row['events']:,}")
    for row in pv["skipped"]:
        table.add_row(f"skip ({row['action'] or 'all'}): {row['reason']}", f"{row['events']:,}")
    for row in pv["mapping_errors"]:
        table.add_row(f"error ({row['action']}): {row['reason']}", f"{row['events']:,}")
    for row in pv["excluded"]:
        table.add_row(f"excluded: {row['reason']}", f"{row['events']:,}")
    console.print(table)
    console.print("by type: " + ", ".join(f"{k} {v:,}" for k, v in pv["by_type"].items()))
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
