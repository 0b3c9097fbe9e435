"""What a delivery asks before it sends an event: may this person's data go out at all?

Why a seam of its own, consulted by the pump and not by each kind of run: suppression and
deletion must hold for every run of every destination (live, replay, redrive, warehouse
loads, the Audience events of segments) from the moment they are accepted, so the one
place every event passes (the pump, through its destination's deliverer) asks. The
answer is a skip reason, so the event still ends as exactly one outcome.
"""

from __future__ import annotations

from typing import Protocol


class Screen(Protocol):
    """Which people's events must not be sent (``millpond.regulations.blocklist``)."""

    @property
    def active(self) -> bool:
        """False when nobody is screened: the pump then asks nothing per event."""
        ...

    def blocked(self, user_id: object, anonymous_id: object, seq: int) -> str | None:
        """The skip reason (``suppressed``, ``deleted``) when the event ``seq`` of this
        user id / anonymous id must not be sent, else None. Cheap; any thread."""
        ...
