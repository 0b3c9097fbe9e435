"""Messages for people when a value does not fit its msgspec type.

Every typed input of millpond is a msgspec type that refuses unknown keys: destination
settings, the server configuration, the admin API's request bodies. msgspec's own
messages are precise but terse (``Expected `int` <= 65535 - at `$.port```); a person
needs the field, the value they gave, what would fit and a correct example (Vector's
style: "uri must include a scheme and host, e.g. `https://example.com/endpoint`; got
`x`").

This module turns a ``msgspec.ValidationError`` into a :class:`Problem`, the facts as
data (which field, what kind of fault, the value given, what was expected, which names
were known), and :func:`explain` words it. Each caller words the facts its own way when
it has more to say: destination settings keep their established messages, the server
configuration adds where a value came from (a flag, an environment variable, a line of
``millpond.toml``). What fits a field is read from the type itself (:func:`describe`),
so a constraint written once in a ``Meta`` is also the one the message states.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import msgspec


class _Missing:
    """No value here (distinct from ``None``, which is a value)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
MASK = "••••"

#: One step of a path: a field name, a list index, or ``...`` for an unnamed dict key.
Step = str | int | types.EllipsisType

_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_AT = re.compile(r"^(?P<what>.*?) - at `\$(?P<path>[^`]*)`$")
_STEP = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>\d+)\]|\[\.\.\.\]")
_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


@dataclass(frozen=True)
class Problem:
    """Why a value does not fit its type, as data.

    ``path`` leads from the root of the value to the field at fault; for ``unknown``
    and ``missing`` it ends with the unknown or missing key's name. ``reason`` is
    msgspec's message in words (lower-case, types named for people); ``expected`` says
    what would fit, from the type at ``path`` ("" when not known). ``known`` lists the
    field names of the object the problem is in.
    """

    kind: Literal["invalid", "unknown", "missing"]
    path: tuple[Step, ...]
    at: str
    reason: str
    value: Any = MISSING
    expected: str = ""
    known: tuple[str, ...] = ()
    annotation: Any = field(default=None, compare=False, repr=False)

    @property
    def field(self) -> str:
        """The path as people write it: ``delivery.retry_cap``, ``items[0].name``."""
        return dotted(self.path)

    @property
    def name(self) -> str:
        """The last field name on the path ("" for the value as a whole)."""
        names = [step for step in self.path if isinstance(step, str)]
        return names[-1] if names else ""

    def suggestions(self) -> list[str]:
        """For an unknown key: the known names it most resembles, best first."""
        return suggest(self.name, self.known) if self.kind == "unknown" else []


class Invalid(ValueError):
    """A value does not fit its type: ``problem`` holds the facts, the message words them."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


def convert(raw: Any, type_: Any, *, strict: bool = True,
            example: Mapping[str, Any] | None = None) -> Any:
    """``msgspec.convert`` whose only error is :class:`Invalid`, worded by :func:`explain`.

    ``strict=False`` also accepts numbers and booleans written as strings ("8787",
    "true"), for values that can only be text (environment variables, flags)."""
    try:
        return msgspec.convert(raw, type_, strict=strict)
    except msgspec.ValidationError as exc:
        problem = problem_of(exc, raw, type_)
        raise Invalid(problem, explain(problem, example)) from None


def problem_of(exc: msgspec.ValidationError | str, raw: Any, type_: Any) -> Problem:
    """The :class:`Problem` behind msgspec's message ``exc`` for ``raw`` converted to ``type_``."""
    text = str(exc)
    what, at = text, ""
    if m := _AT.match(text):
        what, at = m["what"], m["path"]
    path = parse_path(at)
    kind: Literal["invalid", "unknown", "missing"] = "invalid"
    if m := _UNKNOWN.match(what):
        kind, path = "unknown", (*path, m["field"])
    elif m := _MISSING.match(what):
        kind, path = "missing", (*path, m["field"])
    container = path[:-1] if kind != "invalid" else path
    annotation = type_at(type_, path)
    return Problem(
        kind=kind,
        path=path,
        at=at,
        reason=humanize(what),
        value=value_at(raw, path),
        expected=describe(annotation) if annotation is not None else "",
        known=tuple(field_names(type_at(type_, container))),
        annotation=annotation,
    )


def explain(problem: Problem, example: Mapping[str, Any] | None = None) -> str:
    """One line for people: the field, the fault, the value given and a correct example."""
    eg = example_text(problem, example)
    got = "" if problem.value is MISSING else f"; got {show(problem.value)}"
    if problem.kind == "unknown":
        hint = problem.suggestions()
        near = dotted((*problem.path[:-1], hint[0])) if hint else ""
        did_you_mean = f"; did you mean `{near}`?" if near else ""
        stop = "" if did_you_mean else "."
        known = f"{stop} Known fields: {', '.join(problem.known)}" if problem.known else ""
        return f"unknown field `{problem.field}`{got}{did_you_mean}{known}{eg}"
    if problem.kind == "missing":
        return f"field `{problem.field}` is required{eg}"
    where = f"field `{problem.field}`" if problem.path else "value"
    expected = f"expected {problem.expected}" if problem.expected else problem.reason
    return f"{where}: {expected}{got}{eg}"


