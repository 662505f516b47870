"""Argument expressions -> values: integer arithmetic, names, tuples, lists.

Used by `expand.py` while it walks a net: every argument, repetition count and comprehension
list is evaluated here against the names bound at that point (net parameters, definition
parameters, loop variables). Integer `/` rounds down, as `c/16` does in the papers.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from netdsl import ops
from netdsl import syntax as ast
from netdsl.source import NetError, Span

Env = Mapping[str, Any]


def did_you_mean(name: str, candidates: list[str]) -> list[str]:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return [f"did you mean {' or '.join(repr(c) for c in close)}?"] if close else []


MAX_INT = 2**62  # larger integers are refused: every size and count of a net fits far below


def evaluate(expr: ast.Expr, env: Env) -> Any:
    """The value of an argument expression; integer `/` floors, as `c/16` in the papers."""
    match expr:
        case ast.Int(value):
            if abs(value) > MAX_INT:
                raise NetError(f"the number {_short(value)} is too large", expr.span)
            return value
        case ast.Float(value):
            if not math.isfinite(value):
                raise NetError("the number is too large to be a float", expr.span)
            return value
        case ast.String(value):
            return value
        case ast.Var(name):
            if name in env:
                return env[name]
            if name in ("true", "false"):
                return name == "true"
            if name in ("same", "valid"):
                return ops.Symbol(name)
            raise NetError(f"unknown name '{name}'", expr.span, did_you_mean(name, list(env)))
        case ast.Neg(operand):
            value = evaluate(operand, env)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise NetError(f"cannot negate {ops.show(value)}", expr.span)
            return -value
        case ast.BinOp(op, left, right):
            return _binop(op, evaluate(left, env), evaluate(right, env), expr.span)
        case ast.Tuple(items):
            return tuple(evaluate(item, env) for item in items)
        case ast.List(items):
            return [evaluate(item, env) for item in items]
    raise AssertionError(expr)


def _binop(op: str, a: Any, b: Any, span: Span) -> Any:
    numeric = (int, float)
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not (isinstance(a, numeric) and isinstance(b, numeric))
    ):
        raise NetError(f"cannot compute {ops.show(a)} {op} {ops.show(b)}", span)
    if op in "/%" and b == 0:
        raise NetError(f"division by zero in {ops.show(a)} {op} {ops.show(b)}", span)
    integers = isinstance(a, int) and isinstance(b, int)
    result: Any
    if op == "+":
        result = a + b
    elif op == "-":
        result = a - b
    elif op == "*":
        result = a * b
    elif op == "/":
        result = a // b if integers else a / b
    else:
        result = a % b
    if (integers and abs(result) > MAX_INT) or (
        isinstance(result, float) and not math.isfinite(result)
    ):
        raise NetError(f"{ops.show(a)} {op} {ops.show(b)} is too large", span)
    return result


def _short(value: int) -> str:
    digits = str(abs(value))  # at most 4,300 digits: longer literals are refused when parsed
    sign = "-" if value < 0 else ""
    return sign + digits if len(digits) <= 24 else f"{sign}{digits[:6]}… ({len(digits)} digits)"
