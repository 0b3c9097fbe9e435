"""Compile an FQL AST into plain Python closures (the per-event hot path).

Semantics are three-valued: a condition is *true*, *false* or *unknown*. Unknown is what
"cannot be evaluated" means: ``properties.price > 10`` when price is a string,
``contains(x, "a")`` when x is missing, ``x != 456`` when x is not a number. Only *true*
matches, and ``!unknown`` is still unknown, so a trigger fails closed even under negation.
This single rule reproduces Segment's reference results (``!contains(missing, ..)`` is
false, ``"456" != 456`` is false) without special cases per operator.

Instead of evaluating to a tri-state value at run time, each node is compiled twice on
demand: ``_cond(node, True)`` gives a closure answering "is it definitely true?" and
``_cond(node, False)`` "is it definitely false?". Negation just swaps the two, ``and`` /
``or`` map onto Python's short-circuit ``and`` / ``or`` (De Morgan for the false side), so
every closure returns a plain ``bool`` and no tri-state objects are built per event.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..mapping.js import js_number_str
from .glob import compile_glob
from .parser import (
    And,
    Call,
    Cmp,
    ListLit,
    Lit,
    Never,
    Node,
    Not,
    Or,
    Path,
    TriggerSyntaxError,
)

__all__ = ["compile_condition", "strict_equal", "UNKNOWN"]

Event = dict[str, Any]
Pred = Callable[[Event], bool]
ValueFn = Callable[[Event], Any]

UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()
"""Value of an expression that cannot be evaluated (e.g. ``lowercase(5)``)."""

_NUM = (int, float)
# Top-level fields Segment always compares as strings, whatever the literal looks like.
_STRINGLY: dict[tuple[str, ...], bool] = {
    ("type",): True, ("event",): True, ("name",): True, ("userId",): False}
_NUMERIC_STR = re.compile(r"\s*-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _false(_e: Event) -> bool:
    return False


def compile_condition(node: Node) -> Pred:
    """Return ``fn(event) -> bool`` that is true exactly when the condition is true."""
    return _cond(node, True)


# --------------------------------------------------------------------------- values


def _step(value: Any, key: str) -> Any:
    """One path step on a non-dict: Mapping lookup or list index; anything else is null."""
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list | tuple) and key.isdigit() and key.isascii():
        idx = int(key)
        return value[idx] if idx < len(value) else None
    return None


def _getter(parts: tuple[str, ...]) -> ValueFn:
    """Read a field; missing fields read as ``None`` (FQL treats missing as null)."""
    if len(parts) == 1:
        (k,) = parts
        return lambda e: e.get(k)
    if len(parts) == 2:
        k0, k1 = parts

        def get2(e: Event) -> Any:
            v = e.get(k0)
            return v.get(k1) if type(v) is dict else _step(v, k1)

        return get2
    head, rest = parts[0], parts[1:]

    def get_n(e: Event) -> Any:
        v = e.get(head)
        for k in rest:
            if v is None:
                return None
            v = v.get(k) if type(v) is dict else _step(v, k)
        return v

    return get_n


def _lower(v: Any) -> Any:
    return v.lower() if type(v) is str else (None if v is None else UNKNOWN)


def _upper(v: Any) -> Any:
    return v.upper() if type(v) is str else (None if v is None else UNKNOWN)


def _length(v: Any) -> Any:
    if type(v) is str:
        return len(v.encode("utf-8", "surrogatepass"))  # bytes, as Segment documents
    if isinstance(v, list):
        return len(v)
    return 0 if v is None else UNKNOWN


def _typeof(v: Any) -> Any:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, _NUM):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, Mapping):
        return "object"
    return UNKNOWN


_VALUE_FUNCS: dict[str, Callable[[Any], Any]] = {
    "lowercase": _lower,
    "uppercase": _upper,
    "length": _length,
    "typeof": _typeof,
}


def _value(node: Node) -> ValueFn:
    """Compile an operand to ``fn(event) -> value`` (``UNKNOWN`` when not computable)."""
    if isinstance(node, Path):
        return _getter(node.parts)
    if isinstance(node, Lit):
        const = node.value
        return lambda e: const
    if isinstance(node, ListLit):
        items = list(node.items)
        return lambda e: items
    if isinstance(node, Call):
        if node.name in _VALUE_FUNCS:
            fn, arg = _VALUE_FUNCS[node.name], _value(node.args[0])

            def call(e: Event) -> Any:
                v = arg(e)
                return UNKNOWN if v is UNKNOWN else fn(v)

            return call
        is_true, is_false = _predicate(node, True), _predicate(node, False)
        return lambda e: True if is_true(e) else (False if is_false(e) else UNKNOWN)
    # A condition used as a value (e.g. parenthesised comparison): true/false/unknown.
    t, f = _cond(node, True), _cond(node, False)
    return lambda e: True if t(e) else (False if f(e) else UNKNOWN)


def strict_equal(a: Any, b: Any) -> bool:
    """FQL ``=``: same JSON type and equal (so ``1 != "1"`` and ``true != 1``)."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, _NUM) and isinstance(b, _NUM):
        return a == b
    if a is None or b is None:
        return a is b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    return False


