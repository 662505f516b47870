"""The statements of a net's body that make it a graph: inputs, named tensors, shared blocks,
outputs.

Part of the third stop of the pipeline (surface IR -> expanded graph): `expand.expand_net` calls
`run`, which emits the input layers, then walks the body's lines in order. A line
`y = a -> conv3x3(64)` whose chain starts from a named tensor names a tensor (its layers are
called `y.conv1`, ...); a line whose chain does not (`tower = [conv -> relu]`) names a block,
expanded where it is used, every use after the first sharing the first one's weights. `output
name: chain` (or `output name` for a tensor named already) adds an output; a last bare chain is
the output `output`, as in a net with one input and one chain. Names are checked here: a tensor
cannot take the name of a layer, a definition or another tensor, and a name used before its
line says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from netdsl import ops
from netdsl import syntax as ast
from netdsl.evaluate import Env, did_you_mean
from netdsl.source import Span

if TYPE_CHECKING:
    from netdsl.expand import _Expander


def run(
    expander: _Expander,
    net: ast.Net,
    inputs: tuple[tuple[ast.Input, tuple[int, ...]], ...],
    env: Env,
    defs: Mapping[str, ast.Def],
) -> None:
    """Emit the inputs and every statement of `net` into `expander` (its `tensors`, `blocks`
    and `outputs`); mistakes go to its diagnostics."""
    from netdsl.expand import _Scope
    from netdsl.expand_graph import NOTHING

    for given, dims in inputs:
        attrs = {"shape": dims}
        index = expander.emit(given.name or "input", "input", attrs, (), given.span, ())
        if given.name is not None:
            _bind(expander, given.name, given.name_span or given.span, defs, index)
        else:  # `d0 = input -> conv3x3(64)`: the one unnamed input, used by its keyword
            expander.tensors["input"] = index
    start = 0 if len(inputs) == 1 else NOTHING
    for stray in net.body.stray:
        expander.diagnostics.error(
            "a chain without a name ends here, but only the net's last line may be one",
            stray.span,
            [
                "a chain that goes on to a new line starts that line with '->' (or ends the "
                "line before with it)",
                "a chain of its own needs a name (y = ...), or is an output (output y: ...)",
            ],
        )
    later = {s.name: s for s in net.body.statements}
    for statement in net.body.statements:
        if isinstance(statement, ast.Output):
            if statement.chain is None:
                if statement.name in expander.tensors:
                    expander.outputs.append((statement.name, expander.tensors[statement.name]))
                else:
                    _unknown(expander, statement.name, statement.name_span, later)
                continue
            index = expander.chain(statement.chain, start, env, _Scope(statement.name + "."), ())
            index = _flowed(expander, index, statement.chain.span)
            _bind(expander, statement.name, statement.name_span, defs, index)
            expander.outputs.append((statement.name, index))
        elif _from_tensor(statement.chain, expander.tensors):
            index = expander.chain(statement.chain, start, env, _Scope(statement.name + "."), ())
            _bind(expander, statement.name, statement.name_span, defs, index)
        elif _bind(expander, statement.name, statement.name_span, defs, None):
            expander.blocks[statement.name] = statement
    if net.body.chain is not None:
        index = expander.chain(net.body.chain, start, env, _Scope(), ())
        expander.outputs.append(("output", _flowed(expander, index, net.body.chain.span)))
    if not expander.outputs:
        expander.diagnostics.error(
            "the net has no output: end it with a chain, or name one (output y: ...)",
            net.body.span,
        )
    seen: set[str] = set()
    for name, _ in expander.outputs:
        if name in seen:
            expander.diagnostics.error(f"output '{name}' is named twice", net.body.span)
        seen.add(name)


def _flowed(expander: _Expander, index: int, span: Span) -> int:
    """An output line of a net with several inputs that added nothing (`relu*0`, a shape
    check) has no tensor to give: an error, not an output."""
    from netdsl.expand_graph import FAILED, NOTHING

    if index != NOTHING:
        return index
    expander.diagnostics.error(
        "nothing flows into this line: the net has several inputs; start it from a named tensor",
        span,
        [f"named so far: {', '.join(expander.tensors)}"],
    )
    return FAILED


def _bind(
    expander: _Expander, name: str, span: Span, defs: Mapping[str, ast.Def], index: int | None
) -> bool:
    """Name a tensor (`index`) or a block (None); False, with the reason reported, if the name
    is taken."""
    taken = ""
    if name in expander.tensors or name in expander.blocks:
        taken = "names a tensor or block already"
    elif name in defs:
        taken = f"is a definition (line {defs[name].span.line})"
    elif ops.resolve(name) is not None or ops.refused(name):
        taken = "is a layer"
    elif name in ("output", "input"):
        taken = "is a keyword"
    elif (numbered := _LAYER_NAME.fullmatch(name)) and numbered.group(1) in _kinds(defs):
        taken = "is a name netdsl gives a layer (conv1, relu2, ...)"
    if taken:
        expander.diagnostics.error(f"'{name}' {taken}; choose another name", span)
        return False
    if index is not None:
        expander.tensors[name] = index
    return True


_LAYER_NAME = re.compile(r"([A-Za-z_]+?)(\d+)")


def _kinds(defs: Mapping[str, ast.Def]) -> set[str]:
    """What layers and scopes are numbered after: a tensor called `relu1` would clash in ONNX."""
    return {*ops.every_op(), *ops.ALIASES, *defs, "shortcut", "branch", "block", "stage", "b"}


def _from_tensor(chain: ast.Chain, tensors: Mapping[str, int]) -> bool:
    """Does the chain start from a named tensor (so it names a tensor, not a block)?"""
    match chain:
        case ast.Call(name):
            return name in tensors
        case ast.Seq(items):
            return _from_tensor(items[0], tensors)
        case ast.Group(body):
            return _from_tensor(body, tensors)
        case ast.Bundle(arms):
            return any(_from_tensor(arm, tensors) for arm in arms)
    return False


def _unknown(
    expander: _Expander, name: str, span: Span, later: Mapping[str, ast.Statement]
) -> None:
    if name in later:
        expander.diagnostics.error(
            f"'{name}' is used before it is named (line {later[name].span.line})", span
        )
        return
    expander.diagnostics.error(
        f"no tensor named '{name}'", span, did_you_mean(name, list(expander.tensors))
    )


__all__ = ["run"]