def example_text(problem: Problem, example: Mapping[str, Any] | None) -> str:
    """``; e.g. "field": value`` from ``example`` (a correct value of the whole type) or
    the field's own ``Meta(examples=...)``; the whole example for a top-level fault."""
    name = problem.name
    if name and problem.kind != "unknown":
        given = value_at(example, problem.path) if example is not None else MISSING
        if given is MISSING:
            given = example_of(problem.annotation)
        if given is not MISSING:
            return f"; e.g. {show(name)}: {show(given)}"
    if example is not None and len(problem.path) <= 1:
        return f"; e.g. {show(dict(example))}"
    return ""


# -- paths -------------------------------------------------------------------------------


def parse_path(at: str) -> tuple[Step, ...]:
    """msgspec's ``.a[0].b`` / ``.m[...]`` as steps."""
    steps: list[Step] = []
    for m in _STEP.finditer(at):
        if m["name"] is not None:
            steps.append(m["name"])
        elif m["index"] is not None:
            steps.append(int(m["index"]))
        else:
            steps.append(...)
    return tuple(steps)


def dotted(path: Sequence[Step]) -> str:
    """``("delivery", "retry_cap")`` → ``delivery.retry_cap``; indexes as ``[0]``."""
    out = ""
    for step in path:
        if isinstance(step, str):
            out += f".{step}" if out else step
        else:
            out += f"[{step}]" if isinstance(step, int) else "[...]"
    return out


def value_at(raw: Any, path: Sequence[Step]) -> Any:
    """The value at ``path`` in ``raw`` (dicts, lists, Structs), or :data:`MISSING`."""
    for step in path:
        if isinstance(step, str) and isinstance(raw, Mapping):
            raw = raw.get(step, MISSING)
        elif isinstance(step, str) and isinstance(raw, msgspec.Struct):
            raw = getattr(raw, step, MISSING)
        elif isinstance(step, int) and isinstance(raw, list | tuple) and step < len(raw):
            raw = raw[step]
        else:
            return MISSING
        if raw is MISSING:
            return MISSING
    return raw


# -- types -------------------------------------------------------------------------------


def unwrap(annotation: Any) -> tuple[Any, list[msgspec.Meta]]:
    """``Annotated[T, Meta(...), ...]`` → ``(T, [Meta, ...])``; other types as they are."""
    metas: list[msgspec.Meta] = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        metas = [m for m in extras if isinstance(m, msgspec.Meta)] + metas
    return annotation, metas


def without_none(annotation: Any) -> Any:
    """``T | None`` (or ``| UnsetType``, "not given") → ``T`` (Meta kept); other types as
    they are."""
    base, metas = unwrap(annotation)
    if typing.get_origin(base) in (Union, types.UnionType):
        args = [a for a in typing.get_args(base)
                if a is not type(None) and a is not msgspec.UnsetType]
        if len(args) == 1:
            inner = args[0]
            return typing.Annotated[(inner, *metas)] if metas else inner
    return annotation


def is_struct(annotation: Any) -> bool:
    base, _ = unwrap(annotation)
    return isinstance(base, type) and issubclass(base, msgspec.Struct)


