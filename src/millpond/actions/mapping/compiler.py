"""Mapping compiler core: turns a mapping (JSON) into a tree of closures, validating as it goes.

Validation and compilation are one pass so they can never disagree: whatever
``validate_mapping`` accepts is exactly what ``compile_mapping`` can run. Errors are
collected rather than raised at the first one, because a user fixing a mapping in the UI
wants every problem at once (Segment reports an aggregate error too). Messages follow the
reference's format, ``/<where> <what>.``, e.g.
``/properties/revenue/@path should be a string or a mapping directive but it is a number.``

Directive implementations live in the :mod:`.directives` package and register themselves
in :data:`DIRECTIVES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .js import UNDEFINED, type_name, with_article

__all__ = ["MappingError", "Node", "Compiler", "DIRECTIVES", "directive", "const", "MAX_DEPTH"]

MAX_DEPTH = 100
Fn = Callable[[Any], Any]


class MappingError(ValueError):
    """An invalid mapping (``errors`` lists every problem found) or an unusable payload."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors) if errors else [message]
        super().__init__(message)
        self.message = message


class Node:
    """A compiled mapping value.

    ``fn(payload)`` returns the value or ``UNDEFINED``; ``defined`` is a hard promise that
    it never returns ``UNDEFINED`` (parents rely on it to skip checks). ``expected`` is the
    softer, static "always produced for well-formed events" used by
    ``Mapping.referenced_paths`` (a ``@liquid`` field is expected although a render error
    on odd data drops it). ``keys`` (objects with a static shape) maps each output key to
    its ``expected`` flag. ``const`` holds the value of constant nodes, ``path`` the keys
    of a static ``@path`` (so a parent can fuse its reads).
    """

    __slots__ = ("fn", "defined", "expected", "keys", "const", "path")

    def __init__(self, fn: Fn, defined: bool, keys: dict[str, bool] | None = None,
                 const: Any = UNDEFINED, expected: bool | None = None,
                 path: tuple[str, ...] | None = None) -> None:
        self.fn = fn
        self.defined = defined
        self.expected = defined if expected is None else expected
        self.keys = keys
        self.const = const
        self.path = path


def const(value: Any) -> Node:
    """Node for an immutable scalar."""
    return Node(lambda _p: value, value is not UNDEFINED, const=value)


NOTHING = const(UNDEFINED)

DirectiveFn = Callable[["Compiler", Any, list[str]], Node]
DIRECTIVES: dict[str, DirectiveFn] = {}


def directive(name: str) -> Callable[[DirectiveFn], DirectiveFn]:
    """Register a directive compiler under ``name`` (e.g. ``"@path"``)."""

    def register(fn: DirectiveFn) -> DirectiveFn:
        DIRECTIVES[name] = fn
        return fn

    return register


def is_directive(value: Any) -> bool:
    return isinstance(value, dict) and any(
        isinstance(k, str) and k.startswith("@") for k in value)


def kind(value: Any) -> str:
    """``realTypeOrDirective`` from the reference: an object with an @-key is a directive."""
    return "directive" if is_directive(value) else type_name(value)


