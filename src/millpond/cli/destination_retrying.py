"""``millpond destinations retrying``: the events a destination holds for a next attempt
right now (the twin of ``GET /api/destinations/{ref}/retrying``)."""

from __future__ import annotations

import time
from urllib.parse import quote

import click

from millpond.cli.common import api_command, json_option, twin_of
from millpond.cli.output import console, print_json, print_table


@click.command("retrying")
@twin_of("GET /api/destinations/{ref}/retrying")
@click.argument("ref")
@click.option("--run", default="live", show_default=True, metavar="live|REPLAY_ID",
              help="Live delivery (with redrives) or one of the destination's replays.")
@click.option("--action", default=None, metavar="NAME", help="Only this action's events.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@json_option
@api_command
def retrying(ref: str, run: str, action: str | None, limit: int, as_json: bool,
             client) -> None:
    """The events destination REF (id or name) is retrying now: each with its failed
    attempts, when the next attempt is due and the vendor's last answer."""
    params = {"run": run, "limit": limit, "action": action}
    data = client.get(f"/api/destinations/{quote(ref, safe='')}/retrying",
                      {k: v for k, v in params.items() if v is not None})
    if as_json:
        print_json(data)
        return
    now = time.time()
    rows = [{"seq": e["seq"], "message_id": e["message_id"] or "", "action": e["action"],
             "attempts": e["attempts"],
             "next_attempt_in": f"{max(0.0, e['next_attempt_at'] - now):.1f}s",
             "last_answer": e["reason"][:80]} for e in data["events"]]
    print_table(rows, ["seq", "message_id", "action", "attempts", "next_attempt_in",
                       "last_answer"])
    shown = len(data["events"])
    more = f" (first {shown} shown)" if shown < data["total"] else ""
    console.print(f"{data['total']} events retrying now{more}; {data['retry_attempts']} retry "
                  "attempts counted so far", highlight=False, markup=False)
