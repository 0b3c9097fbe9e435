"""Destinations: the catalog, a settings form per type, the actions editor, the delivery
funnel per action (live and per replay), dead letters with Redrive; enable, disable,
delete. The event tester is in :mod:`.tester`."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from millpond.console import forms, settings_form, tester
from millpond.console.auth import checked_form
from millpond.delivery.evaluate import TOO_OLD
from millpond.errors import BadRequest, MillpondError, NotFound


def funnel(actions: dict, received: int, no_action: dict[str, int],
           retrying: Mapping[str, int] | None = None) -> list[dict]:
    """received → matched → mapped → sent per action, from the delivery counters.

    Per-action skips and dead letters happen after the trigger matched, so ``matched``
    is their sum with ``sent``; ``mapped`` leaves out what the age window skipped and
    what the mapping could not map. ``retrying``: events held for a next attempt now,
    per action (a gauge from the pumps, not a counter: they are not counted above until
    they end)."""
    retrying = retrying or {}
    rows = []
    for name in sorted(set(actions) | set(retrying)):
        c: dict = actions.get(name) or {"sent": 0, "dead_lettered": 0}
        skipped = dict(c.get("skipped", {}))
        dead_by = dict(c.get("dead_lettered_by", {}))
        matched = c["sent"] + sum(skipped.values()) + c["dead_lettered"]
        mapped = matched - skipped.get(TOO_OLD, 0) - dead_by.get("mapping error", 0)
        rows.append({"action": name, "received": received, "matched": matched,
                     "mapped": mapped, "sent": c["sent"], "skipped": skipped,
                     "retrying": retrying.get(name, 0), "dead_lettered": c["dead_lettered"],
                     "dead_by": dead_by})
    return rows


def routes(console) -> list[Route]:
    svc = console.services
    render = console.render

    async def index(request: Request) -> Response:
        return render.page(request, "destinations.html", section="destinations",
                           title="Destinations", destinations=await svc.destinations(),
                           catalog=svc.catalog())

    def new_form(request: Request, entry: dict, *, error=None, field=None, typed=None,
                 name="", rate="", status=200) -> Response:
        return render.page(request, "destination_new.html", section="destinations",
                           title=f"Add {entry['title']}", entry=entry,
                           fields=settings_form.fields(entry, typed=typed), error=error,
                           field=field, name=name, rate=rate, status=status)

    async def new(request: Request) -> Response:
        entry = svc.destination_type(request.query_params.get("type", ""))
        return new_form(request, entry, name=entry["title"])

    async def create(request: Request) -> Response:
        form = await checked_form(request)
        entry = svc.destination_type(forms.text(form, "type"))
        name, rate = forms.text(form, "name"), forms.text(form, "rate")
        try:
            body: dict = {"name": name, "type": entry["name"],
                          "settings": settings_form.parse(entry, form)}
            if rate:
                body["rate_limit"] = {"events_per_second": _number(rate, "rate_limit")}
            dest = await svc.create_destination(body)
        except MillpondError as exc:
            return new_form(request, entry, error=exc.message, field=exc.field,
                            typed=settings_form.typed_values(form), name=name, rate=rate,
                            status=exc.status)
        if not entry["replayable"]:
            return forms.go(f"/destinations/{dest['id']}", f"Added destination "
                            f"{dest['name']}: its first sync loads the whole log, then it "
                            "follows live events.")
        return forms.go(f"/destinations/{dest['id']}", f"Added destination {dest['name']}: "
                        "it delivers events that arrive from now on. Replay past data to "
                        "send what came before.")

    async def show(request: Request) -> Response:
        dest = await svc.destination(request.path_params["ref"])
        st = dest["stats"]
        received = max(0, st["cursor"] - dest["connected_seq"])
        no_action = {r: n for r, n in st["skipped"].items() if r.startswith("no action")}
        replays = svc.replays(dest["id"])
        retrying = svc.retrying_counts(dest["id"])
        for r in replays:
            report = r.get("report") or {}
            r["funnel"] = funnel(report.get("actions", {}), r["progress"]["scanned"], {},
                                 retrying.get(r["id"]))
            r["retrying"] = sum((retrying.get(r["id"]) or {}).values())
        try:
            after = int(request.query_params.get("dead_after", 0))
        except ValueError:
            after = 0
        dead = svc.dead_letters(dest["id"], "dead", after, 50)
        entry = svc.destination_type(dest["type"])
        return render.page(request, "destination.html", section="destinations",
                           title=dest["name"], dest=dest, st=st, entry=entry,
                           live_funnel=funnel(st["actions"], received, no_action,
                                              retrying.get("live")),
                           no_action=no_action, received=received, replays=replays,
                           dead=dead, dead_next=dead[-1]["id"] if len(dead) == 50 else None,
                           live_run="live")

    def settings_page(request: Request, dest: dict, *, error=None, field=None, typed=None,
                      status=200) -> Response:
        entry = svc.destination_type(dest["type"])
        return render.page(request, "destination_settings.html", section="destinations",
                           title=f"{dest['name']} settings", dest=dest, entry=entry,
                           fields=settings_form.fields(entry, dest["settings"], typed),
                           error=error, field=field, status=status)

    async def settings(request: Request) -> Response:
        dest = await svc.destination(request.path_params["ref"])
        if request.method == "GET":
            return settings_page(request, dest)
        form = await checked_form(request)
        entry = svc.destination_type(dest["type"])
        try:
            body: dict = {"settings": settings_form.parse(entry, form, dest["settings"])}
            if forms.text(form, "name"):
                body["name"] = forms.text(form, "name")
            if forms.text(form, "rate"):
                body["rate_limit"] = {"events_per_second": _number(forms.text(form, "rate"),
                                                                   "rate_limit")}
            await svc.update_destination(dest["id"], body)
        except MillpondError as exc:
            return settings_page(request, dest, error=exc.message, field=exc.field,
                                 typed=settings_form.typed_values(form), status=exc.status)
        return forms.go(f"/destinations/{dest['id']}", "Settings saved.")

    def actions_page(request: Request, dest: dict, actions: list[dict], *, error=None,
                     field=None, status=200) -> Response:
        rows = [{**a, "mapping_text": a["mapping"] if isinstance(a.get("mapping"), str)
                 else json.dumps(a.get("mapping"), indent=2)} for a in actions]
        return render.page(request, "destination_actions.html", section="destinations",
                           title=f"{dest['name']} actions", dest=dest, actions=rows,
                           error=error, field=field, status=status)

    async def actions(request: Request) -> Response:
        dest = await svc.destination(request.path_params["ref"])
        if request.method == "GET":
            return actions_page(request, dest, dest["actions"])
        form = await checked_form(request)
        if forms.text(form, "presets") == "yes":
            await svc.update_destination(dest["id"], {"actions": None})
            return forms.go(f"/destinations/{dest['id']}/actions", "Back to the presets.")
        typed = _typed_actions(form)
        try:
            parsed = [_parse_action(i, a) for i, a in enumerate(typed) if a["name"]]
            await svc.update_destination(dest["id"], {"actions": parsed})
        except MillpondError as exc:
            return actions_page(request, dest, typed, error=exc.message, field=exc.field,
                                status=exc.status)
        return forms.go(f"/destinations/{dest['id']}", "Actions saved.")

    async def switch(request: Request) -> Response:
        await checked_form(request)
        ref, what = request.path_params["ref"], request.path_params["what"]
        if what not in ("enable", "disable", "delete", "retry-now"):
            raise NotFound(f"no such action {what!r}")
        if what == "retry-now":
            answer = await svc.retry_now(ref)
            message = answer["message"]  # it may name a process: not str.capitalize
            return forms.go(f"/destinations/{answer['id']}", message[:1].upper()
                            + message[1:] + ".")
        if what == "delete":
            dest = await svc.delete_destination(ref)
            return forms.go("/destinations", f"Deleted destination {dest['name']}.")
        dest = await svc.set_enabled(ref, what == "enable")
        return forms.go(f"/destinations/{dest['id']}", f"{dest['name']} {what}d.")

    async def redrive(request: Request) -> Response:
        form = await checked_form(request)
        ref = request.path_params["ref"]
        ids = [int(str(v)) for v in form.getlist("id") if str(v).isdigit()] or None
        result = await svc.redrive(ref, ids)
        refused = "; ".join(f"{r['id']}: {r['reason']}" for r in result["refused"])
        return forms.go(f"/destinations/{ref}", f"Redriving {result['redriving']:,} dead "
                        f"letters with the current configuration."
                        + (f" Refused: {refused}" if refused else ""))

    return [*tester.routes(console),
            Route("/destinations", index), Route("/destinations/new", new),
            Route("/destinations/new", create, methods=["POST"]),
            Route("/destinations/{ref}", show),
            Route("/destinations/{ref}/settings", settings, methods=["GET", "POST"]),
            Route("/destinations/{ref}/actions", actions, methods=["GET", "POST"]),
            Route("/destinations/{ref}/redrive", redrive, methods=["POST"]),
            Route("/destinations/{ref}/{what:str}", switch, methods=["POST"])]


def _number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"{field} must be a number of events per second; got {text!r}",
                         field=field) from None


def _typed_actions(form) -> list[dict]:
    out = []
    for i in range(int(forms.text(form, "count") or 0) + 1):
        out.append({"name": forms.text(form, f"a{i}.name"),
                    "trigger": forms.text(form, f"a{i}.trigger"),
                    "mapping": forms.text(form, f"a{i}.mapping"),
                    "max_event_age": forms.text(form, f"a{i}.max_event_age") or None,
                    "enabled": forms.text(form, f"a{i}.enabled", "yes") != "no"})
    return out


def _parse_action(i: int, typed: dict) -> dict:
    try:
        mapping = json.loads(typed["mapping"] or "{}")
    except ValueError as exc:
        raise BadRequest(f"actions[{i}].mapping must be JSON: {exc}",
                         field=f"actions[{i}].mapping") from None
    action = {"name": typed["name"], "trigger": typed["trigger"], "mapping": mapping,
              "enabled": typed["enabled"]}
    if typed["max_event_age"]:
        action["max_event_age"] = typed["max_event_age"]
    return action
