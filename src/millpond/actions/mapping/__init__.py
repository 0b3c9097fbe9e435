"""Action mappings: Segment's mapping-kit, compiled once and applied per event.

    >>> m = compile_mapping({"revenue": {"@path": "$.properties.revenue"}, "currency": "USD"})
    >>> m.apply({"properties": {"revenue": 9.5}})
    {'revenue': 9.5, 'currency': 'USD'}

A mapping is any JSON value. Objects whose keys start with ``@`` are directives (exactly
one ``@`` key, optionally beside ``_metadata``); other objects and arrays are copied with
their values resolved; scalars are literals. A value that resolves to undefined
(:data:`UNDEFINED`, e.g. ``@path`` to a missing field) is left out of its object, while
``null`` is kept; inside arrays undefined becomes ``null``, as ``JSON.stringify`` does.

Directives: ``@path`` ``@template`` ``@literal`` ``@if`` ``@case`` ``@replace``
``@arrayPath`` ``@merge`` ``@transform`` ``@flatten`` ``@json`` ``@excludeWhenNull``
``@liquid``. A root key ``__segment_internal_directive`` holding one directive receives the
sibling keys as its ``mapping`` (Segment's root ``@transform``).

``apply`` never shares containers with the event (destinations may mutate payloads) and
raises :class:`MappingError` only when the payload itself is not an object; everything
else that can go wrong with event data resolves to undefined.
"""

from __future__ import annotations

from typing import Any

from . import directives  # noqa: F401 - importing it registers every directive
from .compiler import Compiler, MappingError, Node
from .js import UNDEFINED, UndefinedType, type_name

__all__ = [
    "Mapping",
    "MappingError",
    "UNDEFINED",
    "UndefinedType",
    "compile_mapping",
    "validate_mapping",
    "ROOT_DIRECTIVE_KEY",
]

ROOT_DIRECTIVE_KEY = "__segment_internal_directive"


class Mapping:
    """A compiled mapping. Immutable and thread-safe."""

    __slots__ = ("_fn", "_node", "source")

    def __init__(self, source: Any, node: Node) -> None:
        self.source = source
        self._node = node
        self._fn = node.fn

    def apply(self, event: Any) -> Any:
        """Map one event; returns :data:`UNDEFINED` when the whole result is undefined."""
        if not isinstance(event, dict):
            raise MappingError(f"data must be an object, got {type_name(event)}")
        try:
            return self._fn(event)
        except RecursionError:
            raise MappingError("event is nested too deeply to map") from None

    __call__ = apply

    def referenced_paths(self) -> set[str]:
        """Top-level output keys that every well-formed event produces.

        Best effort, for checking required fields when a destination is saved: a key
        counts when its value is a literal, an object or array, a ``@template``,
        ``@liquid``, ``@replace`` or ``@merge`` (always produce a value) or a combination
        of those; ``@path``, ``@if``, ``@excludeWhenNull``, ``@arrayPath`` and anything
        derived from them may be undefined for some event and do not count.
        """
        keys = self._node.keys
        return {k for k, always in keys.items() if always} if keys else set()

    def __repr__(self) -> str:
        return f"Mapping({self.source!r})"


def _prepare(mapping: Any) -> Any:
    """Inject the siblings of a root ``__segment_internal_directive`` as its ``mapping``."""
    if not isinstance(mapping, dict) or ROOT_DIRECTIVE_KEY not in mapping:
        return mapping
    root = mapping[ROOT_DIRECTIVE_KEY]
    if not isinstance(root, dict) or len(root) != 1:
        raise MappingError("The root mapping must only have a single directive object")
    (name, options), = root.items()
    if not isinstance(options, dict):
        raise MappingError("The root directive must be an object")
    siblings = {k: v for k, v in mapping.items() if k != ROOT_DIRECTIVE_KEY}
    return {name: {**options, "mapping": siblings}}


def _compile(mapping: Any, copy: bool = True) -> Node:
    compiler = Compiler(copy=copy)
    try:
        node = compiler.compile(_prepare(mapping), [])
    except RecursionError:
        raise MappingError("mapping is nested too deeply") from None
    if compiler.errors:
        errors = compiler.errors
        raise MappingError("\n".join(errors), errors)
    return node


def validate_mapping(mapping: Any) -> None:
    """Raise :class:`MappingError` (listing every problem, with where) if ``mapping`` is
    invalid. Validating is compiling: anything accepted here compiles."""
    _compile(mapping)


def compile_mapping(mapping: Any, *, copy: bool = True) -> Mapping:
    """Validate and compile; the result's :meth:`Mapping.apply` runs per event.

    ``copy=False`` lets payloads share containers with the event (``@path`` stops
    copying): only for callers that never hand payloads to code that may change them,
    such as a preview that only counts."""
    return Mapping(mapping, _compile(mapping, copy))
