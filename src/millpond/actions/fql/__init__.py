"""Action triggers: compile an FQL string once, then test events against it cheaply.

    >>> t = compile_trigger('type = "track" and event = "Order Completed"')
    >>> t.matches({"type": "track", "event": "Order Completed"})
    True

Semantics, in short (Segment's public FQL docs plus the behaviour of its reference
implementation, which wins where the two differ):

* Paths are dotted, ``\\`` escapes any character (``properties.product\\ 1.price``), a
  numeric part indexes a list; a missing field reads as ``null``.
* ``=`` / ``!=`` are strictly typed: ``properties.x = "123"`` does not match the number 123
  (and ``!=`` does), ``= true`` needs a JSON boolean, ``= null`` means missing or null and
  ``!= null`` means "exists". A *number* literal only judges numbers: ``x != 456`` is not
  true for the string ``"456"`` nor for a missing field. ``type``, ``event`` and ``name``
  (and ``userId`` for numbers) compare as strings: ``event = 123`` is ``event = "123"``.
* ``<`` ``<=`` ``>`` ``>=`` need a number in the event; the literal may be ``10`` or ``"10"``.
* ``x in [..]`` is typed membership; ``"a" in properties.list`` reads a list from the event.
* ``contains(s, sub)`` and ``match(s, glob)`` need a string (``!contains(missing, ..)`` is
  false too); ``match`` is a case-sensitive whole-string glob (``*`` ``?`` ``[abc]``
  ``[a-z]`` ``[!a]`` ``\\*``). ``lowercase``, ``uppercase``, ``length`` (bytes of a string,
  items of a list, 0 for null) and ``typeof`` return values to compare.
* Anything that cannot be evaluated is *unknown*; unknown never matches, not even negated.
* ``and``/``or`` may not be mixed without parentheses (see :mod:`.parser`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .compiler import compile_condition
from .parser import Path, TriggerSyntaxError, parse_fql

__all__ = ["Trigger", "TriggerSyntaxError", "compile_trigger", "MATCH_ALL"]


class Trigger:
    """A compiled trigger. Immutable and thread-safe; share freely."""

    __slots__ = ("_fn", "source")

    def __init__(self, source: str, fn: Any) -> None:
        self.source = source
        self._fn = fn

    def matches(self, event: Any) -> bool:
        """True when the event satisfies the trigger. Never raises: anything that cannot
        be evaluated (non-dict event, odd value types) simply does not match."""
        if not isinstance(event, dict):
            return False
        try:
            return self._fn(event) is True
        except Exception:  # noqa: BLE001 - the contract is "never raises"
            return False

    __call__ = matches

    def __repr__(self) -> str:
        return f"Trigger({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trigger) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def compile_trigger(source: str) -> Trigger:
    """Parse and compile an FQL trigger; raises :class:`TriggerSyntaxError` on bad input.

    Results are cached by source text: many destinations share the same few triggers.
    """
    if not isinstance(source, str):
        raise TriggerSyntaxError(f"trigger must be a string, not {type(source).__name__}", 0)
    return _compile_cached(source)


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> Trigger:
    ast = parse_fql(source)
    try:
        fn = compile_condition(ast)
        fields = _fields(ast)
    except RecursionError:
        raise TriggerSyntaxError("expression nested too deeply", 0) from None
    if fields and fields <= {("type",), ("event",)}:
        fn = _memoized(fn, "type" if fields == {("type",)} else None)
    return Trigger(source, fn)


#: Verdicts kept per trigger; the (type, event name) pairs of a workspace are few.
MEMO_SIZE = 4096


def _fields(node: Any) -> set[tuple[str, ...]]:
    """Every path the condition reads."""
    if isinstance(node, Path):
        return {node.parts}
    children = [getattr(node, name) for name in ("left", "right", "operand")
                if hasattr(node, name)]
    children += list(getattr(node, "operands", ())) + list(getattr(node, "args", ()))
    return set().union(*(_fields(c) for c in children))


def _memoized(fn: Any, only_type: str | None) -> Any:
    """``fn`` remembering its verdict per (type, event name).

    Why: most triggers read only ``type`` and ``event`` (``type = "track" and event =
    "Order Completed"``), and every action of every destination tests every event, so
    the same few verdicts are recomputed all day. The verdict depends on nothing else,
    so it is exact to remember it; only text (or missing) values are remembered.
    """
    cache: dict[Any, Any] = {}

    def run(e: dict) -> Any:
        if only_type:
            key = e.get("type")
            text = type(key) is str or key is None
        else:
            kind, name = key = (e.get("type"), e.get("event"))
            text = (type(kind) is str or kind is None) and (type(name) is str or name is None)
        if not text:  # a list or object cannot be a key; numbers would meet their equals
            return fn(e)
        verdict = cache.get(key, _MISS)
        if verdict is _MISS:
            verdict = fn(e)
            if len(cache) < MEMO_SIZE:
                cache[key] = verdict
        return verdict

    return run


_MISS = object()


MATCH_ALL = compile_trigger("type != null")
"""Matches every event that has a ``type`` (i.e. every valid Segment event)."""
