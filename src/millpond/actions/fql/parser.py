"""Parser for Segment's Filter Query Language (FQL), the language of action triggers.

The grammar lives here as a string (not a ``.lark`` file) so it ships inside the wheel
without package-data configuration. Parsing produces a small immutable AST
(:class:`Path`, :class:`Lit`, :class:`Call`, :class:`Cmp`, :class:`Not`, :class:`And`,
:class:`Or`); :mod:`millpond.actions.fql.compiler` compiles that AST into closures.

Deliberate choices (see the module docs of ``trigger`` for the full semantics):

* ``and`` and ``or`` cannot be mixed without parentheses. Segment's reference parser
  silently applies the *last* connective to the whole chain (``a and b or c`` means
  ``a or b or c``), which nobody writing the expression expects; refusing the ambiguous
  form is safer than silently disagreeing with either reading.
* A bare field (``typo``) is not a condition: Segment rejects ``typo`` and ``type``.
* ``type = `` with nothing after the operator is refused. Segment accepts it (its lexer
  hands the end-of-stream token over as the value, so it never matches), but here every
  trigger and filter is typed by a person, and a half-typed filter that silently skips
  every event (a whole replay's worth) is worse than an error saying what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

__all__ = [
    "TriggerSyntaxError",
    "Path",
    "Lit",
    "ListLit",
    "Call",
    "Cmp",
    "Not",
    "And",
    "Or",
    "Never",
    "Node",
    "parse_fql",
    "PREDICATE_FUNCTIONS",
    "VALUE_FUNCTIONS",
]


class TriggerSyntaxError(ValueError):
    """An FQL string that cannot be compiled; ``position`` is a 0-based character offset."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Path:
    """A field path, already split and unescaped: ``properties.product\\ 1`` -> 2 parts."""

    parts: tuple[str, ...]
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Lit:
    """A scalar literal: str, int/float, bool or None."""

    value: Any
    pos: int = 0


