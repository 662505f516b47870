"""Surface IR -> expanded graph: evaluate arguments, inline definitions, unroll repetitions.

Third stop of the pipeline. The expander walks a net's chain once, threading the index of the
current layer through it, and appends frozen `Layer`s to a list. Mistakes are collected rather
than raised one at a time, so a file with three typos reports three errors; a mistake inside a
repetition is reported once, for all its passes. The work budget of `budget.py` (layers, steps,
depth) is checked before and during unrolling, so `[conv3x3]*1000000000` and
`[[relu*0]*100000]*100000` are refused at once, in bounded time and memory.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from typing import Any

from netdsl import graph_statements, ops
from netdsl import syntax as ast
from netdsl.arguments import bind, default_table
from netdsl.budget import MAX_DEPTH, MAX_LAYERS, MAX_STEPS, Estimator, OverBudget
from netdsl.evaluate import INCOMING, Env, Incoming, did_you_mean, evaluate
from netdsl.expand_graph import FAILED, NOTHING, GraphCalls
from netdsl.expand_repeat import Repetitions
from netdsl.graph import Check, Frame, Graph, Layer, trace_notes
from netdsl.rules import LOWERINGS, dims
from netdsl.shapes import ShapeProbe
from netdsl.source import Diagnostics, NetError, Span

MAX_DIM = 2**31 - 1


class _Unread(Exception):
    """`in.c` of a tensor whose shape failed: the use fails quietly (the shape error that
    caused it is reported instead)."""


# The sizes `in.X` names, by the rank of what flows in (channels first, as in an input line).
AXES = {1: "c", 2: "cl", 3: "chw", 4: "cdhw"}


# ---- the expander ----------------------------------------------------------------------------


class _Scope:
    """A name prefix and the counters that number the layers inside it (conv1, conv2, ...)."""

    def __init__(self, prefix: str = "", adopt: bool = False) -> None:
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        # A comprehension item that is one definition call is named after the item alone
        # (`stage2.conv1`, not `stage2.bottleneck_stage1.conv1`).
        self.adopt = adopt

    def name(self, kind: str) -> str:
        self.counts[kind] += 1
        return f"{self.prefix}{kind}{self.counts[kind]}"

    def child(self, kind: str) -> _Scope:
        return _Scope(self.name(kind) + ".")


class _Expander(GraphCalls, Repetitions):
    def __init__(
        self,
        defs: Mapping[str, ast.Def],
        defaults: Mapping[tuple[str, str], tuple[Any, Span]],
        diagnostics: Diagnostics,
    ) -> None:
        self.defs = defs
        self.defaults = defaults
        self.diagnostics = diagnostics
        self.layers: list[Layer] = []
        self.implicit: Counter[str] = Counter()
        self.calls: list[str] = []  # definitions being expanded, to refuse recursion
        self.keys = itertools.count(1)
        self.steps = 0  # chain nodes visited so far
        self.depth = 0  # chain nodes open now
        self.estimate = Estimator(defs)
        self.tensors: dict[str, int] = {}  # named tensors: inputs, `y = a -> ...`, outputs
        self.blocks: dict[str, ast.Assign] = {}  # `tower = [...]`: shared blocks
        self.env: Env = {}  # the net's parameters, which blocks see
        self.labels: dict[str, Span] = {}  # layer names written in the text (`conv1_1: ...`)
        self.names: set[str] = set()  # every layer's name so far
        self.uses: Counter[str] = Counter()  # uses of each block so far
        self.outputs: list[tuple[str, int]] = []
        self.sharing: list[tuple[str, str]] = []  # (this use's prefix, the first use's prefix)
        self.checks: list[Check] = []  # `-> 64x56x56`: shapes the text states
        self.probe: ShapeProbe | None = None  # shapes so far, made when `in.c` is first read
        self.net: tuple[str, Span] | None = None  # the net's name and span, for the probe

    def emit(
        self,
        name: str,
        op: str,
        attrs: dict[str, Any],
        inputs: tuple[int, ...],
        span: Span,
        trace: tuple[Frame, ...],
    ) -> int:
        if any(j < 0 for j in inputs):
            return FAILED  # nothing flowed in; the reason is reported already
        if len(self.layers) >= MAX_LAYERS:
            raise OverBudget(f"the net expands to more than {MAX_LAYERS:,} layers", span)
        if name in self.names:  # a name written in the text met one netdsl numbered
            self.diagnostics.error(
                f"two layers are named '{name}': a name written in the text (`name: layer`) "
                "and one netdsl gives a layer; choose another name (conv1_1), or name both",
                span,
                trace_notes(trace),
            )
            return FAILED
        self.names.add(name)
        shares = ""
        for mine, first in reversed(self.sharing):
            if name.startswith(mine):
                shares = first + name[len(mine) :]
                break
        self.layers.append(Layer(name, op, attrs, inputs, span, trace, shares))
        return len(self.layers) - 1

    def chain(
        self, node: ast.Chain, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise OverBudget(
                f"the net takes more than {MAX_STEPS:,} steps to expand",
                node.span,
                ["every pass of a repetition costs steps, even one that adds no layer"],
            )
        if self.depth >= MAX_DEPTH:
            raise OverBudget(
                f"the net nests more than {MAX_DEPTH} levels deep (definitions using "
                "definitions, brackets, repetitions)",
                node.span,
                trace_notes(trace),
            )
        self.depth += 1
        try:
            return self.visit(node, x, env, scope, trace)
        finally:
            self.depth -= 1

    def visit(
        self, node: ast.Chain, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        match node:
            case ast.Call():
                return self.call(node, x, env, scope, trace)
            case ast.Seq(items):
                merge: ast.Bundle | None = None
                for item in items:
                    if merge is not None:
                        x = self.merge(merge, item, x, env, scope, trace)
                        merge = None
                    elif isinstance(item, ast.Bundle):
                        merge = item
                    else:
                        x = self.chain(item, x, env, scope, trace)
                if merge is not None:
                    return self.merge(merge, None, x, env, scope, trace)
                return x
            case ast.Bundle():
                return self.merge(node, None, x, env, scope, trace)
            case ast.Group(body):
                return self.chain(body, x, env, scope, trace)
            case ast.Repeat():
                return self.repeat(node, x, env, scope, trace)
            case ast.Comprehension():
                return self.comprehension(node, x, env, scope, trace)
            case ast.Res(body, shortcut):
                out = self.chain(body, x, env, scope, trace)
                if shortcut is not None:
                    short = self.chain(shortcut, x, env, scope.child("shortcut"), trace)
                else:
                    short = x
                attrs = {"auto": shortcut is None}
                return self.emit(scope.name("add"), "add", attrs, (out, short), node.span, trace)
            case ast.Branch(arms, summed):
                inner = scope.child("branch")
                outs = tuple(self.chain(arm, x, env, inner.child("b"), trace) for arm in arms)
                op = "add" if summed else "concat"
                attrs = {"auto": False} if summed else {}
                return self.emit(inner.prefix + op, op, attrs, outs, node.span, trace)
            case ast.Dense(body):
                out = self.chain(body, x, env, scope, trace)
                return self.emit(scope.name("concat"), "concat", {}, (x, out), node.span, trace)
            case ast.Scale(body):
                gate = self.chain(body, x, env, scope, trace)
                return self.emit(scope.name("scale"), "mul", {}, (x, gate), node.span, trace)
            case ast.Check(size):
                if x == NOTHING:
                    self.diagnostics.error(
                        "nothing flows into the shape check: the net has several inputs; "
                        "start the line from a named tensor",
                        node.span,
                        [f"named so far: {', '.join(self.tensors)}"],
                    )
                    return FAILED
                if x >= 0:
                    try:
                        self.checks.append(Check(x, size_of(size, env), node.span, trace))
                    except NetError as error:
                        self.diagnostics.extend(error)
                return x
        raise AssertionError(node)

    def incoming(self, x: int, axis: str, span: Span) -> int:
        """`in.c` inside a definition used on layer `x`: the size of one axis of its output,
        shaped now (each layer once, however many reads)."""
        if self.probe is None:
            assert self.net is not None
            name, where = self.net
            first = self.layers[0].attrs["shape"]
            self.probe = ShapeProbe(Graph(name, first, (), 0, (), where), self.layers)
        shape = self.probe.shape(x)
        if shape is None:
            self.diagnostics.items.extend(self.probe.new_errors())
            raise _Unread
        axes = AXES[len(shape)]
        if axis not in axes:
            have = ", ".join(f"in.{a}" for a in axes)
            form = "x".join(axes.upper())
            raise NetError(
                f"in.{axis}: what flows in is {dims(shape)} ({form}), which has {have}",
                span,
            )
        return shape[axes.index(axis)]

    # ---- calls
    def call(
        self, node: ast.Call, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        try:
            if node.label is not None and (node.name in self.tensors or node.name in self.blocks):
                raise NetError(
                    f"'{node.name}' is a named tensor or block; only a layer or a definition's "
                    "use takes a name",
                    node.label_span,
                )
            if node.name in self.tensors:
                return self.reference(node)
            if node.name == "input":  # the keyword, in a net whose inputs have names
                raise NetError(
                    "the net's inputs have names: start from one of them",
                    node.name_span,
                    [f"named so far: {', '.join(self.tensors)}"],
                )
            if x == FAILED:
                return x
            if x == NOTHING:
                raise NetError(
                    f"nothing flows into '{node.name}': the net has several inputs; start the "
                    "line from a named tensor",
                    node.name_span,
                    [f"named so far: {', '.join(self.tensors)}"],
                )
            if node.name in self.blocks:
                return self.call_block(node, self.blocks[node.name], x, trace)
            if node.name in self.defs:
                return self.call_def(node, self.defs[node.name], x, env, scope, trace)
            return self.call_op(node, x, env, scope, trace)
        except OverBudget:
            raise
        except _Unread:
            return FAILED
        except NetError as error:
            notes = [*error.diagnostics[0].notes, *trace_notes(trace)]
            self.diagnostics.error(error.message, error.span, notes)
            self.diagnostics.items.extend(error.diagnostics[1:])
            return FAILED if x < 0 else x

    def call_def(
        self,
        node: ast.Call,
        definition: ast.Def,
        x: int,
        env: Env,
        scope: _Scope,
        trace: tuple[Frame, ...],
    ) -> int:
        if definition.name in self.calls:
            raise NetError(
                f"'{definition.name}' uses itself; definitions cannot recurse", node.name_span
            )
        params = {p.name: p for p in definition.params}
        given: dict[str, Any] = {}
        args = list(node.args)
        if node.stride is not None:
            if "s" not in params:
                raise NetError(
                    f"'{definition.name}' has no parameter s for the /stride", node.stride.span
                )
            args.append(ast.Arg("s", node.stride, node.stride.span))
        for i, arg in enumerate(args):
            if arg.name is None:
                if i >= len(definition.params):
                    raise NetError(
                        f"'{definition.name}' takes {len(definition.params)} "
                        f"arguments, got {len(args)}",
                        arg.span,
                    )
                name = definition.params[i].name
            elif arg.name not in params:
                raise NetError(
                    f"'{definition.name}' has no parameter '{arg.name}'",
                    arg.span,
                    [
                        f"{definition.name} takes {', '.join(params) or 'no arguments'}",
                        *did_you_mean(arg.name, list(params)),
                    ],
                )
            else:
                name = arg.name
            if name in given:
                raise NetError(f"parameter '{name}' given twice", arg.span)
            given[name] = evaluate(arg.value, env)
        local: dict[str, Any] = {INCOMING: Incoming(lambda axis, at: self.incoming(x, axis, at))}
        for p in definition.params:
            if p.name in given:
                local[p.name] = given[p.name]
            elif p.default is not None:
                local[p.name] = evaluate(p.default, local)
            else:
                raise NetError(
                    f"'{definition.name}' needs a value for '{p.name}'",
                    node.span,
                    [f"'{definition.name}' is defined at {definition.span.where}"],
                )
        least = self.estimate.body(definition.name)
        if least.layers > MAX_LAYERS - len(self.layers) or least.steps > MAX_STEPS - self.steps:
            if least.layers > MAX_LAYERS - len(self.layers):
                limit = f"the net expands to more than {MAX_LAYERS:,} layers"
            else:
                limit = f"the net takes more than {MAX_STEPS:,} steps to expand"
            raise OverBudget(
                limit,
                node.span,
                [
                    f"'{definition.name}' alone adds at least {least.layers:,} layers in "
                    f"{least.steps:,} steps",
                    *trace_notes(trace),
                ],
            )
        shown = ", ".join(ops.show(local[p.name]) for p in definition.params)
        frame = Frame(f"in {definition.name}({shown}), used", node.span)
        self.calls.append(definition.name)
        try:
            if node.label is not None:
                inner = _Scope(self.labelled(node, scope) + ".")
            else:
                inner = scope if scope.adopt else scope.child(definition.name)
            scope.adopt = False
            return self.chain(definition.body, x, local, inner, (*trace, frame))
        finally:
            self.calls.pop()

    def call_op(
        self, node: ast.Call, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        refused = ops.refused(node.name)
        if refused:
            raise NetError(f"'{node.name}': {refused}", node.name_span)
        resolved = ops.resolve(node.name)
        if resolved is None:
            names = [*ops.known_names(), *self.defs]
            raise NetError(
                f"unknown layer '{node.name}'", node.name_span, did_you_mean(node.name, names)
            )
        op, kernel = resolved
        node, target = self.target(node, op.name)
        attrs = bind(op, node, kernel, env, self.defaults, self.implicit)
        if target is not None:  # `crop(to=up)`: sizes from another tensor, in shapes.py
            name = self.labelled(node, scope) if node.label else scope.name(op.name)
            return self.emit(
                name, op.name, {**attrs, "to": target[0]}, (x, target[1]), node.span, trace
            )
        lowering = LOWERINGS.get(op.name)  # sepconv: the rules decide its two layers
        if lowering is not None:
            name = self.labelled(node, scope) if node.label else scope.name(op.name)
            out = x
            for suffix, part, part_attrs in lowering(attrs):
                out = self.emit(f"{name}.{suffix}", part, part_attrs, (out,), node.span, trace)
            return out
        name = self.labelled(node, scope) if node.label else scope.name(op.name)
        return self.emit(name, op.name, attrs, (x,), node.span, trace)


def expand_net(
    net: ast.Net,
    defs: Mapping[str, ast.Def],
    overrides: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Graph:
    """Expand one net into a graph, or raise `NetError` with every mistake found;
    `input_shape` replaces the sizes of the input line (same rank)."""
    diagnostics = Diagnostics()
    overrides = dict(overrides or {})
    env: dict[str, Any] = {}
    for p in net.params:
        if p.name in overrides:
            env[p.name] = overrides.pop(p.name)
        elif p.default is not None:
            env[p.name] = evaluate(p.default, env)
        else:
            diagnostics.error(f"net parameter '{p.name}' has no default and was not given", p.span)
    for name in overrides:
        known = [p.name for p in net.params]
        diagnostics.error(
            f"net '{net.name or '<anonymous>'}' has no parameter '{name}'",
            net.span,
            did_you_mean(name, known),
        )
    defaults = default_table(net.body.defaults, env, diagnostics)
    diagnostics.raise_if_any()
    inputs = [(given, _input_size(given, env, diagnostics)) for given in net.body.inputs]
    if input_shape is not None:  # another input size: the line's sizes replaced, rank kept
        first, dims = inputs[0]
        if len(inputs) > 1:
            diagnostics.error(
                "another input shape can be given only to a net with one input "
                f"({net.name or 'the net'} has {len(inputs)})",
                first.span,
            )
        elif dims and len(input_shape) != len(dims):
            given = "x".join(map(str, input_shape))
            diagnostics.error(
                f"input shape {given} has {len(input_shape)} dimension(s); "
                f"{net.name or 'the net'}'s input line has {len(dims)}",
                first.span,
            )
        else:
            inputs = [(first, _input_size_ok(tuple(input_shape), first.span, diagnostics))]
    diagnostics.raise_if_any()
    expander = _Expander(defs, defaults, diagnostics)
    expander.env = env
    expander.net = (net.name or "net", net.span)
    graph_statements.run(expander, net, tuple(inputs), env, defs)
    diagnostics.raise_if_any()
    used = tuple(f"{k} ({n} layer{'s' if n > 1 else ''})" for k, n in expander.implicit.items())
    return Graph(
        net.name or "net",
        inputs[0][1],
        tuple(expander.layers),
        expander.outputs[0][1],
        used,
        net.span,
        tuple(expander.tensors[given.name] if given.name else 0 for given, _ in inputs),
        tuple(expander.outputs),
        tuple(expander.checks),
    )


def size_of(size: ast.Size, env: Env, what: str = "size") -> tuple[int, ...]:
    """The sizes a `Size` names (`(2*L)x224x224`), each a whole number from 1 to MAX_DIM."""
    if size.problem:
        raise NetError(size.problem, size.span)
    out = []
    for expr in size.dims:
        value = evaluate(expr, env)
        if isinstance(value, bool) or not isinstance(value, int):
            raise NetError(f"a size must be a whole number, got {ops.show(value)}", expr.span)
        if not 1 <= value <= MAX_DIM:
            raise NetError(f"{what} {value} is out of range (1 to {MAX_DIM:,})", expr.span)
        out.append(value)
    return tuple(out)


def _input_size(given: ast.Input, env: Env, diagnostics: Diagnostics) -> tuple[int, ...]:
    try:
        dims = size_of(given.size, env, "input dimension")
    except NetError as error:
        diagnostics.extend(error)
        return ()
    return _input_size_ok(dims, given.span, diagnostics)


def _input_size_ok(dims: tuple[int, ...], span: Span, diagnostics: Diagnostics) -> tuple[int, ...]:
    if len(dims) not in (1, 2, 3, 4):
        diagnostics.error(f"input takes C, CxL, CxHxW or CxDxHxW, got {len(dims)} dimensions", span)
    for d in dims:
        if not 1 <= d <= MAX_DIM:
            diagnostics.error(f"input dimension {d} is out of range (1 to {MAX_DIM:,})", span)
    return dims
