"""Profiles: people (identities, traits, groups) built from identify, group and alias events.

Out-of-order updates still end right. A profile store's state is a pure function of the
*set* of events applied to it: any arrival order, any split into ``apply_many`` batches, and
any number of re-applications give the same profiles. Every backend's store keeps these
rules (the planning is pure, :mod:`millpond.profiles.merge`; the stores only load and write
back; see ``millpond.storage``); :mod:`millpond.profiles.timestamps` says what
``_timestamp`` may hold. The rules:

**Trait time.** Each trait keeps the time of the update that set it: ``_timestamp`` in the
event's traits when it parses (Unix seconds as number or numeric string, or ISO 8601; see
:func:`~millpond.profiles.timestamps.parse_trait_timestamp`), else the event's ``timestamp``.
``_timestamp`` is never stored as a trait.

**Last writer wins, ties by messageId.** A trait update wins if its time is later. At equal
times the update whose ``messageId`` is lexicographically greater (compared by Unicode code
point) wins. Should two *different* events share a ``messageId``, their value's canonical JSON,
then ``seq``, then ``source_id`` decide, so even that stays order-independent. Values are
replaced whole: an object-valued trait is not deep-merged.

**null clears, and leaves a tombstone.** A trait set to ``null`` by the winning update is
absent from ``traits`` (and from ``trait_times`` / ``trait_sources``). Its time is kept, listed
in ``cleared_traits``, so an older value arriving later does not bring the trait back; a newer
value does. Group traits follow the same rule.

**Identity.** Every id an identify / group / alias event names belongs to one person: identify
joins ``userId`` and ``anonymousId``, alias joins ``previousId`` to ``userId``. Joins are
transitive and permanent (profiles merge, never split). Ids live in one namespace: a profile is
found by any of its ids, user or anonymous, and by its profile ``id``.

- ``user_ids``: every id ever sent as a ``userId``; ``anonymous_ids``: the profile's other ids.
- ``user_id``: when several user ids were joined (e.g. by alias), the ``userId`` of the
  profile's latest event that sent one (greatest effective time, ties by greater
  ``messageId``). An alias's ``userId`` is the new name, its ``previousId`` does not compete.
- ``id``: ``prf_`` plus a digest of the profile's canonical identity, the id mentioned earliest
  (least effective time, then ``messageId``, then id). In forward-moving traffic a profile keeps
  its id when others merge into it; a backfill that reveals an earlier identity may change it,
  and a profile id handed out before keeps resolving to the merged profile.

**Merges.** A merge re-resolves every trait as the winner across both profiles, and the facts
above as max / min over both; none of this depends on which side was there first.

**Groups.** A group call records membership ``groupId -> traits`` on the profile of the ids it
names, with the same last-writer-wins rule per group trait.

**Provenance.** Each trait remembers the ``messageId``, ``seq`` and ``source_id`` of the event
that set it (``trait_sources``).

Applying is idempotent: re-applying an event (same ``messageId``, same content) changes nothing,
because every rule is a max / min / union that already contains it; no dedupe table is needed.
"""

from .timestamps import parse_trait_timestamp

__all__ = ["parse_trait_timestamp"]
