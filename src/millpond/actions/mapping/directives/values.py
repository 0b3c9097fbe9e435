"""Value directives: ``@path``, ``@template``, ``@literal``, ``@if``, ``@case``, ``@replace``,
``@arrayPath`` and ``@excludeWhenNull``.

Each function validates the directive's options (recording errors on the Compiler) and
returns a :class:`~..compiler.Node` whose closure does the per-event work. Behaviour follows
Segment's mapping-kit, including its JavaScript-isms (truthiness, ``String()``); checks the
reference only makes at run time (an ``@if`` without a truthy ``exists``/``blank``, an
unknown ``@case`` operator) are made here, at compile time, so they surface when a
mapping is saved instead of failing every event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..compiler import NOTHING, Compiler, Node, const, directive
from ..js import UNDEFINED, js_loose_equals_empty, js_number_str, js_truthy
from ..paths import copy_json, getter_for, make_getter, parse_path
from .template import compile_template, render_template

__all__ = ["MAX_PATTERN_LENGTH", "MAX_REPLACEMENT_LENGTH"]

MAX_PATTERN_LENGTH = 10
MAX_REPLACEMENT_LENGTH = 10


def _dynamic(node: Node, use: Callable[[str, Any], Any]) -> Node:
    """A directive whose string argument is itself computed: non-strings give undefined."""
    inner = node.fn

    def run(p: Any) -> Any:
        s = inner(p)
        return use(s, p) if type(s) is str else UNDEFINED

    return Node(run, False)


@directive("@path")
def _path(c: Compiler, value: Any, stack: list[str]) -> Node:
    arg = c.string_or_directive(value, stack)
    if arg is None:
        return NOTHING
    if isinstance(arg, str):
        parts = parse_path(arg, strip_dollar=True)
        return Node(make_getter(parts, copy=c.copy), False, path=parts)
    return _dynamic(arg, lambda path, p: getter_for(path)(p))


@directive("@template")
def _template(c: Compiler, value: Any, stack: list[str]) -> Node:
    arg = c.string_or_directive(value, stack)
    if arg is None:
        return NOTHING
    if isinstance(arg, str):
        return Node(compile_template(arg), True)
    return _dynamic(arg, render_template)


@directive("@literal")
def _literal(c: Compiler, value: Any, stack: list[str]) -> Node:
    # The reference resolves directives nested in a literal, so @literal is transparent.
    return c.compile(value, stack)


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON (unlike ``==``, which takes ``1`` and ``true`` for the same)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@directive("@if")
def _if(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    branches = {k: c.compile(opts[k], [*stack, k])
                for k in ("exists", "blank", "then", "else") if k in opts}
    if not (js_truthy(opts.get("exists")) or js_truthy(opts.get("blank"))):
        return c.fail(stack, 'requires an "exists" key or a "blank" key')
    # Like the reference: "exists" wins when both are given; a falsy "else" is ignored.
    blank = "exists" not in opts
    test = branches["blank" if blank else "exists"].fn
    then = branches["then"].fn if "then" in branches else None
    other = branches["else"].fn if js_truthy(opts.get("else")) else None
    if not blank and then is not None and _same_json(opts["exists"], opts["then"]):
        # ``{"exists": X, "then": X}`` ("X when present", as presets write it) needs X once;
        # a static @path X is read by one getter that treats null as missing.
        path = branches["exists"].path
        once = test if path is None else make_getter(path, copy=c.copy, present=True)
        if other is None and path is not None:
            return Node(once, False)

        def run_once(p: Any) -> Any:
            v = once(p)
            if v is not UNDEFINED and v is not None:
                return v
            return other(p) if other is not None else UNDEFINED

        return Node(run_once, False)

    def run(p: Any) -> Any:
        v = test(p)
        ok = v is not UNDEFINED and v is not None and not (blank and js_loose_equals_empty(v))
        if ok:
            return then(p) if then is not None else UNDEFINED
        return other(p) if other is not None else UNDEFINED

    return Node(run, False)


@directive("@case")
def _case(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    operator = opts.get("operator")
    if not js_truthy(operator):
        return c.fail(stack, 'requires a "operator" key')
    if c.string(operator, [*stack, "operator"]) is None:
        return NOTHING
    if operator not in ("lower", "upper"):
        return c.fail(stack, 'operator key should have a value of "lower" or "upper"')
    if not js_truthy(opts.get("value")):
        return NOTHING
    arg = c.string_or_directive(opts["value"], [*stack, "value"])
    if arg is None:
        return NOTHING
    convert = str.lower if operator == "lower" else str.upper
    if isinstance(arg, str):
        return const(convert(arg))
    inner = arg.fn

    def run(p: Any) -> Any:
        v = inner(p)
        return convert(v) if type(v) is str else v

    return Node(run, arg.defined)


def _js_replacer(replacement: str) -> Callable[[re.Match[str]], str]:
    """JavaScript ``String.replace`` substitutions: ``$$``, ``$&``, ``$``` and ``$'``."""
    if "$" not in replacement:
        return lambda _m: replacement
    pieces = re.split(r"(\$[$&`'])", replacement)

    def sub(m: re.Match[str]) -> str:
        out = []
        for piece in pieces:
            if piece == "$$":
                out.append("$")
            elif piece == "$&":
                out.append(m.group(0))
            elif piece == "$`":
                out.append(m.string[: m.start()])
            elif piece == "$'":
                out.append(m.string[m.end() :])
            else:
                out.append(piece)
        return "".join(out)

    return sub


