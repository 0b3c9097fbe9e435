"""Deciding, per event and action, what happens: send, skip (with reason) or dead-letter.

The order of checks is the delivery contract (DESIGN.md "Delivery"): trigger, then the
action's ``max_event_age`` window, then the mapping (an error dead-letters), then the
action's required fields (missing ones skip), then the destination's ``validate_item``
(a payload the vendor can never accept dead-letters). An event no enabled action
matches is skipped once, counted by its type.

The same code serves the live pump, redrives and the event tester, so what the tester
shows is exactly what the pump would do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from msgspec import Raw

from millpond.actions import CompiledAction, MappingError
from millpond.delivery.batcher import Work
from millpond.delivery.outcomes import (
    DEAD_LETTERED,
    SKIPPED,
    CountKey,
    Decision,
    Outcome,
    dead_letter,
)
from millpond.destinations.base import DestinationType, estimate_size
from millpond.storage.models import DeadLetter
from millpond.timeutil import iso_to_seconds

TOO_OLD = "older than trigger window"


def no_action_reason(event: dict[str, Any]) -> str:
    return f"no action handles {event.get('type') or 'untyped events'}"


def event_age(event: dict[str, Any], now: float) -> float | None:
    """Seconds since the event's ``timestamp`` (None if it has none we can read)."""
    ts = iso_to_seconds(event.get("timestamp"))
    return None if ts is None else now - ts


class Evaluates(Protocol):
    """What a pump needs of an evaluator (a replay wraps one behind its filter)."""

    def evaluate(self, event: dict[str, Any], only: frozenset[str] | None = None,
                 ) -> tuple[list[tuple[str, Work]], list[CountKey], list[DeadLetter]]: ...


class Evaluator:
    """Runs one destination's enabled actions over events; see the module docstring."""

    def __init__(self, dtype: DestinationType, actions: Iterable[CompiledAction], *,
                 clock: Callable[[], float] = time.time):
        self.dtype = dtype
        self.actions = list(actions)
        self._clock = clock
        #: How :meth:`evaluate` packs payloads (``raw_payloads`` types), else None.
        self._pack = dtype.encode_payload if dtype.raw_payloads else None

    def evaluate(self, event: dict[str, Any], only: frozenset[str] | None = None,
                 ) -> tuple[list[tuple[str, Work]], list[CountKey], list[DeadLetter]]:
        """``(items to send with their group key, immediate outcomes, dead letters)``.

        ``only`` restricts the run to the named actions (a redrive of one action's dead
        letters must not send the event again through the others).

        For a ``raw_payloads`` type each item leaves here *packed*: its payload the JSON
        the request will carry (``msgspec.Raw``, encoded once: ``validate_item`` just
        measured it and ``encode_payload`` reuses that) and its event only ``seq`` and
        ``messageId`` (see :mod:`~millpond.delivery.pump` for why). Why here and not in
        the pump: the payload is then encoded once, right after its own validation, and
        its size is that encoding's length instead of a second encoding.

        Why it runs the actions itself instead of through :meth:`decide`: this is the
        hot path of every pump (one call per event), and a :class:`Decision` made per
        action only to be taken apart again cost a few percent of a replay's CPU."""
        items: list[tuple[str, Work]] = []
        counts: list[CountKey] = []
        dead: list[DeadLetter] = []
        seq: int = event.get("seq", 0)
        pack = self._pack
        matched = False
        for action in self.actions:
            if only is not None and action.name not in only:
                continue
            if not action.trigger.matches(event):
                continue
            matched = True
            name = action.name
            outcome, reason, payload = self.apply(action, event)
            if outcome is None:
                key = self.dtype.group_key(name, payload)
                if pack is not None:
                    raw = pack(payload)
                    items.append((key, Work(seq, name, Raw(raw), {
                        "seq": seq, "messageId": event.get("messageId")}, len(raw))))
                else:
                    items.append((key, Work(seq, name, payload, event,
                                            estimate_size(payload))))
            elif outcome is SKIPPED:
                counts.append((name, SKIPPED, reason))
            else:
                counts.append((name, DEAD_LETTERED, reason.partition(":")[0]))
                dead.append(dead_letter(event, name, reason, payload))
        if not matched:
            counts.append(("", SKIPPED, no_action_reason(event)))
        return items, counts, dead

    def decide(self, event: dict[str, Any], only: frozenset[str] | None = None,
               ) -> list[Decision]:
        """A :class:`Decision` per matching action (none: no action handles the event).
        What :meth:`evaluate` turns into work, and all a preview needs to count."""
        out: list[Decision] = []
        for action in self.actions:
            if only is not None and action.name not in only:
                continue
            if action.trigger.matches(event):
                outcome, reason, payload = self.apply(action, event)
                out.append(Decision(action.name, outcome, reason, payload))
        return out

    def apply(self, action: CompiledAction, event: dict[str, Any],
               ) -> tuple[Outcome | None, str, Any]:
        """``(None, "", payload)`` to send, else ``(SKIPPED|DEAD, reason, payload)``.
        Dead reasons start with their category before a colon (it labels counters).
        One matching action's step of :meth:`decide`, for hot loops (:meth:`evaluate`,
        the replay preview) that would only take a :class:`Decision` apart again."""
        if action.max_event_age_s is not None:
            age = event_age(event, self._clock())
            if age is not None and age > action.max_event_age_s:
                return Outcome.SKIPPED, TOO_OLD, None
        try:
            payload = action.mapping.apply(event)
        except MappingError as exc:
            return Outcome.DEAD_LETTERED, f"mapping error: {exc.message}", None
        except Exception as exc:  # noqa: BLE001 - a mapping bug must park the event, not the pump
            return Outcome.DEAD_LETTERED, f"mapping error: {type(exc).__name__}: {exc}", None
        if not isinstance(payload, dict):
            kind = "nothing" if not payload and payload is not None else type(payload).__name__
            return (Outcome.DEAD_LETTERED,
                    f"mapping error: the mapping produced {kind}, not an object", None)
        # An annotation, not a cast: no call per action per event on the pump's hot path.
        mapped: dict[str, Any] = payload  # pyright: ignore[reportUnknownVariableType] - JSON: str keys
        missing = action.missing_required(mapped)
        if missing:
            return Outcome.SKIPPED, f"missing required field {missing[0]}", mapped
        problem = self.dtype.validate_item(action.name, mapped)
        if problem:
            return Outcome.DEAD_LETTERED, f"invalid payload: {problem}", mapped
        return None, "", mapped

    def explain(self, event: dict[str, Any],
                all_actions: list[tuple[dict[str, Any], CompiledAction]]) -> list[dict[str, Any]]:
        """Per configured action (disabled ones too): matched?, outcome, reason, payload."""
        out: list[dict[str, Any]] = []
        for stored, action in all_actions:
            entry: dict[str, Any] = {"action": action.name,
                                     "enabled": stored.get("enabled", True),
                                     "matched": action.trigger.matches(event),
                                     "outcome": None, "reason": None, "payload": None,
                                     "group_key": None}
            if entry["matched"]:
                outcome, reason, payload = self.apply(action, event)
                entry["outcome"] = outcome or "send"
                entry["reason"] = reason or None
                entry["payload"] = payload
                if outcome is None:
                    entry["group_key"] = self.dtype.group_key(action.name, payload)
            out.append(entry)
        return out
