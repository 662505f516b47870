"""Call arguments -> layer attributes: positional and keyword arguments matched to an op's
parameters, `defaults` lines, built-in defaults, each value checked and normalised.

Used by `expand.py` for every layer call while it walks a net (text -> surface IR -> *expanded
graph*). The op table (`ops.py`) says what each parameter takes; here a value meets it, and a
mistake becomes a `NetError` at the argument's text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from netdsl import ops
from netdsl import syntax as ast
from netdsl.evaluate import Env, did_you_mean, evaluate
from netdsl.source import Diagnostics, NetError, Span

Defaults = Mapping[tuple[str, str], tuple[Any, Span]]


def bind(
    op: ops.Op,
    node: ast.Call,
    kernel: tuple[int, ...] | None,
    env: Env,
    defaults: Defaults,
    implicit: Counter[str],
) -> dict[str, Any]:
    """Match a call's arguments to the op's parameters; check and normalise each value."""
    raw: dict[str, tuple[Any, Span]] = {}
    if kernel is not None:
        raw["k"] = (kernel, node.name_span)
    if node.stride is not None:
        if op.param("s") is None:
            raise NetError(f"'{node.name}' takes no stride", node.stride.span)
        raw["s"] = (evaluate(node.stride, env), node.stride.span)
    positional = [p for p in op.params if p.name not in raw]
    for i, arg in enumerate(node.args):
        if arg.name is None:
            if i >= len(positional):
                if not op.params:
                    limit = "no arguments"
                elif not positional:
                    limit = "no positional arguments"
                else:
                    limit = f"at most {len(positional)} positional argument"
                    limit += "s" if len(positional) > 1 else ""
                raise NetError(f"'{node.name}' takes {limit}", arg.span)
            name = positional[i].name
        elif op.param(arg.name) is None:
            params = [p.name for p in op.params]
            raise NetError(
                f"'{node.name}' has no parameter '{arg.name}'",
                arg.span,
                [
                    f"{op.name} takes {', '.join(params) or 'no arguments'}",
                    *did_you_mean(arg.name, params),
                ],
            )
        else:
            name = arg.name
        if name in raw:
            why = " (the name already says it)" if name == "k" and kernel else ""
            raise NetError(f"'{name}' given twice{why}", arg.span)
        raw[name] = (argument(op, name, arg.value, env), arg.span)
    attrs: dict[str, Any] = {}
    for p in op.params:
        if p.name in raw:
            value, span = raw[p.name]
        elif (op.name, p.name) in defaults:
            value, span = defaults[(op.name, p.name)]
        elif p.default is not ops.REQUIRED:
            attrs[p.name] = p.default if p.default is None else p.check(p.default)
            continue
        elif p.implicit is not ops.REQUIRED:
            implicit[f"{op.name}.{p.name}={p.implicit}"] += 1
            attrs[p.name] = p.check(p.implicit)
            continue
        else:
            raise NetError(f"'{node.name}' needs a value for '{p.name}'", node.span)
        try:
            attrs[p.name] = p.check(value)
        except ops.ArgError as error:
            raise NetError(f"{op.name} {p.name}: {error}", span) from None
    if "s" in attrs and attrs["s"] is None:  # pooling and deconv stride defaults to kernel
        attrs["s"] = attrs["k"]
    return attrs


def argument(op: ops.Op, name: str, value: ast.Expr, env: Env) -> Any:
    """An argument's value; a bare unknown word given to a parameter that takes words
    (`p=full`) reaches the parameter's own check, which lists the words it takes."""
    if isinstance(value, ast.Var) and value.name not in env:
        param = op.param(name)
        if param is not None and _takes_words(param):
            return ops.Symbol(value.name)
    return evaluate(value, env)


def _takes_words(param: ops.Param) -> bool:
    if isinstance(param.check, ops.Words):
        return True
    try:
        param.check(ops.Symbol("same"))
    except ops.ArgError:
        return False
    return True


# ---- nets ------------------------------------------------------------------------------------


def default_table(
    statements: tuple[ast.Default, ...], env: Env, diagnostics: Diagnostics
) -> Defaults:
    """The values of `defaults op.arg=value` lines, keyed by (op, arg); mistakes collected."""
    table: dict[tuple[str, str], tuple[Any, Span]] = {}
    for d in statements:
        resolved = ops.resolve(d.op)
        if resolved is None:
            diagnostics.error(
                f"defaults: unknown layer '{d.op}'", d.span, did_you_mean(d.op, ops.known_names())
            )
            continue
        op, kernel = resolved
        if kernel is not None:
            diagnostics.error(
                f"defaults name an op, not a shorthand: write {op.name}.{d.arg}, not "
                f"{d.op}.{d.arg}",
                d.span,
            )
            continue
        if op.param(d.arg) is None:
            names = [p.name for p in op.params]
            diagnostics.error(
                f"defaults: {op.name} has no parameter '{d.arg}'",
                d.span,
                did_you_mean(d.arg, names),
            )
            continue
        try:
            table[(op.name, d.arg)] = (evaluate(d.value, env), d.value.span)
        except NetError as error:
            diagnostics.extend(error)
    return table