def struct_fields(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """A Struct's field annotations (``Annotated`` kept), in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {name: hints[name] for name in cls.__struct_fields__}


def field_names(annotation: Any) -> list[str]:
    base, _ = unwrap(without_none(annotation)) if annotation is not None else (None, [])
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return list(base.__struct_fields__)
    return []


def type_at(type_: Any, path: Sequence[Step]) -> Any:
    """The annotation of the value at ``path`` inside ``type_``, or None when unknown."""
    annotation = type_
    for step in path:
        base, _ = unwrap(without_none(annotation))
        if isinstance(step, str):
            if not (isinstance(base, type) and issubclass(base, msgspec.Struct)):
                return None
            annotation = struct_fields(base).get(step)
            if annotation is None:
                return None
        else:
            args = typing.get_args(base)
            if typing.get_origin(base) in (list, tuple, set, frozenset, Sequence) and args:
                annotation = args[0]
            elif typing.get_origin(base) in (dict, Mapping) and len(args) == 2:
                annotation = args[1]
            else:
                return None
    return annotation


def metadata(annotation: Any) -> dict[str, Any]:
    """Every ``Meta`` attribute set on ``annotation`` (later Metas win), ``extra`` merged."""
    _, metas = unwrap(without_none(annotation))
    out: dict[str, Any] = {}
    for meta in metas:
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern",
                     "description", "examples"):
            if getattr(meta, name) is not None:
                out[name] = getattr(meta, name)
        out.update(meta.extra or {})
    return out


def example_of(annotation: Any) -> Any:
    """The first of the field's ``Meta(examples=[...])``, or :data:`MISSING`."""
    examples = metadata(annotation).get("examples") if annotation is not None else None
    return examples[0] if examples else MISSING


def describe(annotation: Any, *, object_word: str = "an object") -> str:
    """What fits ``annotation``, in words: "an integer from 0 to 65535", "one of "a", "b"".

    ``Meta(extra={"expected": ...})`` overrides it, for constraints that read badly
    as written (a regular expression)."""
    meta = metadata(annotation)
    if "expected" in meta:
        return meta["expected"]
    base, _ = unwrap(annotation)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (Union, types.UnionType):
        parts = [describe(a, object_word=object_word) for a in args
                 if a is not type(None) and a is not msgspec.UnsetType]
        none = " or null" if type(None) in args else ""
        return " or ".join(parts) + none
    if origin is Literal:
        shown = [show(a) for a in args]
        return "one of " + ", ".join(shown) if len(shown) > 1 else shown[0]
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return object_word
    if origin in (list, tuple, set, frozenset):
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if origin in (dict, Mapping) or base is dict:
        return f"{object_word} of {_plural(describe(args[1]))}" if args else object_word
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    text = words.get(base, f"`{getattr(base, '__name__', base)}`")
    return text + _constraints(meta, base)


def _constraints(meta: Mapping[str, Any], base: Any) -> str:
    low = (">=", meta["ge"]) if "ge" in meta else (">", meta["gt"]) if "gt" in meta else None
    high = ("<=", meta["le"]) if "le" in meta else ("<", meta["lt"]) if "lt" in meta else None
    parts = []
    if low and high and low[0] == ">=" and high[0] == "<=":
        parts.append(f" from {low[1]} to {high[1]}")
    elif bounds := [f"{bound[0]} {bound[1]}" for bound in (low, high) if bound]:
        parts.append(" " + " and ".join(bounds))
    if base is str:
        if meta.get("min_length") == 1 and "max_length" not in meta:
            parts.append(" (not empty)")
        elif "min_length" in meta or "max_length" in meta:
            parts.append(f" of {meta.get('min_length', 0)} to {meta.get('max_length', '∞')} "
                         "characters")
        if "pattern" in meta:
            parts.append(f" matching `{meta['pattern']}`")
    return "".join(parts)


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            rest = words[len(article):]
            head, _, tail = rest.partition(" ")
            return head + "s" + (" " + tail if tail else "")
    return words


def humanize(what: str) -> str:
    """msgspec's message with types named in words and a lower-case start."""
    for py, words in _TYPE_NAMES.items():
        what = what.replace(f"Expected `{py}`", f"expected {words}")
    return what[:1].lower() + what[1:]


# -- showing values ----------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as JSON for messages, shortened."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a number out of range"  # JSON has no infinity; "1e400" is read as one
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def example_for(field: str, example: Mapping[str, Any]) -> str:
    """`"field": <example value>` when the example has the field, else the whole example."""
    if field in example:
        return f'"{field}": {show(example[field])}'
    return show(dict(example))


def suggest(name: str, known: Sequence[str], *, sep: str = ".", prefix: str = "",
            n: int = 3) -> list[str]:
    """The known names a misspelt ``name`` most resembles, best first.

    Compared by the whole name (``prefix``, shared by every name, left out, or all
    would look alike) and by the last ``sep``-separated part (a key put in the wrong
    section); only the names about as close as the best one, so one clear match is
    not diluted by weaker ones."""
    bare, tail = name.removeprefix(prefix).lower(), name.rsplit(sep, 1)[-1].lower()
    scores: dict[str, float] = {}
    for candidate in known:
        whole = difflib.SequenceMatcher(None, bare, candidate.removeprefix(prefix).lower())
        last = difflib.SequenceMatcher(None, tail, candidate.rsplit(sep, 1)[-1].lower())
        score = max(whole.ratio(), last.ratio() if last.ratio() >= 0.8 else 0.0)
        if score >= 0.6:
            scores[candidate] = score
    ranked = sorted(scores, key=lambda c: -scores[c])
    return [c for c in ranked if scores[c] >= scores[ranked[0]] - 0.05][:n]


def mask_secret(value: Any) -> Any:
    """ "••••" + last 4 characters; secrets of 8 characters or fewer are masked
    entirely (showing 4 of 6 characters would reveal most of the secret)."""
    if value is None or value == "":
        return value
    text = str(value)
    return MASK + text[-4:] if len(text) > 8 else MASK
