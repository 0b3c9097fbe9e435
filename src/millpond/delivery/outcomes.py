"""How each item of a delivery run ends, as closed types instead of strings and tuples.

Why enums and records: the outcome of an item is a closed vocabulary that counters,
stats, ``/metrics`` and reports all branch on; a typo in a string compares unequal
silently, an enum member does not exist. ``Outcome`` is a ``StrEnum``, so counter keys
stored as plain strings by a backend compare and hash equal to the members, and members
are singletons, which the ledger's identity-based run counting relies on.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import msgspec

from millpond.storage.models import DeadLetter


class Outcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"
    RETRIED = "retried"
    #: Not an item's end: a dead letter a redrive took back (its event now ends anew,
    #: counted in the redrive's own outcomes). Counted apart so that every counter only
    #: grows (``/metrics`` exports flows); stats subtract it from ``dead_lettered``.
    REDRIVEN = "redriven"


#: The members as module constants, for hot loops (a global read, not an enum lookup).
SENT, SKIPPED, DEAD_LETTERED, RETRIED = (Outcome.SENT, Outcome.SKIPPED, Outcome.DEAD_LETTERED,
                                         Outcome.RETRIED)

#: A counter key: (action, outcome, reason); action "" for event-level skips.
CountKey = tuple[str, str, str]

#: Not a counter: the key under which every event a run read is recorded with the events
#: behind each count (``RunStore.outcome_events``), so "received" lists them too.
RECEIVED: CountKey = ("", "received", "")


class Decision(msgspec.Struct, frozen=True, gc=False):
    """What one action does with one event: ``outcome`` None means send ``payload``;
    otherwise skipped or dead-lettered with ``reason`` (a dead reason starts with its
    category before a colon, which labels counters).

    What ``Evaluator.decide`` returns. The hot loops (``Evaluator.evaluate`` in every
    pump, the replay preview's tally) make none: they call ``Evaluator.apply`` per
    matching action and use its tuple at once, since a record made per action per event
    only to be read back field by field cost a few percent of a replay's and a preview's
    CPU. A frozen msgspec Struct (typed, immutable; a NamedTuple or a frozen dataclass
    costs more to make). ``gc=False``: the cyclic GC never walks it (its payload is a
    dict the GC tracks on its own, and a decision is in no cycle).
    """

    action: str
    outcome: Outcome | None
    reason: str
    payload: Any


def dead_letter(event: dict[str, Any], action: str, reason: str, payload: Any = None,
                status: int | None = None, response: str | None = None) -> DeadLetter:
    """A dead letter as the engine makes it: the run and destination are filled in by the
    checkpoint (:func:`stamp`), which is the one place that knows them."""
    return DeadLetter("", "", event.get("seq") or 0, event.get("messageId"), action, reason,
                      status, response, payload, time.time())


def category(letter: DeadLetter) -> str:
    """The counter label of a dead letter: ``HTTP <status>`` for a vendor's refusal, else
    the reason's category (the text before its colon: ``mapping error``...)."""
    return f"HTTP {letter.status}" if letter.status else letter.reason.partition(":")[0]


def stamp(dead: list[DeadLetter], destination_id: str, run_id: str) -> list[DeadLetter]:
    """``dead`` with their destination and run set (in place; returned for chaining)."""
    for letter in dead:
        letter.destination_id = destination_id
        letter.run_id = run_id
    return dead
