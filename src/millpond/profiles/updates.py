"""Turn stored Segment events into the few facts the profile store needs.

Why a separate step: the store's merge logic should not know about Segment's field names, and
every ordering rule needs the same *effective time* per event, computed once, the same way,
for every trait, identity and group the event touches.

An event becomes a :class:`ProfileUpdate` when it is an ``identify``, ``group`` or ``alias``
with at least one identity; everything else is ``None`` (ignored, not counted):

- identities named: ``userId`` and ``anonymousId`` (and an alias's ``previousId``). All ids one
  event names belong to one person, so the store joins them: identify joins user and anonymous
  id, alias joins ``previousId`` to ``userId``. A group call that carries both ids is the same
  statement and joins them too. Ids are strings; numbers are accepted and turned into strings
  (some SDKs send numeric ids), empty strings and other types count as absent.
- effective time: ``traits._timestamp`` when it parses (see :mod:`.timestamps`), else the
  event's ``timestamp``, else ``received_at``, else 0. An unparseable ``_timestamp`` is ignored
  rather than rejected: the event is still valid Segment, it just loses its override.
- traits: identify traits become profile traits, group traits become the group's traits;
  ``_timestamp`` is never stored as a trait. Alias carries no traits.
- provenance: ``messageId`` (``""`` if missing, so ordering stays total), ``seq`` (non-negative
  int or None) and ``source_id`` (non-empty str or None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .timestamps import parse_trait_timestamp

__all__ = ["ProfileUpdate", "to_update", "PROFILE_TYPES"]

PROFILE_TYPES = frozenset({"identify", "group", "alias"})
_EMPTY: Mapping[str, Any] = {}


@dataclass(slots=True)
class ProfileUpdate:
    """What one profile-relevant event says, in store terms."""

    kind: str
    message_id: str
    time: float
    ids: tuple[str, ...]
    """Distinct identities the event names, in a fixed order; never empty."""
    user_id: str | None
    """The ``userId`` that names the person (a candidate for the profile's ``user_id``)."""
    traits: Mapping[str, Any]
    """Trait updates without ``_timestamp``: profile traits, or the group's traits."""
    group_id: str | None
    seq: int | None
    source_id: str | None


def _identity(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _event_time(event: Mapping[str, Any], traits: Mapping[str, Any]) -> float:
    if "_timestamp" in traits:
        override = parse_trait_timestamp(traits["_timestamp"])
        if override is not None:
            return override
    for field in ("timestamp", "received_at"):
        parsed = parse_trait_timestamp(event.get(field))
        if parsed is not None:
            return parsed
    return 0.0


def to_update(event: object) -> ProfileUpdate | None:
    """Return the profile facts of ``event``, or ``None`` if it does not concern profiles."""
    if not isinstance(event, Mapping):
        return None
    kind = event.get("type")
    if kind not in PROFILE_TYPES:
        return None
    user_id = _identity(event.get("userId"))
    anonymous_id = _identity(event.get("anonymousId"))
    if kind == "alias":
        named = (_identity(event.get("previousId")), user_id, anonymous_id)
        ids = tuple(dict.fromkeys(i for i in named if i is not None))
    elif user_id is None:
        ids = () if anonymous_id is None else (anonymous_id,)
    elif anonymous_id is None or anonymous_id == user_id:
        ids = (user_id,)
    else:
        ids = (user_id, anonymous_id)
    if not ids:
        return None
    group_id = None
    if kind == "group":
        group_id = _identity(event.get("groupId"))
        if group_id is None:
            return None
    raw_traits = event.get("traits")
    if not isinstance(raw_traits, Mapping):
        raw_traits = _EMPTY
    time = _event_time(event, raw_traits)
    if kind == "alias":
        traits: Mapping[str, Any] = _EMPTY
    elif "_timestamp" in raw_traits:
        traits = {k: v for k, v in raw_traits.items() if k != "_timestamp"}
    else:
        traits = raw_traits
    message_id = event.get("messageId")
    seq = event.get("seq")
    source_id = event.get("source_id")
    return ProfileUpdate(
        kind=kind,
        message_id=message_id if isinstance(message_id, str) else _identity(message_id) or "",
        time=time,
        ids=ids,
        user_id=user_id,
        traits=traits,
        group_id=group_id,
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None,
        source_id=source_id if isinstance(source_id, str) and source_id else None,
    )
