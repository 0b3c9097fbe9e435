"""A regulation as the API, the CLI and the console show it (plain JSON)."""

from __future__ import annotations

from typing import Any

from millpond.storage.contracts import DestinationStore
from millpond.storage.models import Regulation, StepStatus
from millpond.timeutil import format_seconds


def step(status: StepStatus) -> dict[str, Any]:
    return {"state": status.state, "removed": status.removed, "attempts": status.attempts,
            "reason": status.reason,
            "updated_at": format_seconds(status.updated_at) if status.updated_at else None}


def present(reg: Regulation, destinations: DestinationStore) -> dict[str, Any]:
    names = {d.id: d.name for d in destinations.list()}
    return {
        "id": reg.id, "type": reg.type.value, "state": reg.state,
        "user_ids": reg.user_ids, "anonymous_ids": reg.anonymous_ids, "ids": reg.ids,
        "requested_by": reg.requested_by, "created_at": format_seconds(reg.created_at),
        "suppressed": reg.suppressed,
        "stores": {name: step(s) for name, s in reg.stores.items()},
        "destinations": {dest_id: {"name": names.get(dest_id, dest_id), **step(s)}
                         for dest_id, s in reg.destinations.items()},
        "finished_at": format_seconds(reg.finished_at) if reg.finished_at else None,
        "lifted_by": reg.lifted_by,
    }
