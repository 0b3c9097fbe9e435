"""Who is screened now: the ids of suppressed people, and of deleted people up to the log
position of their deletion.

Why in memory and rebuilt whole on each change: it is read on the collector's hot path
and by every pump for every event, and changes a few times a day. Readers take the
current pair of dicts without a lock (a change swaps them as one tuple), so a
regulation is in force for every reader as soon as :meth:`Blocklist.load` returns, which
the service calls before it answers the request.

A suppression blocks every event of its ids, past and future. A deletion blocks the
sending of events up to ``upto_seq`` (the log's position when it was accepted): the
deletion removes those, but a replay may have read some ahead of the removal, and they
must never go out; events the person sends later are kept and sent as anyone's.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from millpond import metrics
from millpond.storage.models import NewEvent, Regulation, RegulationType

SUPPRESSED = "suppressed"
DELETED = "deleted"

SUPPRESSING = frozenset({RegulationType.SUPPRESS, RegulationType.SUPPRESS_WITH_DELETE})
DELETING = frozenset({RegulationType.DELETE, RegulationType.SUPPRESS_WITH_DELETE})


class Blocklist:
    """:class:`~millpond.delivery.screen.Screen` for pumps, and the collector's check."""

    def __init__(self) -> None:
        #: (suppressed id -> regulation id, deleted id -> highest upto_seq)
        self._maps: tuple[dict[str, str], dict[str, int]] = ({}, {})
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        #: Every deleted id this process has screened, kept in its memory only: once a
        #: deletion finishes, its regulation names digests (redacted), yet a run that
        #: read their events before they went still must not send them; after a restart
        #: no run holds such events.
        self._remembered: dict[str, int] = {}

    def load(self, regulations: Iterable[Regulation]) -> None:
        """Rebuild from every stored regulation (oldest first wins nothing: any active
        suppression of an id suppresses it); the deleted ids screened so far stay."""
        for one, upto in self._maps[1].items():
            self._remembered[one] = max(self._remembered.get(one, 0), upto)
        suppressed: dict[str, str] = {}
        deleted: dict[str, int] = {}
        for reg in regulations:
            if reg.type in SUPPRESSING and reg.lifted_by is None:
                for one in reg.ids:
                    suppressed.setdefault(one, reg.id)
            if reg.type in DELETING and not reg.redacted:
                for one in reg.ids:
                    deleted[one] = max(deleted.get(one, 0), reg.upto_seq)
        for one, upto in self._remembered.items():
            deleted[one] = max(deleted.get(one, 0), upto)
        self._maps = (suppressed, deleted)

    @property
    def active(self) -> bool:
        suppressed, deleted = self._maps
        return bool(suppressed or deleted)

    def suppressing(self, user_id: object, anonymous_id: object) -> str | None:
        """The id of the regulation suppressing this person, or None (the collector and
        imports ask before storing)."""
        suppressed = self._maps[0]
        if not suppressed:
            return None
        found = suppressed.get(user_id) if isinstance(user_id, str) else None
        if found is None and isinstance(anonymous_id, str):
            found = suppressed.get(anonymous_id)
        return found

    def blocked(self, user_id: object, anonymous_id: object, seq: int) -> str | None:
        suppressed, deleted = self._maps
        for one in (user_id, anonymous_id):
            if not isinstance(one, str):
                continue
            if one in suppressed:
                return SUPPRESSED
            upto = deleted.get(one)
            if upto is not None and seq <= upto:
                return DELETED
        return None

    def count(self, regulation_id: str, n: int = 1) -> None:
        """``n`` events were refused because of ``regulation_id`` (saved by the service)."""
        with self._lock:
            self._counts[regulation_id] += n

    def pending(self, regulation_id: str) -> int:
        """Events refused because of ``regulation_id`` and not yet taken."""
        with self._lock:
            return self._counts.get(regulation_id, 0)

    def take_counts(self) -> Counter[str]:
        """The counts since the last call (the service adds them to the regulations)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


#: What a refused message of a suppressed person says (no id: nothing of theirs is kept).
SUPPRESSED_REASON = "this person is suppressed by a regulation; nothing of it is stored"


def screen_out(events: list[NewEvent], blocklist: Blocklist, source_id: str) -> list[int]:
    """Remove the events of suppressed people from ``events`` (in place), count them on
    their regulations and in ``/metrics``; the positions removed, in order."""
    removed: list[int] = []
    for i, event in enumerate(events):
        reg = blocklist.suppressing(event.user_id, event.anonymous_id)
        if reg is not None:
            removed.append(i)
            blocklist.count(reg)
    if removed:
        gone = set(removed)
        events[:] = [e for i, e in enumerate(events) if i not in gone]
        metrics.EVENTS_SUPPRESSED.labels(source_id).inc(len(removed))
    return removed