# --------------------------------------------------------------------------- conditions


def _all(fs: list[Pred]) -> Pred:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs
        return lambda e: a(e) and b(e)
    if len(fs) == 3:
        a, b, c = fs
        return lambda e: a(e) and b(e) and c(e)
    funcs = tuple(fs)
    return lambda e: all(f(e) for f in funcs)


def _any(fs: list[Pred]) -> Pred:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs
        return lambda e: a(e) or b(e)
    if len(fs) == 3:
        a, b, c = fs
        return lambda e: a(e) or b(e) or c(e)
    funcs = tuple(fs)
    return lambda e: any(f(e) for f in funcs)


def _cond(node: Node, want: bool) -> Pred:
    """Closure that is True iff ``node`` evaluates definitely to ``want``."""
    if isinstance(node, Not):
        return _cond(node.operand, not want)
    if isinstance(node, And):
        parts = [_cond(c, want) for c in node.operands]
        return _all(parts) if want else _any(parts)
    if isinstance(node, Or):
        parts = [_cond(c, want) for c in node.operands]
        return _any(parts) if want else _all(parts)
    if isinstance(node, Cmp):
        return _compare(node, want)
    if isinstance(node, Call):
        return _predicate(node, want)
    if isinstance(node, Never):
        return _false
    raise TriggerSyntaxError(f"not a condition: {node!r}", 0)  # parser prevents this


def _predicate(node: Call, want: bool) -> Pred:
    """contains() / match(): defined only when the inputs are strings."""
    subject = _value(node.args[0])
    if node.name == "contains":
        needle = node.args[1]
        if isinstance(needle, Lit) and type(needle.value) in (int, float, bool):
            needle = Lit(_literal_text(needle.value), needle.pos)
        if isinstance(needle, Lit) and type(needle.value) is str:
            sub = needle.value
            if want:
                return lambda e: type(v := subject(e)) is str and sub in v
            return lambda e: type(v := subject(e)) is str and sub not in v
        if isinstance(needle, Lit | ListLit):
            raise TriggerSyntaxError(
                f"contains() needs a string as its 2nd argument at position {needle.pos}",
                needle.pos,
            )
        other = _value(needle)

        def contains(e: Event) -> bool:
            v, s = subject(e), other(e)
            return type(v) is str and type(s) is str and (s in v) is want

        return contains
    pattern = node.args[1]
    if not (isinstance(pattern, Lit) and type(pattern.value) is str):
        pos = getattr(pattern, "pos", node.pos)
        raise TriggerSyntaxError(
            f"match() needs a quoted glob pattern as its 2nd argument at position {pos}", pos)
    try:
        test = compile_glob(pattern.value)
    except ValueError as err:
        raise TriggerSyntaxError(
            f"invalid glob pattern at position {pattern.pos}: {err}", pattern.pos) from None
    if want:
        return lambda e: type(v := subject(e)) is str and test(v)
    return lambda e: type(v := subject(e)) is str and not test(v)


def _literal_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return js_number_str(value)


_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