@dataclass(frozen=True, slots=True)
class ListLit:
    """A list literal ``[1, "a", null]`` (elements are scalar literals)."""

    items: tuple[Any, ...]
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; ``name`` is validated against the known functions at parse time."""

    name: str
    args: tuple[Node, ...]
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Cmp:
    """``left op right`` where op is one of = != < <= > >= in."""

    op: str
    left: Node
    right: Node
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Never:
    """A condition that is never true nor false (Segment's ``type = `` quirk)."""


Node = Path | Lit | ListLit | Call | Cmp | Not | And | Or | Never

PREDICATE_FUNCTIONS = {"contains": 2, "match": 2}
VALUE_FUNCTIONS = {"lowercase": 1, "uppercase": 1, "length": 1, "typeof": 1}
MAX_DEPTH = 64  # nesting of parentheses / negations; deeper is certainly not hand-written

# --------------------------------------------------------------------------- grammar

_SEG = r"(?:[A-Za-z0-9_\-]|\\.)"
GRAMMAR = rf"""
?start: expr

?expr: unary
     | and_chain
     | or_chain
and_chain: unary (_AND unary)+
or_chain: unary (_OR unary)+

?unary: NOT unary -> not_
      | atom

?atom: _LPAR expr _RPAR
     | comparison
     | call

comparison: operand COMP_OP operand
          | operand IN operand
          | operand COMP_OP         -> missing_value

?operand: path
        | literal
        | call
        | list

call: PATH _LPAR [operand (_COMMA operand)*] _RPAR
path: PATH
list: _LSQB [literal (_COMMA literal)*] _RSQB
literal: STRING | NUMBER | TRUE | FALSE | NULL

_AND: "and"
_OR: "or"
IN: "in"
TRUE: "true"
FALSE: "false"
NULL: "null"
NOT: "!"
COMP_OP: "!=" | "<=" | ">=" | "=" | "<" | ">"
_LPAR: "("
_RPAR: ")"
_LSQB: "["
_RSQB: "]"
_COMMA: ","
PATH: /(?:[A-Za-z_]|\\.){_SEG}*(?:\.{_SEG}+)*/
STRING: /"(?:[^"\\]|\\.)*"/s | /'(?:[^'\\]|\\.)*'/s
NUMBER: /-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/

%ignore /\s+/
"""


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """Build the LALR parser once, on first use (keeps ``import`` cheap)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True)


def _split_path(text: str) -> tuple[str, ...]:
    """Split on unescaped dots, then drop the escaping backslashes."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return tuple(parts)


def _unquote(token: str) -> str:
    """Strip the quotes; ``\\"``, ``\\'`` and ``\\\\`` are escapes, any other ``\\x`` is kept
    verbatim so glob escapes such as ``'ab\\*d'`` reach ``match()`` intact."""
    body = token[1:-1]
    return re.sub(r"\\([\"'\\])", r"\1", body)


def _number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


def _pos(meta_or_token: Any) -> int:
    pos = getattr(meta_or_token, "start_pos", None)
    return int(pos) if pos is not None else 0


class _ToAst(Transformer):
    """Lark tree -> AST, checking what the grammar cannot (function names, arity)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._end = len(text.rstrip())

    def path(self, children: list[Token]) -> Path:
        tok = children[0]
        return Path(_split_path(str(tok)), _pos(tok))

    def literal(self, children: list[Token]) -> Lit:
        tok = children[0]
        kind = tok.type
        if kind == "STRING":
            return Lit(_unquote(str(tok)), _pos(tok))
        if kind == "NUMBER":
            return Lit(_number(str(tok)), _pos(tok))
        return Lit({"TRUE": True, "FALSE": False, "NULL": None}[kind], _pos(tok))

    @v_args(meta=True)
    def list(self, meta: Any, children: list[Any]) -> ListLit:
        items = tuple(c.value for c in children if c is not None)
        return ListLit(items, _pos(meta))

    def call(self, children: list[Any]) -> Call:
        name_tok, *args = children
        args = [a for a in args if a is not None]
        name = str(name_tok)
        arity = PREDICATE_FUNCTIONS.get(name) or VALUE_FUNCTIONS.get(name)
        if arity is None:
            known = ", ".join(sorted({**PREDICATE_FUNCTIONS, **VALUE_FUNCTIONS}))
            raise TriggerSyntaxError(
                f"unknown function {name!r} at position {_pos(name_tok)} (known: {known})",
                _pos(name_tok),
            )
        if len(args) != arity:
            raise TriggerSyntaxError(
                f"{name}() takes {arity} argument{'s' if arity > 1 else ''} but got "
                f"{len(args)} at position {_pos(name_tok)}",
                _pos(name_tok),
            )
        return Call(name, tuple(args), _pos(name_tok))

    def comparison(self, children: list[Any]) -> Cmp:
        left, op, right = children
        return Cmp(str(op), left, right, _pos(op))

    def missing_value(self, children: list[Any]) -> Never:
        # ``type = `` (see the module docstring): say what is missing, and where.
        op = children[1]
        end = op.end_pos if op.end_pos is not None else self._end
        left = ".".join(children[0].parts) if isinstance(children[0], Path) else "type"
        value = "100" if str(op) in ("<", "<=", ">", ">=") else \
            '"track"' if left == "type" else '"some value"'
        raise TriggerSyntaxError(
            f"missing value after {str(op)!r} at position {end}: compare with a value, "
            f"e.g. {left} {op} {value}", end)

    def not_(self, children: list[Any]) -> Not:
        return Not(children[1])

    def and_chain(self, children: list[Any]) -> And:
        return And(tuple(children))

    def or_chain(self, children: list[Any]) -> Or:
        return Or(tuple(children))


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of input"
    return repr(str(token))


def _check_predicates(node: Node, text: str, depth: int = 0) -> None:
    """Reject value expressions used where a condition is required (``lowercase(x)``)."""
    if depth > MAX_DEPTH:
        raise TriggerSyntaxError(f"expression nested too deeply (over {MAX_DEPTH} levels)", 0)
    if isinstance(node, Not):
        _check_predicates(node.operand, text, depth + 1)
    elif isinstance(node, And | Or):
        for child in node.operands:
            _check_predicates(child, text, depth + 1)
    elif isinstance(node, Call) and node.name not in PREDICATE_FUNCTIONS:
        raise TriggerSyntaxError(
            f"{node.name}() is not a condition at position {node.pos}: compare its result, "
            f"e.g. {node.name}(...) = ...",
            node.pos,
        )


def parse_fql(text: str) -> Node:
    """Parse an FQL string into an AST; raises :class:`TriggerSyntaxError`."""
    if not isinstance(text, str):
        raise TriggerSyntaxError(f"trigger must be a string, not {type(text).__name__}", 0)
    if not text.strip():
        raise TriggerSyntaxError("empty trigger at position 0: write a condition such as "
                                 "type = \"track\"", 0)
    try:
        tree = _parser().parse(text)
        ast = _ToAst(text).transform(tree) if isinstance(tree, Tree) else tree
    except VisitError as err:
        if isinstance(err.orig_exc, TriggerSyntaxError):
            raise err.orig_exc from None
        if isinstance(err.orig_exc, RecursionError):
            raise TriggerSyntaxError(
                f"expression nested too deeply (over {MAX_DEPTH} levels)", 0) from None
        raise TriggerSyntaxError(f"invalid trigger: {err.orig_exc}", 0) from None
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None
    except RecursionError:
        raise TriggerSyntaxError(
            f"expression nested too deeply (over {MAX_DEPTH} levels)", 0) from None
    _check_predicates(ast, text)
    return ast


def _syntax_error(err: UnexpectedInput, text: str) -> TriggerSyntaxError:
    """Turn a lark error into ``unexpected X at position N: <source>``."""
    hint = ""
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream
        what = repr(text[pos]) if pos < len(text) else "end of input"
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            pos, what = len(text), "end of input"
        else:
            pos, what = _pos(tok), _describe(tok)
            if tok.type in ("_AND", "_OR"):
                hint = " (use parentheses to mix 'and' and 'or')"
        if "COMP_OP" in (err.expected or ()) and not hint:
            hint = " (expected an operator such as = or !=)"
    else:  # UnexpectedEOF; lark has no other UnexpectedInput subclasses
        pos, what = len(text), "end of input"
    around = text[max(0, pos - 1) : pos + 2]
    if any(op in around for op in ("==", "&&", "||")):
        hint = " (FQL writes these as =, and, or)"
    return TriggerSyntaxError(f"unexpected {what} at position {pos}{hint}: {text}", pos)
