"""``@liquid``: Liquid templates through python-liquid, restricted the way Segment restricts
liquidjs.

Segment disables the tags ``case``, ``for``, ``include``, ``layout``, ``render`` and
``tablerow`` and a set of (mostly array) filters, and caps templates at 1,000 characters.
Every restriction is checked when the mapping is compiled, so a broken template is
reported when the destination is saved rather than per event.

liquidjs additionally enforces a render-time and a memory budget; python-liquid has
neither, so the work one event can cause is bounded here instead: without loops or
includes a template's running time follows its length, ``{% assign %}``/output sizes are
capped (``{% assign a = a | append: a %}`` doubles a string per tag), range literals such
as ``(1..properties.n)`` are limited to :data:`MAX_RANGE` items and ``replace`` refuses a
result over the output cap before building it (an empty search string makes it quadratic).

At run time a template that fails (say ``divided_by: 0`` on an event's value) yields
undefined, i.e. the field is dropped; rendering never raises into the delivery path.
Unknown filters are ignored, as liquidjs does by default.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from liquid import Environment, RenderContext
from liquid.ast import Node as LiquidNode
from liquid.builtin.expressions.primitive import RangeLiteral
from liquid.exceptions import LiquidError, LiquidSyntaxError
from liquid.expression import Expression
from liquid.filter import string_filter
from liquid.stream import TokenStream
from liquid.stringify import soft_str  # pyright: ignore[reportPrivateImportUsage] - public in python-liquid's docs, missing from its __all__
from liquid.tag import Tag

from ..compiler import Compiler, Node, const, directive, kind
from ..js import UNDEFINED, js_json_stringify, utf16_len, with_article

__all__ = ["DISABLED_TAGS", "DISABLED_FILTERS", "MAX_TEMPLATE_LENGTH", "MAX_RANGE", "parse_liquid"]

MAX_TEMPLATE_LENGTH = 1000
MAX_RANGE = 10_000  # items in a (a..b) range literal; its bounds may come from event data
DISABLED_TAGS = ("case", "for", "include", "layout", "render", "tablerow")
DISABLED_FILTERS = frozenset({
    "array_to_sentence_string", "concat", "find", "find_exp", "find_index", "find_index_exp",
    "group_by", "group_by_exp", "has", "has_exp", "map", "newline_to_br", "reject",
    "reject_exp", "reverse", "sort", "sort_natural", "uniq", "where_exp", "type",
})


#: Characters of rendered output one template may produce.
OUTPUT_LIMIT = 1_000_000


class _SegmentLiquid(Environment):
    """Environment with resource limits; tags/filters are adjusted in ``_make_env``."""

    local_namespace_limit = 10_000_000  # bytes held by {% assign %}/{% capture %} values
    output_stream_limit = OUTPUT_LIMIT
    context_depth_limit = 10


def _disabled_tag(tag_name: str) -> type[Tag]:
    class Disabled(Tag):
        name = tag_name
        block = False

        def parse(self, stream: TokenStream) -> Any:
            raise LiquidSyntaxError(f'tag "{tag_name}" is disabled', token=stream.current)

    return Disabled


class _BoundedRange(RangeLiteral):
    """``(1..properties.n)`` with ``n`` taken from an event would otherwise let one number
    in a payload allocate (and ``| join`` stringify) an arbitrarily large sequence."""

    __slots__ = ()

    def _make_range(self, start: Any, stop: Any) -> range:
        r = super()._make_range(start, stop)
        if len(r) > MAX_RANGE:
            raise LiquidError(f"range of {len(r)} items exceeds {MAX_RANGE}", token=self.token)
        return r


def _bound_ranges(nodes: list[LiquidNode], context: RenderContext) -> None:
    """Re-class every range literal of a parsed template as :class:`_BoundedRange`."""

    def visit_expr(expr: Expression) -> None:
        if type(expr) is RangeLiteral:
            expr.__class__ = _BoundedRange
        for child in expr.children():
            visit_expr(child)

    def visit(node: LiquidNode) -> None:
        for expr in node.expressions():
            visit_expr(expr)
        for child in node.children(context, include_partials=False):
            visit(child)

    for node in nodes:
        visit(node)


@string_filter
def _bounded_replace(val: str, seq: Any, sub: Any = "") -> str:
    """``replace`` refusing results over the output limit *before* building them: with an
    empty search string the result grows with len(val) * len(sub), both event data."""
    old, new = soft_str(seq), soft_str(sub)
    hits = len(val) + 1 if old == "" else val.count(old)
    if len(val) + hits * (len(new) - len(old)) > OUTPUT_LIMIT:
        raise LiquidError("replace result exceeds the output limit", token=None)
    return val.replace(old, new)


def _json_filter(value: Any) -> str:
    """liquidjs's ``json`` filter (compact ``JSON.stringify``)."""
    try:
        return js_json_stringify(value)
    except (TypeError, ValueError):
        return ""


def _make_env() -> Environment:
    env = _SegmentLiquid(strict_filters=False)
    for name in DISABLED_TAGS:
        env.add_tag(_disabled_tag(name))
    for name in DISABLED_FILTERS:
        env.filters.pop(name, None)
    env.add_filter("json", _json_filter)
    env.add_filter("replace", _bounded_replace)
    return env


ENV = _make_env()
_DISABLED_TAG = re.compile(r'tag "[a-z_]+" is disabled')


def parse_liquid(source: str) -> tuple[Callable[[Any], Any] | None, list[str]]:
    """Compile a template; returns (render function, problems). Render never raises."""
    if utf16_len(source) > MAX_TEMPLATE_LENGTH:
        return None, [f"liquid template values are limited to {MAX_TEMPLATE_LENGTH} characters"]
    try:
        template = ENV.from_string(source)
        filters = template.filter_names(include_partials=False)
        _bound_ranges(template.nodes, RenderContext(template))
    except LiquidError as err:
        message = str(err.message)
        if _DISABLED_TAG.fullmatch(message):
            return None, [message]
        where = err.context()
        at = f" (line {where[0]}, column {where[1] + 1})" if where else ""
        return None, [f"invalid liquid template: {message}{at}"]
    except Exception as err:  # noqa: BLE001 - any parser failure is a bad template
        return None, [f"invalid liquid template: {err}"]
    problems = [f'filter "{name}" is disabled' for name in filters if name in DISABLED_FILTERS]
    if problems:
        return None, problems

    def render(payload: Any) -> Any:
        try:
            return template.render(payload if isinstance(payload, dict) else {})
        except Exception:  # noqa: BLE001 - per-event failures drop the field
            return UNDEFINED

    return render, []


@directive("@liquid")
def _liquid(c: Compiler, value: Any, stack: list[str]) -> Node:
    if not isinstance(value, str):
        return c.fail(stack, f"should be a string but it is {with_article(kind(value))}")
    if value == "":
        return const("")
    render, problems = parse_liquid(value)
    where = "/" + "/".join(stack)
    for problem in problems:
        c.fail_raw(f"{problem} (at {where})")
    if render is None:
        return const(UNDEFINED)
    return Node(render, False, expected=True)
