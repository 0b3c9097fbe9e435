"""Asking each configured destination to delete the people too.

Why per destination, with its own status: a vendor with a deletion API (Amplitude,
Mixpanel, Customer.io, PostHog; the requests are each type's ``deletion_requests``)
gets the calls and answers; a warehouse deletes the rows itself (``forget_rows``); a type
without either says ``not_supported`` with the reason. One unsupported destination never
turns the whole regulation into a failure (Segment's way), nor does a failing one hide
the stores that are done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from millpond.connections.config import destination_type, parse_settings
from millpond.delivery.transport import Transport
from millpond.destinations.base import is_retryable_status
from millpond.errors import MillpondError
from millpond.storage.models import Destination, StepStatus

log = logging.getLogger("millpond.regulations")


class Forwarded(Exception):
    """A destination's deletion failed; ``retryable`` says whether trying again may help."""

    def __init__(self, reason: str, retryable: bool):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Forwarder:
    """Sends one regulation's deletion to one destination (see the module docstring)."""

    def __init__(self, transport: Transport):
        self.transport = transport

    async def forget(self, dest: Destination, user_ids: list[str], anonymous_ids: list[str],
                     requester: str) -> StepStatus:
        """``done`` (with the rows or requests it took), or ``not_supported`` with why;
        raises :class:`Forwarded` for a failure."""
        try:
            cls = destination_type(dest.type)
            dtype = cls(parse_settings(cls, dest.settings))
        except MillpondError as exc:
            return StepStatus("not_supported", reason=f"its settings no longer load: "
                                                      f"{exc.message}", updated_at=time.time())
        forget_rows = getattr(dtype, "forget_rows", None)
        if callable(forget_rows):
            try:
                removed = await asyncio.to_thread(forget_rows, [*user_ids, *anonymous_ids])
            except Exception as exc:  # noqa: BLE001 - a warehouse error is the step's outcome
                raise Forwarded(f"{type(exc).__name__}: {exc}", True) from exc
            return StepStatus("done", removed=cast(int, removed), updated_at=time.time())
        requests = dtype.deletion_requests(user_ids, anonymous_ids, requester)
        if isinstance(requests, str):
            return StepStatus("not_supported", reason=requests, updated_at=time.time())
        for request in requests:
            try:
                answer = await self.transport.send(request)
            except Exception as exc:  # noqa: BLE001 - a network error is retried
                raise Forwarded(f"{request.method} {request.url}: {type(exc).__name__}: "
                                f"{exc}", True) from exc
            if not 200 <= answer.status < 300:
                excerpt = answer.body[:300].decode("utf-8", errors="replace")
                raise Forwarded(f"{request.method} {request.url.split('?')[0]} answered "
                                f"HTTP {answer.status}: {excerpt}",
                                is_retryable_status(answer.status))
        return StepStatus("done", removed=len(requests), updated_at=time.time())
