"""Argument expressions -> values: integer arithmetic, names, tuples, lists.

Used by `expand.py` while it walks a net: every argument, repetition count and comprehension
list is evaluated here against the names bound at that point (net parameters, definition
parameters, loop variables). Integer `/` rounds down, as `c/16` does in the papers.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from netdsl import ops
from netdsl import syntax as ast
from netdsl.source import NetError, Span

Env = Mapping[str, Any]
INCOMING = "in"  # the key of a definition's Incoming in its env: a keyword, never a parameter


class Incoming:
    """What flows into a definition's use, read by `in.c`: `read(axis, span)` gives the size
    of one axis of its shape (worked out by the caller, which knows the graph so far)."""

    def __init__(self, read: Callable[[str, Span], int]) -> None:
        self.read = read


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
            known = [k for k in env if k != INCOMING]
            raise NetError(f"unknown name '{name}'", expr.span, did_you_mean(name, known))
        case ast.Incoming(axis):
            incoming = env.get(INCOMING)
            if not isinstance(incoming, Incoming):
                raise NetError(
                    f"in.{axis} is read inside a definition: `in` is what flows into its use",
                    expr.span,
                    ["for example: def transition = bn -> relu -> conv1x1(in.c/2) -> avgpool2"],
                )
            return incoming.read(axis, expr.span)
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
