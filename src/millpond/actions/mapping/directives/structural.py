"""Structural directives: ``@merge``, ``@transform``, ``@flatten`` and ``@json``.

Same conventions as :mod:`.values`: options are validated at compile time (including
``@merge`` direction and ``@json`` mode, which the reference only checks per event) and
each returns a Node whose closure never raises on odd event data.
"""

from __future__ import annotations

import json
from typing import Any

from ..compiler import NOTHING, Compiler, Node, directive, is_directive
from ..js import UNDEFINED, js_json_stringify, js_truthy
from ..paths import copy_json


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@directive("@merge")
def _merge(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    errors = len(c.errors)
    direction = None
    if c.require(opts, "direction", stack):
        direction = opts["direction"]
        if direction not in ("left", "right"):
            c.fail([*stack, "direction"],
                   f'should be "left" or "right" but it is {_show(direction)}')
    nodes: list[Node] = []
    if c.require(opts, "objects", stack):
        objects = opts["objects"]
        if not isinstance(objects, list):
            c.wrong_type([*stack, "objects"], "an array", objects)
        else:
            for i, item in enumerate(objects):
                where = [*stack, "objects", str(i)]
                if not isinstance(item, dict):
                    c.wrong_type(where, "an object or a mapping directive", item)
                    continue
                nodes.append(c.compile(item, where))
    if len(c.errors) > errors:
        return NOTHING
    fns = [n.fn for n in nodes]
    if direction == "left":  # earlier objects win: apply them last
        fns.reverse()
    order = tuple(fns)

    def run(p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in order:
            v = f(p)
            if isinstance(v, dict):  # undefined / non-objects contribute nothing
                out.update(v)
        return out

    return Node(run, True)


@directive("@transform")
def _transform(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    errors = len(c.errors)
    apply = mapping = None
    if c.require(opts, "apply", stack):
        if not isinstance(opts["apply"], dict):
            c.wrong_type([*stack, "apply"], "an object", opts["apply"])
        else:
            apply = c.compile(opts["apply"], [*stack, "apply"])
    if c.require(opts, "mapping", stack):
        if not js_truthy(opts["mapping"]):
            c.fail([*stack, "mapping"], "should be a mapping but it is empty")
        else:
            mapping = c.compile(opts["mapping"], [*stack, "mapping"])
    if len(c.errors) > errors or apply is None or mapping is None:
        return NOTHING
    first, then = apply.fn, mapping.fn
    # The result of "apply" becomes the payload "mapping" reads from.
    return Node(lambda p: then(first(p)), mapping.defined, mapping.keys,
                expected=mapping.expected)


def flatten(value: Any, separator: str, omit_arrays: bool) -> Any:
    """``{"a": {"b": 1}, "l": [1]}`` -> ``{"a.b": 1, "l.0": 1}``; non-containers unchanged."""
    if not isinstance(value, dict | list):
        return value
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, v in items:
            name = f"{prefix}{key}"
            if isinstance(v, dict) or (isinstance(v, list) and not omit_arrays):
                walk(v, name + separator)
            else:
                out[name] = copy_json(v)

    walk(value, "")
    return out


@directive("@flatten")
def _flatten(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    errors = len(c.errors)
    sep_fn = None
    separator = opts.get("separator")
    if not js_truthy(separator):
        c.fail(stack, 'requires a "separator" key')
    elif isinstance(separator, str):
        sep_fn = (lambda s: lambda _p: s)(separator)
    elif is_directive(separator):
        sep_fn = c.compile(separator, [*stack, "separator"]).fn
    else:
        c.wrong_type([*stack, "separator"], "a string or a mapping directive", separator)
    inner = c.compile(opts["value"], [*stack, "value"]) if "value" in opts else None
    omit = c.boolean(opts, "omitArrays", stack, False)
    if len(c.errors) > errors or sep_fn is None:
        return NOTHING
    if inner is None:
        return NOTHING
    get_value = inner.fn

    def run(p: Any) -> Any:
        sep = sep_fn(p)
        if type(sep) is not str:
            return UNDEFINED
        return flatten(get_value(p), sep, omit)

    return Node(run, inner.defined and isinstance(separator, str))


def _decode(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        return json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return value  # not JSON: the reference hands the string back


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _encode(value: Any) -> Any:
    if value is UNDEFINED:
        return UNDEFINED
    try:
        return js_json_stringify(value)
    except (TypeError, ValueError, RecursionError):
        return UNDEFINED


@directive("@json")
def _json(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    errors = len(c.errors)
    mode = None
    if c.require(opts, "mode", stack):
        mode = opts["mode"]
        if mode not in ("encode", "decode"):
            c.fail([*stack, "mode"], f'should be "encode" or "decode" but it is {_show(mode)}')
    inner = None
    if not js_truthy(opts.get("value")):
        c.fail(stack, 'requires a "value" key')
    else:
        inner = c.compile(opts["value"], [*stack, "value"])
    if len(c.errors) > errors or inner is None:
        return NOTHING
    get_value = inner.fn
    if mode == "encode":
        return Node(lambda p: _encode(get_value(p)), False, expected=inner.expected)
    return Node(lambda p: _decode(get_value(p)), inner.defined)
