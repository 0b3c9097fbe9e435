"""JavaScript value semantics that Segment's reference implementation leaks into its output.

Segment's triggers and mappings run in Node.js, so wherever they turn a value into text
(``@template``, ``@replace``, ``@json``, FQL literals compared as strings) the result is
what JavaScript's ``String()`` / ``JSON.stringify`` would print, not what Python's ``str``
prints (``true`` not ``True``, ``1`` not ``1.0``, ``a,b`` for a list). Matching that keeps
payloads byte-identical to what a destination received from Segment.

JavaScript's ``undefined`` is here too, as :data:`UNDEFINED`: "no value", as opposed to
JSON ``null``. Mapping-kit distinguishes the two the way JavaScript does: a field whose
mapping resolves to undefined is left out of the payload, a field that resolves to
``null`` is sent as null. Every mapping module needs it, and this module depends on none
of them, so defining it here keeps the package free of import cycles.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "UNDEFINED",
    "UndefinedType",
    "js_number_str",
    "js_string",
    "js_truthy",
    "js_loose_equals_empty",
    "js_json_stringify",
    "type_name",
    "with_article",
    "utf16_len",
]


class UndefinedType:
    """Singleton type of :data:`UNDEFINED`; falsy, and never equal to anything else."""

    __slots__ = ()
    _instance: UndefinedType | None = None

    def __new__(cls) -> UndefinedType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> Any:
        return (UndefinedType, ())


UNDEFINED: Final = UndefinedType()
"""JavaScript's ``undefined``: what a mapping yields where there is no value."""


def js_number_str(value: float | int) -> str:
    """Format a number as JavaScript's ``Number.prototype.toString()`` does."""
    if isinstance(value, bool):  # pragma: no cover - callers handle bool first
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) < 10**21:
            return str(value)
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-tripping digits, which is also what JS prints;
    # only the placement of the decimal point / exponent differs.
    digits_t = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(str(d) for d in digits_t.digits)
    k = len(digits)
    n = k + int(digits_t.exponent)  # position of the decimal point
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"
    return sign + out


def js_string(value: Any) -> str:
    """``String(value ?? '')`` as Segment's ``@template`` renders a placeholder."""
    if value is None:
        return ""
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return js_number_str(value)
    if isinstance(value, list | tuple):
        # Array.prototype.join: null/undefined elements become empty strings.
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int | float):
        return js_number_str(value)
    return ""  # UNDEFINED or anything non-JSON renders as nothing


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value (objects and arrays are always truthy)."""
    if value is None or value is False:
        return False
    if isinstance(value, dict | list):
        return True
    if isinstance(value, str):
        return value != ""
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return bool(value)


def js_loose_equals_empty(value: Any) -> bool:
    """JavaScript ``value == ''``: true for '', 0, false and arrays that join to ''.

    Segment's ``@if`` with ``blank`` uses this test, which is why ``0`` and ``false``
    count as blank while ``'0'`` and ``' '`` do not.
    """
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool):
        return value is False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list):
        return js_string(value) == ""
    return False


def _jsonable(value: Any) -> Any:
    """Normalise numbers the way ``JSON.stringify`` prints them (1.0 -> 1, NaN -> null)."""
    t = type(value)
    if t is float:
        if math.isnan(value) or math.isinf(value):
            return None
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value
    if t is dict or isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if t is list or isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def js_json_stringify(value: Any) -> str:
    """Compact JSON as ``JSON.stringify`` writes it (no spaces, non-ASCII kept)."""
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def type_name(value: Any) -> str:
    """The reference's ``realTypeOf`` names, used in validation messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "undefined"


def with_article(word: str) -> str:
    """'an object', 'a string': mirrors the reference's ``indefiniteArticle``."""
    return ("an " if word[:1] in "aeiou" and word else "a ") + word


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, i.e. JavaScript's ``string.length``."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)
