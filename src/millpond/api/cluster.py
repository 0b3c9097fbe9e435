"""``/api/cluster``: the processes, leases, stream and destination lag of a scale-out
cluster (:mod:`millpond.app.cluster_status`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from millpond.api.deps import require_admin, services
from millpond.api.models import ClusterStatus
from millpond.api.schema import doc
from millpond.app.cluster_status import cluster_status
from millpond.app.services import Services

router = APIRouter(prefix="/api/cluster", tags=["cluster"], dependencies=[Depends(require_admin)])


@router.get("", **doc(ClusterStatus))
async def show_cluster(mp: Services = Depends(services)) -> dict:
    """Processes (role, last heartbeat), lease owners, the log's stream (messages, bytes,
    replicas, leader) and each destination's lag; ``clustered`` false on the embedded
    store."""
    return await cluster_status(mp)