def _compare(node: Cmp, want: bool) -> Pred:
    op, left, right = node.op, node.left, node.right
    if op == "in":
        return _membership(left, right, want)
    is_const = (Lit, ListLit)
    if isinstance(left, is_const) and not isinstance(right, is_const):
        left, right, op = right, left, _FLIP[op]
    if op in ("=", "!="):
        if isinstance(left, Path) and isinstance(right, Lit):
            stringly = _STRINGLY.get(left.parts)
            v = right.value
            if stringly is not None and (
                type(v) in (int, float) or (stringly and type(v) is bool)
            ):
                right = Lit(_literal_text(v), right.pos)
        return _equality(left, right, want if op == "=" else not want)
    return _ordering(op, left, right, want)


def _equality(left: Node, right: Node, want: bool) -> Pred:
    """Closure for "left = right is definitely ``want``"."""
    get = _value(left)
    maybe_unknown = not isinstance(left, Path)
    if isinstance(right, Lit):
        lit = right.value
        if type(lit) is str:
            if not maybe_unknown:
                return (lambda e: get(e) == lit) if want else (lambda e: get(e) != lit)
            if want:
                return lambda e: get(e) == lit
            return lambda e: (v := get(e)) is not UNKNOWN and v != lit
        if lit is None or type(lit) is bool:
            if want:
                return lambda e: get(e) is lit
            return lambda e: (v := get(e)) is not lit and v is not UNKNOWN
        # Numbers: Segment's number_equals / number_not_equals only judge numbers.
        if want:
            return lambda e: type(v := get(e)) in _NUM and v == lit
        return lambda e: type(v := get(e)) in _NUM and v != lit
    other = _value(right)

    def generic(e: Event) -> bool:
        a, b = get(e), other(e)
        if a is UNKNOWN or b is UNKNOWN:
            return False
        return strict_equal(a, b) is want

    return generic


def _to_number(node: Node) -> Node:
    """``< "10"`` compares numerically in Segment; a non-numeric string never can."""
    if isinstance(node, Lit) and type(node.value) is str:
        if _NUMERIC_STR.fullmatch(node.value):
            return Lit(float(node.value), node.pos)
        return Lit(UNKNOWN, node.pos)
    return node


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _ordering(op: str, left: Node, right: Node, want: bool) -> Pred:
    """< <= > >=: defined only between two (non-boolean) numbers."""
    left, right = _to_number(left), _to_number(right)
    cmp = _ORDER[op]
    get = _value(left)
    if isinstance(right, Lit):
        n = right.value
        if type(n) not in _NUM:
            return _false  # comparing with a non-number is never defined
        if want:
            return lambda e: type(v := get(e)) in _NUM and cmp(v, n)
        return lambda e: type(v := get(e)) in _NUM and not cmp(v, n)
    other = _value(right)

    def generic(e: Event) -> bool:
        a, b = get(e), other(e)
        return type(a) in _NUM and type(b) in _NUM and cmp(a, b) is want

    return generic


_SCALARS = (str, int, float, bool, type(None))


def _membership(left: Node, right: Node, want: bool) -> Pred:
    """``needle in [list]``: strict-typed membership; the needle must be a scalar."""
    needle = _value(left)
    if isinstance(right, ListLit):
        items = right.items
        strs = frozenset(x for x in items if type(x) is str)
        nums = frozenset(x for x in items if type(x) in _NUM)
        consts = {x for x in items if x is None or type(x) is bool}

        def in_literal(e: Event) -> bool:
            v = needle(e)
            t = type(v)
            if t is str:
                return (v in strs) is want
            if t is int or t is float:
                return (v in nums) is want
            if v is None or t is bool:
                return (v in consts) is want
            return False

        return in_literal
    if isinstance(right, Lit):
        return _false  # "x in 5": the right side must be a list
    haystack = _value(right)

    def in_field(e: Event) -> bool:
        h = haystack(e)
        if not isinstance(h, list):
            return False
        v = needle(e)
        if not isinstance(v, _SCALARS):
            return False
        return any(strict_equal(v, x) for x in h) is want

    return in_field