@directive("@replace")
def _replace(c: Compiler, value: Any, stack: list[str]) -> Node:
    opts = c.options(value, stack)
    if opts is None:
        return NOTHING
    errors = len(c.errors)
    pattern = replacement = None
    if c.require(opts, "pattern", stack):
        pattern = c.string(opts["pattern"], [*stack, "pattern"], MAX_PATTERN_LENGTH, 1)
    if "replacement" in opts and opts["replacement"] is not None:
        replacement = c.string(opts["replacement"], [*stack, "replacement"],
                               MAX_REPLACEMENT_LENGTH)
    pattern2 = replacement2 = None
    if js_truthy(opts.get("pattern2")):
        pattern2 = c.string(opts["pattern2"], [*stack, "pattern2"], MAX_PATTERN_LENGTH, 1)
        if opts.get("replacement2") is not None:
            replacement2 = c.string(opts["replacement2"], [*stack, "replacement2"],
                                    MAX_REPLACEMENT_LENGTH)
    arg: str | Node | None = None
    if c.require(opts, "value", stack):
        arg = c.string_or_directive(opts["value"], [*stack, "value"])
    ignorecase = c.boolean(opts, "ignorecase", stack, False)
    is_global = c.boolean(opts, "global", stack, True)
    if len(c.errors) > errors or pattern is None:
        return NOTHING
    if not js_truthy(opts.get("value")) or arg is None:
        return NOTHING

    flags = re.IGNORECASE if ignorecase else 0
    count = 0 if is_global else 1
    steps = [(re.compile(re.escape(pattern), flags), _js_replacer(replacement or ""))]
    if pattern2:
        steps.append((re.compile(re.escape(pattern2), flags), _js_replacer(replacement2 or "")))

    def apply(v: Any) -> str:
        if type(v) is bool:
            v = "true" if v else "false"
        elif type(v) in (int, float):
            v = js_number_str(v)
        elif type(v) is not str:
            return ""  # null / missing / objects: the reference yields an empty string
        for rx, sub in steps:
            v = rx.sub(sub, v, count=count)
        return v

    if isinstance(arg, str):
        return const(apply(arg))
    inner = arg.fn
    return Node(lambda p: apply(inner(p)), True)


@directive("@arrayPath")
def _array_path(c: Compiler, value: Any, stack: list[str]) -> Node:
    if not isinstance(value, list):
        return c.wrong_type(stack, "an array", value)
    root_arg = c.string_or_directive(value[0] if value else UNDEFINED, stack)
    shape = c.compile(value[1], stack) if len(value) > 1 else None
    if root_arg is None:
        return NOTHING
    if isinstance(root_arg, str):
        get_root = make_getter(parse_path(root_arg, strip_dollar=True), copy=False)
    else:
        get_root = root_arg.fn
    shaped = len(value) > 1 and isinstance(value[1], dict) and len(value[1]) > 0
    if not shaped or shape is None:
        return Node(lambda p: copy_json(get_root(p)), False)
    item_fn = shape.fn

    def run(p: Any) -> Any:
        root = get_root(p)
        if isinstance(root, dict):
            root = [root]
        elif not isinstance(root, list):
            return copy_json(root)
        return [None if (v := item_fn(item)) is UNDEFINED else v for item in root]

    return Node(run, False)


def _drop_nulls(value: Any) -> Any:
    """Remove null-valued keys, recursively through objects and arrays."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


@directive("@excludeWhenNull")
def _exclude_when_null(c: Compiler, value: Any, stack: list[str]) -> Node:
    inner = c.compile(value, stack).fn

    def run(p: Any) -> Any:
        v = inner(p)
        if v is None:
            return UNDEFINED
        return _drop_nulls(v) if isinstance(v, dict | list) else v

    return Node(run, False)
