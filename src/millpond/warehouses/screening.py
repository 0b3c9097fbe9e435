"""A loader screens its batch against the regulations once more, at its commit.

Why again, when the pump already skipped the events of screened people: the pump asks
before it hands a batch to the loader, and a warehouse write takes seconds. A deletion
accepted in between (``millpond.regulations``) removes the person's rows from the
destination, then the batch, built from events read before the deletion, would commit
them again: the person's rows land after their deletion. So each loader asks the
:class:`~millpond.delivery.screen.Screen` at a point its deletion cannot pass: the
``parquet`` writer under the location lock its deletion takes too, the ``postgres``
loader inside the batch's transaction, after taking the shared side of a lock whose
exclusive side the deletion takes (so the deletion waits for a batch screened before
it, and a batch waiting for the deletion is screened after it).

The events screened out here are listed in :attr:`~.batch.Loaded.screened` with the
screen's reason (``deleted``, ``suppressed``): the run has already let them through, so
the loader's answer names them, and the run records each as skipped with that reason
(:mod:`millpond.destinations.loaders`), never as sent: nothing of theirs is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from millpond.delivery.screen import Screen
from millpond.warehouses.batch import StoredEvent

__all__ = ["screened"]


def screened(events: Sequence[StoredEvent],
             screen: Screen | None) -> tuple[Sequence[StoredEvent], dict[int, str]]:
    """``events`` without those ``screen`` blocks now, and the seqs that went, each with
    the screen's reason."""
    if screen is None or not screen.active:
        return events, {}
    kept: list[StoredEvent] = []
    gone: dict[int, str] = {}
    for e in events:
        reason = screen.blocked(e.event.get("userId"), e.event.get("anonymousId"), e.seq)
        if reason:
            gone[e.seq] = reason
        else:
            kept.append(e)
    return kept, gone
