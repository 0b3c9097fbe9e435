"""``millpond destinations outcomes``: the events behind one count of the delivery funnel
(the twin of ``GET /api/destinations/{ref}/outcomes``)."""

from __future__ import annotations

from urllib.parse import quote

import click

from millpond.cli.common import api_command, json_option, twin_of
from millpond.cli.output import console, print_json, print_table

STEPS = ("received", "matched", "mapped", "sent", "skipped", "dead_lettered")


@click.command("outcomes")
@twin_of("GET /api/destinations/{ref}/outcomes")
@click.argument("ref")
@click.argument("step", type=click.Choice(STEPS))
@click.option("--action", default="", metavar="NAME",
              help="The action (empty: event-level skips, such as no action matched).")
@click.option("--reason", default=None, metavar="TEXT",
              help="skipped: the reason; dead_lettered: the category (e.g. 'HTTP 400').")
@click.option("--run", default="live", show_default=True, metavar="live|REPLAY_ID",
              help="Live delivery (with redrives) or one of the destination's replays.")
@click.option("--cursor", default=None, metavar="C", help="next_cursor of the page before.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@api_command
def outcomes(ref: str, step: str, action: str, reason: str | None, run: str,
             cursor: str | None, limit: int, as_json: bool, client) -> None:
    """The events behind one funnel count of destination REF (id or name), newest first:
    STEP is received, matched, mapped, sent, skipped or dead_lettered."""
    params = {"step": step, "action": action, "run": run, "limit": limit, "reason": reason,
              "cursor": cursor}
    data = client.get(f"/api/destinations/{quote(ref, safe='')}/outcomes",
                      {k: v for k, v in params.items() if v is not None})
    if as_json:
        print_json(data)
        return
    rows = [{"seq": e["seq"], "message_id": (e["event"] or {}).get("messageId", "(gone)"),
             "type": (e["event"] or {}).get("type", ""),
             "event": (e["event"] or {}).get("event", ""),
             "user": (e["event"] or {}).get("userId") or (e["event"] or {}).get("anonymousId")}
            for e in data["events"]]
    print_table(rows, ["seq", "message_id", "type", "event", "user"])
    if data.get("older_unlisted"):
        console.print(f"events finished more than {data['kept_days']} days ago are no longer "
                      "listed (the counts include them)", highlight=False, markup=False)
    if data["next_cursor"]:
        console.print(f"more: --cursor {data['next_cursor']}", highlight=False, markup=False)
