"""Why a trigger did or did not match an event: the verdict of each of its clauses.

The event tester shows it ("which clause failed"): a trigger ``a and b and c`` that does
not match is explained by the clauses that are not true, each evaluated with the same
compiler the trigger uses, so the explanation cannot disagree with the verdict. A trigger
that is not an ``and`` is one clause.
"""

from __future__ import annotations

import json
from typing import Any

from .compiler import compile_condition
from .parser import And, Call, Cmp, ListLit, Lit, Never, Not, Or, Path, parse_fql


def explain_trigger(source: str, event: Any) -> list[dict]:
    """``[{"clause": text, "matched": bool}]``, one per top-level ``and`` operand; empty
    when the trigger does not parse (the action could not have been saved then)."""
    try:
        ast = parse_fql(source)
    except ValueError:
        return []
    clauses = ast.operands if isinstance(ast, And) else (ast,)
    out = []
    for clause in clauses:
        fn = compile_condition(clause)
        try:
            matched = isinstance(event, dict) and fn(event) is True
        except Exception:  # noqa: BLE001 - unknown never matches, as in Trigger.matches
            matched = False
        out.append({"clause": unparse(clause), "matched": matched})
    return out


def unparse(node: Any) -> str:
    """FQL text for an AST node (normalised spacing; what a person reads)."""
    if isinstance(node, Path):
        return ".".join(p.replace("\\", "\\\\").replace(".", "\\.").replace(" ", "\\ ")
                        for p in node.parts)
    if isinstance(node, Lit):
        return "null" if node.value is None else json.dumps(node.value)
    if isinstance(node, ListLit):
        return "[" + ", ".join(unparse(Lit(v)) if not hasattr(v, "value") else unparse(v)
                               for v in node.items) + "]"
    if isinstance(node, Call):
        return f"{node.name}({', '.join(unparse(a) for a in node.args)})"
    if isinstance(node, Cmp):
        return f"{unparse(node.left)} {node.op} {unparse(node.right)}"
    if isinstance(node, Not):
        return f"!({unparse(node.operand)})"
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return "(" + word.join(unparse(o) for o in node.operands) + ")"
    if isinstance(node, Never):
        return "(never true)"
    return str(node)