class Compiler:
    """Collects errors while compiling; see the module docstring."""

    def __init__(self, *, copy: bool = True) -> None:
        self.errors: list[str] = []
        self._depth = 0
        #: False compiles ``@path`` getters that return the event's own containers.
        self.copy = copy

    # ------------------------------------------------------------------ errors

    def fail(self, stack: list[str], message: str) -> Node:
        self.errors.append(f"/{'/'.join(stack)} {message}.")
        return NOTHING

    def fail_raw(self, message: str) -> Node:
        """For messages whose wording must come first (Segment's liquid errors)."""
        self.errors.append(message)
        return NOTHING

    def wrong_type(self, stack: list[str], expected: str, value: Any) -> Node:
        return self.fail(stack, f"should be {expected} but it is {with_article(kind(value))}")

    # ------------------------------------------------------------------ values

    def compile(self, value: Any, stack: list[str]) -> Node:
        """Compile any mapping value: directive, object, array or JSON scalar."""
        if self._depth >= MAX_DEPTH:
            return self.fail(stack, f"is nested too deeply (more than {MAX_DEPTH} levels)")
        self._depth += 1
        try:
            if isinstance(value, dict):
                if is_directive(value):
                    return self.directive(value, stack)
                return self._object(value, stack)
            if isinstance(value, list):
                return self._array(value, stack)
            if value is None or isinstance(value, str | bool | int | float):
                return const(value)
            return self.fail(
                stack, f"should be a mapping directive or a JSON value but it is "
                f"{with_article(type(value).__name__)}")
        finally:
            self._depth -= 1

    def directive(self, obj: dict[str, Any], stack: list[str]) -> Node:
        keys = list(obj)
        at_keys = [k for k in keys if isinstance(k, str) and k.startswith("@")]
        if len(at_keys) > 1:
            return self.fail(
                stack, f"should only have one @-prefixed key but it has {len(at_keys)} keys")
        if any(k not in at_keys and k != "_metadata" for k in keys):
            return self.fail(
                stack, f"should only have one @-prefixed key but it has {len(keys)} keys")
        name = at_keys[0]
        fn = DIRECTIVES.get(name)
        if fn is None:
            return self.fail(stack, f"has an invalid directive: {name}")
        return fn(self, obj[name], [*stack, name])

    def _object(self, obj: dict[Any, Any], stack: list[str]) -> Node:
        children: list[tuple[str, Node]] = []
        for key, val in obj.items():
            if not isinstance(key, str):
                self.fail(stack, f"has a non-string key {key!r}")
                continue
            children.append((key, self.compile(val, [*stack, key])))
        return object_node(children)

    def _array(self, arr: list[Any], stack: list[str]) -> Node:
        nodes = [self.compile(v, [*stack, str(i)]) for i, v in enumerate(arr)]
        fns = tuple(n.fn for n in nodes)
        if all(n.defined for n in nodes):
            return Node(lambda p: [f(p) for f in fns], True)
        # JSON.stringify writes undefined array items as null
        return Node(lambda p: [None if (v := f(p)) is UNDEFINED else v for f in fns], True)

    # ------------------------------------------------------------------ helpers

    def options(self, value: Any, stack: list[str]) -> dict[str, Any] | None:
        """A directive's option object: a plain object without @-keys."""
        if not isinstance(value, dict) or is_directive(value):
            self.wrong_type(stack, "an object", value)
            return None
        return value

    def require(self, opts: dict[str, Any], key: str, stack: list[str]) -> bool:
        if key not in opts:
            self.fail(stack, f"should have field {json.dumps(key)} but it doesn't")
            return False
        return True

    def string_or_directive(self, value: Any, stack: list[str]) -> str | Node | None:
        """A literal string, or a directive compiled to a Node; None (error) otherwise."""
        if isinstance(value, str):
            return value
        if is_directive(value):
            return self.compile(value, stack)
        self.wrong_type(stack, "a string or a mapping directive", value)
        return None

    def string(self, value: Any, stack: list[str], max_len: int | None = None,
               min_len: int = 0) -> str | None:
        if not isinstance(value, str):
            self.wrong_type(stack, "a string", value)
            return None
        if len(value) < min_len:
            self.fail(stack, f"should be a string of length {min_len} or greater")
            return None
        if max_len is not None and len(value) > max_len:
            self.fail(stack, f"should be a string of length {max_len} or less")
            return None
        return value

    def boolean(self, opts: dict[str, Any], key: str, stack: list[str], default: bool) -> bool:
        if key not in opts:
            return default
        value = opts[key]
        if not isinstance(value, bool):
            self.wrong_type([*stack, key], "a boolean", value)
            return default
        return value


def object_node(children: list[tuple[str, Node]]) -> Node:
    """Build an object from compiled children, leaving out undefined values."""
    keys = {k: n.expected for k, n in children}
    fns = tuple((k, n.fn) for k, n in children)
    if all(n.defined for _, n in children):
        return Node(lambda p: {k: f(p) for k, f in fns}, True, keys)

    def build(p: Any) -> dict[str, Any]:
        out = {}
        for k, f in fns:
            v = f(p)
            if v is not UNDEFINED:
                out[k] = v
        return out

    return Node(build, True, keys)
