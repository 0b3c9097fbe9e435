"""Overview: events in now and over the last hour, each destination's lag and state, and
anything failing at the top."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CHART_W, CHART_H = 600, 120


def chart(per_minute: list[int]) -> dict:
    """Bar geometry for the server-rendered SVG (no charting library, no script)."""
    top = max(per_minute or [0]) or 1
    width = CHART_W / max(1, len(per_minute))
    bars = [{"x": round(i * width, 2), "w": round(max(1.0, width - 1), 2),
             "h": round(n / top * (CHART_H - 20), 2), "n": n,
             "label": f"{len(per_minute) - i} min ago: {n:,} events"}
            for i, n in enumerate(per_minute)]
    for bar in bars:
        bar["y"] = round(CHART_H - 12 - bar["h"], 2)
    return {"bars": bars, "top": top, "w": CHART_W, "h": CHART_H}


def alerts(destinations: list[dict], replays: list[dict], imports: list[dict]) -> list[dict]:
    """What needs someone: retrying, failing or broken destinations (with the vendor's answer),
    waiting dead letters, failed replays and imports."""
    out = []
    for d in destinations:
        st = d["stats"]
        if st.get("state") in ("retrying", "failing", "error"):
            out.append({"kind": st["state"], "what": f"Destination {d['name']} is {st['state']}",
                        "detail": st.get("last_error") or "", "href": f"/destinations/{d['id']}"})
        if st.get("dead_letters_waiting"):
            out.append({"kind": "dead_lettered",
                        "what": f"{st['dead_letters_waiting']:,} dead letters wait in {d['name']}",
                        "detail": "fix the destination, then redrive them",
                        "href": f"/destinations/{d['id']}#dead-letters"})
    for r in replays:
        if r["state"] == "failed":
            out.append({"kind": "failed", "what": f"Replay {r['id']} to "
                        f"{r['destination_name']} failed", "detail": r.get("error") or "",
                        "href": f"/replays/{r['id']}"})
    for job in imports:
        if job["state"] in ("failed", "interrupted"):
            out.append({"kind": "failed", "what": f"Import {job['id']} ({job['file']}) "
                        f"{job['state']}", "detail": job.get("error") or "",
                        "href": f"/imports/{job['id']}"})
    return out


def routes(console) -> list[Route]:
    svc = console.services

    async def overview(request: Request) -> Response:
        arrivals = await svc.arrivals()
        destinations = await svc.destinations()
        replays = svc.replays()
        imports = svc.imports()
        return console.render.page(
            request, "overview.html", section="overview", title="Overview",
            arrivals=arrivals, chart=chart(arrivals["per_minute"]),
            destinations=destinations, alerts=alerts(destinations, replays, imports),
            active_replays=[r for r in replays if r["state"] in ("running", "paused")],
            sources=len(svc.sources()), tiers=await svc.storage_tiers())

    return [Route("/", overview)]
