"""What ``millpond cluster status`` (``GET /api/cluster``) shows: the processes of a
scale-out cluster with their roles and heartbeats, who holds each lease, the log's stream
(messages, bytes, replicas, leader) and each destination's lag.

Why lag from the saved cursors rather than from the pumps: any process answers, and most
destinations are delivered by another one; the cursor committed in PostgreSQL is what a
new owner would resume from, so it is the honest "behind" for the whole cluster.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from millpond.app.membership import DEST
from millpond.app.services import Services
from millpond.connections.runner import head_received, live_run, run_cursor
from millpond.storage import leases_of, stream_state_of


async def cluster_status(mp: Services) -> dict[str, Any]:
    """The status document (``clustered`` false and empty lists on the embedded store)."""
    leases, stream = leases_of(mp.storage), stream_state_of(mp.storage)
    if leases is None or stream is None:
        return {"clustered": False, "place": None, "processes": [], "leases": [],
                "stream": None, "destinations": []}
    processes = await asyncio.to_thread(leases.processes)
    held = await asyncio.to_thread(leases.leases)
    state = await asyncio.to_thread(stream)
    dests = await asyncio.to_thread(mp.storage.destinations.list)
    owners = {lease.name: lease for lease in held if lease.expires_in > 0}
    rows = []
    for dest in dests:
        cursor = await asyncio.to_thread(lambda d=dest: run_cursor(live_run(mp.storage.runs, d), d))
        behind = max(0, state.last_seq - cursor)
        oldest = await head_received(mp.log, cursor) if behind else None
        lease = owners.get(DEST + dest.id)
        rows.append({"id": dest.id, "name": dest.name, "enabled": dest.enabled,
                     "owner": lease.owner if lease else None, "cursor": cursor,
                     "events_behind": behind,
                     "lag_seconds": round(max(0.0, time.time() - oldest), 3)
                     if oldest is not None else 0.0})
    return {"clustered": True, "place": mp.config.storage.place,
            "processes": [msgspec.to_builtins(p) for p in processes],
            "leases": [msgspec.to_builtins(lease) for lease in held],
            "stream": msgspec.to_builtins(state), "destinations": rows}
