"""Segment definitions: JSON in, typed conditions out, every error naming its field.

The same words in the API, the CLI and the console::

    {"trait": "plan", "op": "eq", "value": "pro"}
    {"event": "Order Completed", "where": "properties.total > 100",
     "at_least": 2, "at_most": null, "within": "30d"}      # or "between": [from, to]
    {"in_segment": "big-spenders"}
    {"all": [...]}  {"any": [...]}  {"not": {...}}

Why parse by hand rather than let msgspec decode a tagged union: a condition is told
apart by which key it has (``trait``, ``event``, ...), not by a tag field, and a person
fixing a definition needs the path of the bad part (``definition.all[1].op``), the value
and a correct example, which a generic decoder cannot word. The result is frozen msgspec
Structs, cheap to share between threads and to hash for caches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from millpond.actions.fql import Trigger, TriggerSyntaxError, compile_trigger
from millpond.errors import BadRequest
from millpond.timeutil import BadTimestamp, parse_duration, parse_iso_ms

TRAIT_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "contains", "in",
                       "exists", "not_exists"})
#: Ops that take no ``value``.
VALUELESS_OPS = frozenset({"exists", "not_exists"})
#: How deep combinators may nest: deep enough for any real audience, shallow enough that
#: evaluation never meets Python's recursion limit.
MAX_DEPTH = 32


class TraitCondition(msgspec.Struct, frozen=True):
    """A profile trait compared with ``value`` (ops in :data:`TRAIT_OPS`)."""

    trait: str
    op: str
    value: Any = None


class EventCondition(msgspec.Struct, frozen=True):
    """How many of the person's events named ``event`` (and matching ``where``) count.

    An event counts at event time ``t`` when its time is at or before ``t`` and, with
    ``within_ms``, after ``t - within_ms`` (it leaves the window exactly ``within_ms``
    after it happened), or, with ``between_ms``, inside ``[from, to)``."""

    event: str
    where: str | None = None
    at_least: int = 1
    at_most: int | None = None
    within_ms: int | None = None
    between_ms: tuple[int, int] | None = None

    def trigger(self) -> Trigger | None:
        return compile_trigger(self.where) if self.where else None


class InSegment(msgspec.Struct, frozen=True):
    """Membership of another segment, by its key, at the same event time."""

    key: str


class AllOf(msgspec.Struct, frozen=True):
    conditions: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True):
    conditions: tuple[Condition, ...]


class NotOf(msgspec.Struct, frozen=True):
    condition: Condition


Condition = TraitCondition | EventCondition | InSegment | AllOf | AnyOf | NotOf

_EXAMPLE = ('e.g. {"trait": "plan", "op": "eq", "value": "pro"}, {"event": "Order '
            'Completed", "at_least": 2, "within": "30d"}, {"in_segment": "vip"} or '
            '{"all": [...]}')
_KINDS = ("trait", "event", "in_segment", "all", "any", "not")
_ALLOWED: dict[str, frozenset[str]] = {
    "trait": frozenset({"trait", "op", "value"}),
    "event": frozenset({"event", "where", "at_least", "at_most", "within", "between"}),
    "in_segment": frozenset({"in_segment"}),
    "all": frozenset({"all"}), "any": frozenset({"any"}), "not": frozenset({"not"}),
}


def parse_definition(data: object, field: str = "definition") -> Condition:
    """The typed condition of a JSON definition; raises :class:`BadRequest` whose
    ``field`` is the path of the first bad part (``definition.all[0].op``)."""
    return _parse(data, field, 0)


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", field=field)


def _parse(data: object, field: str, depth: int) -> Condition:
    if depth > MAX_DEPTH:
        raise _bad(field, f"conditions nest deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise _bad(field, f"a condition is a JSON object, {_EXAMPLE}; got {_show(data)}")
    kinds = [k for k in _KINDS if k in data]
    if len(kinds) != 1:
        what = "none of" if not kinds else "more than one of"
        raise _bad(field, f"a condition has exactly one of {', '.join(_KINDS)}; this has "
                   f"{what} them, {_EXAMPLE}")
    kind = kinds[0]
    unknown = sorted(set(data) - _ALLOWED[kind])
    if unknown:
        raise _bad(f"{field}.{unknown[0]}", f"unknown key in a {kind!r} condition; "
                   f"allowed: {', '.join(sorted(_ALLOWED[kind]))}")
    if kind == "trait":
        return _trait(data, field)
    if kind == "event":
        return _event(data, field)
    if kind == "in_segment":
        key = data["in_segment"]
        if not isinstance(key, str) or not key:
            raise _bad(f"{field}.in_segment", f"a segment key (text), got {_show(key)}")
        return InSegment(key)
    if kind == "not":
        return NotOf(_parse(data["not"], f"{field}.not", depth + 1))
    items = data[kind]
    if not isinstance(items, list) or not items:
        raise _bad(f"{field}.{kind}", f"a non-empty list of conditions, got {_show(items)}")
    parsed = tuple(_parse(c, f"{field}.{kind}[{i}]", depth + 1) for i, c in enumerate(items))
    return AllOf(parsed) if kind == "all" else AnyOf(parsed)


def _trait(data: dict, field: str) -> TraitCondition:
    name, op = data["trait"], data.get("op")
    if not isinstance(name, str) or not name:
        raise _bad(f"{field}.trait", f"a trait name (text), got {_show(name)}")
    if op not in TRAIT_OPS:
        raise _bad(f"{field}.op", f"unknown op {_show(op)}; ops are "
                   f"{', '.join(sorted(TRAIT_OPS))}")
    if op in VALUELESS_OPS:
        if "value" in data:
            raise _bad(f"{field}.value", f"op {op!r} takes no value")
        return TraitCondition(name, op)
    if "value" not in data:
        raise _bad(f"{field}.value", f"op {op!r} needs a value, e.g. "
                   f'{{"trait": "{name}", "op": "{op}", "value": {_value_example(op)}}}')
    value = data["value"]
    if op == "in" and not isinstance(value, list):
        raise _bad(f"{field}.value", f"op 'in' needs a list of values, got {_show(value)}")
    if op in {"gt", "gte", "lt", "lte"} and (
            isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise _bad(f"{field}.value", f"op {op!r} compares numbers (or text such as ISO "
                   f"dates), got {_show(value)}")
    if op == "contains" and not isinstance(value, (str, int, float, bool)):
        raise _bad(f"{field}.value", f"op 'contains' looks for text or a list item, got "
                   f"{_show(value)}")
    return TraitCondition(name, op, value)


def _value_example(op: str) -> str:
    return {"in": '["pro", "team"]', "gt": "100", "gte": "100", "lt": "100",
            "lte": "100"}.get(op, '"pro"')


def _event(data: dict, field: str) -> EventCondition:
    name = data["event"]
    if not isinstance(name, str) or not name:
        raise _bad(f"{field}.event", f"an event name (text), got {_show(name)}")
    where = data.get("where")
    if where is not None:
        if not isinstance(where, str):
            raise _bad(f"{field}.where", f"an FQL condition (text), got {_show(where)}")
        try:
            compile_trigger(where)
        except TriggerSyntaxError as err:
            raise _bad(f"{field}.where", f"FQL error: {err.message}") from None
    at_least = data.get("at_least", 1)
    at_most = data.get("at_most")
    if at_least is None:
        at_least = 0
    if not _count(at_least):
        raise _bad(f"{field}.at_least", f"a whole number >= 0, got {_show(at_least)}")
    if at_most is not None and not _count(at_most):
        raise _bad(f"{field}.at_most", f"a whole number >= 0 or null, got {_show(at_most)}")
    if at_most is not None and at_most < at_least:
        raise _bad(f"{field}.at_most", f"at_most ({at_most}) is below at_least ({at_least})")
    if "within" in data and "between" in data:
        raise _bad(f"{field}.between", "give either within or between, not both")
    within_ms = between_ms = None
    if data.get("within") is not None:
        try:
            within_ms = round(parse_duration(data["within"]) * 1000)
        except ValueError as err:
            raise _bad(f"{field}.within", str(err)) from None
        if within_ms <= 0:
            raise _bad(f"{field}.within", "a window longer than zero, e.g. \"30d\"")
    if data.get("between") is not None:
        between_ms = _between(data["between"], f"{field}.between")
    return EventCondition(name, where, at_least, at_most, within_ms, between_ms)


def _between(value: object, field: str) -> tuple[int, int]:
    example = 'e.g. ["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"]'
    if not isinstance(value, list) or len(value) != 2:
        raise _bad(field, f"two ISO 8601 times [from, to], {example}; got {_show(value)}")
    bounds = []
    for i, bound in enumerate(value):
        try:
            bounds.append(parse_iso_ms(bound))
        except (BadTimestamp, ValueError, TypeError):
            raise _bad(f"{field}[{i}]", f"an ISO 8601 time, {example}; got "
                       f"{_show(bound)}") from None
    if bounds[1] <= bounds[0]:
        raise _bad(field, "the end must be after the start")
    return bounds[0], bounds[1]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _show(value: object) -> str:
    text = msgspec.json.encode(value).decode() if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: object) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return False
    return True


def walk(condition: Condition) -> Iterator[Condition]:
    """Every condition in ``condition``, itself first."""
    yield condition
    if isinstance(condition, (AllOf, AnyOf)):
        for child in condition.conditions:
            yield from walk(child)
    elif isinstance(condition, NotOf):
        yield from walk(condition.condition)


def references(condition: Condition) -> set[str]:
    """The keys of the segments ``condition`` refers to with ``in_segment``."""
    return {c.key for c in walk(condition) if isinstance(c, InSegment)}


def check_references(key: str, condition: Condition,
                     lookup: Callable[[str], Condition | None],
                     field: str = "definition") -> None:
    """Raise BadRequest when ``condition`` (the definition of ``key``) names an unknown
    segment, or when following ``in_segment`` references leads back to ``key`` (a
    cycle: membership would depend on itself); the field is the ``in_segment`` at fault
    (``definition.all[1].in_segment``)."""
    at: dict[str, str] = {}
    for ref, where in _references_at(condition, field):
        at.setdefault(ref, where)  # the first place it is named
    for ref in sorted(at):
        if ref != key and lookup(ref) is None:
            raise _bad(at[ref], f"in_segment names no segment {ref!r}")
    path = _cycle(key, condition, lookup, [key])
    if path:
        raise _bad(at[path[1]], "in_segment references form a cycle: " + " -> ".join(path))


def _references_at(condition: Condition, field: str) -> Iterator[tuple[str, str]]:
    """Each ``in_segment`` key of ``condition`` with its field, in order."""
    if isinstance(condition, InSegment):
        yield condition.key, f"{field}.in_segment"
    elif isinstance(condition, NotOf):
        yield from _references_at(condition.condition, f"{field}.not")
    elif isinstance(condition, AllOf | AnyOf):
        kind = "all" if isinstance(condition, AllOf) else "any"
        for i, part in enumerate(condition.conditions):
            yield from _references_at(part, f"{field}.{kind}[{i}]")


def _cycle(key: str, condition: Condition, lookup: Callable[[str], Condition | None],
           path: list[str]) -> list[str] | None:
    for ref in sorted(references(condition)):
        if ref == key:
            return [*path, ref]
        if ref in path:
            continue
        other = lookup(ref)
        if other is not None:
            found = _cycle(key, other, lookup, [*path, ref])
            if found:
                return found
    return None


def to_json(condition: Condition) -> dict[str, Any]:
    """The JSON form of ``condition`` (what :func:`parse_definition` reads back)."""
    if isinstance(condition, TraitCondition):
        out: dict[str, Any] = {"trait": condition.trait, "op": condition.op}
        if condition.op not in VALUELESS_OPS:
            out["value"] = condition.value
        return out
    if isinstance(condition, EventCondition):
        from millpond.timeutil import format_ms
        out = {"event": condition.event}
        if condition.where:
            out["where"] = condition.where
        if condition.at_least != 1:
            out["at_least"] = condition.at_least
        if condition.at_most is not None:
            out["at_most"] = condition.at_most
        if condition.within_ms is not None:
            out["within"] = _duration_text(condition.within_ms)
        if condition.between_ms is not None:
            out["between"] = [format_ms(b) for b in condition.between_ms]
        return out
    if isinstance(condition, InSegment):
        return {"in_segment": condition.key}
    if isinstance(condition, NotOf):
        return {"not": to_json(condition.condition)}
    kind = "all" if isinstance(condition, AllOf) else "any"
    return {kind: [to_json(c) for c in condition.conditions]}


def _duration_text(ms: int) -> str:
    """``within`` in the largest unit that says it whole (``"30d"``, ``"90m"``), else in
    parts (``"1d0.5s"``): stored definitions are parsed again on every read, so the text
    must mean the same milliseconds to :func:`parse_duration`."""
    units = (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000))
    for unit, size in units:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    parts = []
    for unit, size in units:
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) + f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"


Definitions = Mapping[str, Condition]
