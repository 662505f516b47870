"""Expanded graph -> shaped net: every layer with its output shape, weights, cost and receptive
field.

Fourth stop of the pipeline, and the last one before a backend. Walks the graph in order (it is
topological by construction), applies the rule of each op from `rules.RULES`, inserts the
projection shortcut of a residual block whose shapes differ, and collects every shape error:
after a failure only the layers that depend on it are skipped, so independent mistakes in other
branches are still reported. Backends take a `ShapedNet` and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from netdsl import fields, geometry
from netdsl.fields import Field
from netdsl.graph import Check, Frame, Graph, Layer, trace_notes
from netdsl.ops import Each, Sides
from netdsl.rules import RULES, Ctx, Out, Shape, ShapeError, Weight, Window, dims, projection
from netdsl.rules_shape import crop_to, upsample_to
from netdsl.source import Diagnostic, Diagnostics, NetError, Span

MAX_ELEMENTS = 2**31 - 1
_SIZED = {"crop": crop_to, "upsample": upsample_to}  # `to=name`: attributes from two shapes


@dataclass(frozen=True, slots=True)
class Node:
    """A layer with everything a backend or a summary needs."""

    name: str
    op: str
    attrs: Mapping[str, Any]
    inputs: tuple[int, ...]
    shape: Shape
    weights: tuple[Weight, ...]
    macs: int
    rf: Field
    span: Span
    trace: tuple[Frame, ...] = ()
    note: str = ""
    shares: str = ""  # the node whose weights this one uses (a later use of a shared block)
    # the field on each input of the net this node depends on, keyed by the input's name, in
    # the order of the net's inputs; `rf` is the first of them (the only one in a net of one
    # input). An input the node does not depend on has no entry.
    fields: Mapping[str, Field] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(w.size for w in self.weights if w.trainable)

    @property
    def rf_size(self) -> tuple[int, ...]:
        """Input pixels one output sees, per axis (the largest over output positions)."""
        return self.rf.size

    @property
    def rf_stride(self) -> tuple[float, ...]:
        """Input pixels between neighbouring outputs, per axis."""
        # strides multiply: 40 strides of 2^31 make a jump no float holds (shown as inf)
        return tuple(float(j) if abs(Fraction(j)) < 2**1000 else math.inf for j in self.rf.jump)

    def __repr__(self) -> str:  # one line, not every field (netdsl.table writes it)
        from netdsl.table import node_repr

        return node_repr(self)


@dataclass(frozen=True, slots=True)
class ShapedNet:
    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    output: int
    defaults_used: tuple[str, ...]
    warnings: tuple[Diagnostic, ...]
    merged_paths: bool  # paths with different receptive fields meet somewhere
    span: Span
    wider_union: bool = False  # ... and their union is wider than each (offset windows)
    inputs: tuple[int, ...] = (0,)  # the input nodes (a net may have several)
    outputs: tuple[tuple[str, int], ...] = ()  # (name, node) of each output; () for `output`

    def graph_form(self) -> str:
        """What makes this net more than one chain from one input to one output (several
        inputs or outputs, shared weights), for the stages that cannot handle it yet; ""."""
        parts = []
        if len(self.inputs) > 1:
            parts.append(f"{len(self.inputs)} inputs ({', '.join(self.input_names)})")
        if len(self.output_list) > 1:
            parts.append(f"{len(self.output_list)} outputs")
        if any(n.shares for n in self.nodes):
            parts.append("shared weights")
        return " and ".join(parts)

    def refuse_graph(self, what: str) -> None:
        """Raise `NetError` if `what` (e.g. "training") meets a net `graph_form` describes."""
        form = self.graph_form()
        if form:
            raise NetError(
                f"{what} does not handle a net with {form} yet: {self.name}",
                self.span,
                [f"{what} works on nets of one input, one output and no shared block"],
            )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.nodes[i].name for i in self.inputs)

    @property
    def output_list(self) -> tuple[tuple[str, int], ...]:
        """(name, node) of every output: `output` alone where the net has one chain."""
        return self.outputs or (("output", self.output),)

    @property
    def output_shape(self) -> Shape:
        return self.nodes[self.output].shape

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def buffers(self) -> int:
        return sum(w.size for n in self.nodes for w in n.weights if not w.trainable)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def activations(self) -> int:
        """Elements of all layer outputs for one image (what a training pass keeps)."""
        return sum(math.prod(n.shape) for n in self.nodes)

    def to_onnx(self, **options: Any) -> Any:
        """This net as an ONNX model: `netdsl.backends.onnx.to_onnx(net, **options)`."""
        from netdsl.backends.onnx.emit import to_onnx

        return to_onnx(self, **options)

    def __repr__(self) -> str:  # `<ShapedNet resnet50: 3x224x224 -> 1000, ... params, ... MACs>`
        from netdsl.table import net_repr

        return net_repr(self)

    def _repr_html_(self) -> str:  # Jupyter: the diagram (with Graphviz) and the summary table
        from netdsl.table import html

        return html(self)


def written(layer: Layer) -> str:
    """The layer as the user wrote it (`maxpool3x3/2`), for messages."""
    span = layer.span
    if layer.op in ("add", "concat", "mul"):
        return {"add": "residual add", "concat": "concat", "mul": "scale"}[layer.op]
    text = span.source.line(span.line)[span.column - 1 :]
    if span.end_line == span.line:
        text = text[: span.end_column - span.column]
    head = text.split("(")[0].strip()
    return head if head.replace("/", "").replace("_", "").isalnum() else layer.op


def infer_shapes(graph: Graph) -> ShapedNet:
    """Shape every layer of `graph`, or raise `NetError` with every independent shape error."""
    return _Pass(graph).run()


class _Pass:
    def __init__(self, graph: Graph, layers: Sequence[Layer] | None = None) -> None:
        self.graph = graph
        self.layers = graph.layers if layers is None else layers  # a live list while expanding
        self.nodes: list[Node] = []
        self.index: dict[int, int | None] = {}  # graph layer -> node, None where it failed
        self.diagnostics = Diagnostics()
        self.warnings: list[Diagnostic] = []
        self.merged = False
        self.wider = False
        self.order: dict[str, int] = {}  # input name -> its place among the net's inputs
        consumers: dict[int, list[int]] = {}
        for i, layer in enumerate(self.layers):
            for j in layer.inputs:
                consumers.setdefault(j, []).append(i)
        self.feeds_bn = {
            i
            for i, users in consumers.items()
            if len(users) == 1 and self.layers[users[0]].op == "bn"
        }

    def run(self) -> ShapedNet:
        g = self.graph
        self.upto(len(self.layers) - 1)
        for check in g.checks:
            self.verify(check)
        self.diagnostics.raise_if_any()
        out = self.index[g.output]
        assert out is not None
        inputs = tuple(self.index[j] for j in g.inputs)
        outputs = tuple((name, self.index[j]) for name, j in g.outputs)
        return ShapedNet(
            g.name,
            g.input_shape,
            tuple(self.nodes),
            out,
            g.defaults_used,
            tuple(self.warnings),
            self.merged,
            g.span,
            self.wider,
            tuple(j for j in inputs if j is not None),
            tuple((name, j) for name, j in outputs if j is not None),
        )

    def upto(self, last: int) -> None:
        """Shape every layer up to `last` not shaped yet (in order: the graph is topological)."""
        for i in range(len(self.index), last + 1):
            self.index[i] = self.shape(i, self.layers[i])

    def shape(self, i: int, layer: Layer) -> int | None:
        if layer.op == "input":  # an input (the first, or another of a net with several)
            shape = self.graph.input_shape if i == 0 else layer.attrs["shape"]
            axes = max(len(shape) - 1, 0)
            point = Field((geometry.POINT,) * axes, (1,) * axes)
            self.order.setdefault(layer.name, len(self.order))
            fields = {layer.name: point}
            self.nodes.append(
                Node(layer.name, "input", {}, (), shape, (), 0, point, layer.span, fields=fields)
            )
            return len(self.nodes) - 1
        inputs = [self.index[j] for j in layer.inputs]
        if any(j is None for j in inputs):
            return None  # an earlier layer failed; its error is already reported
        ins = [j for j in inputs if j is not None]
        if layer.op == "add" and layer.attrs.get("auto"):
            ins[1] = self.project(layer, ins[0], ins[1])
        attrs = _fit_rank(layer.attrs, self.nodes[ins[0]].shape)
        if "to" in attrs:  # `crop(to=skip)`: the sizes of another tensor, which is no input
            attrs, ins = self.sized_by(layer, ins)
            if not ins:
                return None
        ctx = Ctx(
            written(layer),
            attrs,
            tuple(self.nodes[j].shape for j in ins),
            i not in self.feeds_bn,
        )
        try:
            _check_pads(ctx)
            out = RULES[layer.op](ctx)
            self.check_size(ctx.written, out)
        except ShapeError as error:
            history = self.history(layer, i)
            repeated = [f for f in layer.trace if f.count]
            skip = repeated[-1] if history else None
            notes = [
                *error.notes,
                *_skip_hint(layer, ctx),
                *history,
                *trace_notes(layer.trace, skip),
            ]
            if len(self.graph.input_shape) == 1:  # no image anywhere: the input line says why
                vector = f"the net's input is a vector (input {dims(self.graph.input_shape)})"
                notes = [vector if n.startswith("a flatten or fc") else n for n in notes]
            self.diagnostics.error(error.message, layer.span, notes)
            return None
        for text in out.warnings:
            self.warnings.append(
                Diagnostic(
                    f"{ctx.written}: stride {text}",
                    layer.span,
                    tuple(trace_notes(layer.trace)[:1]),
                    "warning",
                )
            )
        shared = self.share(layer, out) if layer.shares else out
        return None if shared is None else self.append(layer, tuple(ins), shared)

    def verify(self, check: Check) -> None:
        """`-> 64x56x56`: the shape there, with or without its channels, is the one written."""
        at = self.index.get(check.layer)
        if at is None:
            return  # the layer failed; its error is reported
        node = self.nodes[at]
        have, want = node.shape, check.dims
        spatial = len(want) == len(have) - 1 > 0
        if want == (have[1:] if spatial else have):
            return
        what = "sizes" if spatial else "shape"
        notes = [f"{node.name} makes {dims(have)}"]
        if node.inputs:
            notes[0] += f" from {dims(self.nodes[node.inputs[0]].shape)} at {node.span.where}"
        if len(want) not in (len(have), len(have) - 1):
            notes.append(f"a shape check gives every axis ({dims(have)}) or all but the channels")
        self.diagnostics.error(
            f"shape check: the {what} here {'are' if spatial else 'is'} "
            f"{dims(have[1:] if spatial else have)}, the text says {dims(want)}",
            check.span,
            [*notes, *trace_notes(check.trace)],
        )

    def sized_by(self, layer: Layer, ins: list[int]) -> tuple[dict[str, Any], list[int]]:
        have, target = (self.nodes[j].shape for j in ins)
        try:
            sized = _SIZED[layer.op](have, target)
        except ShapeError as error:
            note = f"{layer.attrs['to']} is {dims(target)}"
            self.diagnostics.error(error.message, layer.span, [*error.notes, note])
            return {}, []
        attrs = {k: v for k, v in layer.attrs.items() if k != "to"}
        return {**attrs, **sized}, ins[:1]

    def share(self, layer: Layer, out: Out) -> Out | None:
        """A later use of a shared block: the weights are the first use's, so their shapes
        must agree; the layer holds none of its own (they are counted once)."""
        owner = next((n for n in self.nodes if n.name == layer.shares), None)
        if owner is None or not out.weights:
            return out
        mine = [(w.name, w.shape) for w in out.weights]
        theirs = [(w.name, w.shape) for w in owner.weights]
        if mine != theirs:
            shown = ", ".join(f"{n} {dims(s)}" for n, s in mine)
            first = ", ".join(f"{n} {dims(s)}" for n, s in theirs)
            self.diagnostics.error(
                f"{written(layer)}: a shared block's layer needs the same weights at every use; "
                f"here {shown}, at its first use ({owner.name}) {first}",
                layer.span,
                ["what flows into the block differs between its uses", *trace_notes(layer.trace)],
            )
            return None
        note = "; ".join(filter(None, [out.note, f"weights of {owner.name}"]))
        return Out(out.shape, out.attrs, (), out.macs, out.window, note)

    def append(self, layer: Layer, ins: tuple[int, ...], out: Out, name: str = "") -> int:
        fields = self.receptive_field(ins, out.window, out.shape)
        rf = next(iter(fields.values()), Field((), ()))
        self.nodes.append(
            Node(
                name or layer.name,
                layer.op if not name else out.attrs["op"],
                {k: v for k, v in out.attrs.items() if k != "op"},
                ins,
                out.shape,
                out.weights,
                out.macs,
                rf,
                layer.span,
                layer.trace,
                out.note,
                layer.shares if not name else "",
                fields,
            )
        )
        return len(self.nodes) - 1

    def project(self, add: Layer, body: int, shortcut: int) -> int:
        """The projection shortcut of He et al. (its geometry: `rules.projection`)."""
        want, have = self.nodes[body].shape, self.nodes[shortcut].shape
        attrs = projection(have, want)
        if attrs is None:
            return shortcut
        prefix, _, local = add.name.rpartition(".")
        base = f"{prefix}.shortcut{local[3:]}" if prefix else f"shortcut{local[3:]}"
        conv = RULES["conv"](Ctx("projection shortcut", attrs, (have,), False))
        note = f"projection shortcut {dims(have)} -> {dims(want)}"
        j = self.append(add, (shortcut,), _with_op(conv, "conv", note), f"{base}.conv")
        norm = RULES["bn"](Ctx("bn", {"eps": 1e-5, "momentum": 0.1}, (want,)))
        return self.append(add, (j,), _with_op(norm, "bn", ""), f"{base}.bn")

    def receptive_field(
        self, ins: tuple[int, ...], window: Window | None, shape: Shape
    ) -> Mapping[str, Field]:
        """The field on each input of the net that `ins` depend on: for each, the union of what
        the paths from it see (a tensor of one position, a gate, is broadcast: every output sees
        all of it), moved by the layer's window. Inputs stay apart: what a node sees of one
        input says nothing of what it sees of another (they may differ in size and rank)."""
        if window is None and len(ins) == 1:  # activations, batch norms: the same fields
            return self.nodes[ins[0]].fields
        paths: dict[str, list[tuple[int, Field]]] = {}
        for j in ins:
            for name, seen in self.nodes[j].fields.items():
                paths.setdefault(name, []).append((j, seen))
        ordered = sorted(paths, key=lambda name: self.order.get(name, len(self.order)))
        return {name: self.field_on(paths[name], ins, window, shape) for name in ordered}

    def field_on(
        self,
        paths: list[tuple[int, Field]],
        ins: tuple[int, ...],
        window: Window | None,
        shape: Shape,
    ) -> Field:
        """One input's field (fields.py): `paths` are (node, its field on that input) for the
        layer's inputs that depend on it, in order."""
        shaped = [(j, self.nodes[j].shape, seen) for j, seen in paths]
        joined = fields.field_on(shaped, ins[0], self.nodes[ins[0]].shape, window, shape)
        self.merged = self.merged or joined.merged
        self.wider = self.wider or joined.wider
        return joined.field

    @staticmethod
    def check_size(written: str, out: Out) -> None:
        for w in out.weights:
            if w.size > MAX_ELEMENTS:
                raise ShapeError(
                    f"{written}: its {w.name} tensor would have {w.size:,} elements "
                    f"({dims(w.shape)}), more than the limit of 2^31 - 1"
                )
        if math.prod(out.shape) > MAX_ELEMENTS:
            raise ShapeError(
                f"{written}: its output {dims(out.shape)} would have {math.prod(out.shape):,} "
                f"elements, more than the limit of 2^31 - 1"
            )

    def history(self, layer: Layer, position: int) -> list[str]:
        """For a layer inside a repetition: the input size at the start of each repetition."""
        frames = [f for f in layer.trace if f.count]
        if not frames:
            return []
        frame = frames[-1]
        sizes: dict[int, str] = {}
        for other in self.layers[: position + 1]:
            mine = next((f for f in other.trace if f.key == frame.key), None)
            if mine is None or mine.index in sizes:
                continue
            node = self.index.get(other.inputs[0]) if other.inputs else None
            if node is not None:
                shape = self.nodes[node].shape
                sizes[mine.index] = dims(shape[1:]) if len(shape) > 1 else dims(shape)
        if len(sizes) < 2:
            return []
        return [f"in {frame.text}; input sizes " + " → ".join(sizes[k] for k in sorted(sizes))]


def _fit_rank(attrs: Mapping[str, Any], shape: Shape) -> Mapping[str, Any]:
    """Sizes written once for every axis (`conv3`, `p=1`: `ops.Each`, held for two axes) fitted
    to the spatial axes of the input: one on a signal (CxL), three on a volume (CxDxHxW); two
    paddings (`ops.Sides`) on a signal are its begin and end."""
    rank = len(shape) - 1
    if rank in (0, 2) or not any(isinstance(v, Each | Sides) for v in attrs.values()):
        return attrs
    return {
        k: Each(v[:1] * (len(v) // 2 * rank))
        if isinstance(v, Each)
        else v[:2]  # `p=(begin, end)` on a signal
        if isinstance(v, Sides) and rank == 1
        else v
        for k, v in attrs.items()
    }


def _check_pads(ctx: Ctx) -> None:
    """Padding written per axis must have as many axes as the input: two values per axis."""
    p, rank = ctx.attrs.get("p"), len(ctx.inputs[0]) - 1
    if not isinstance(ctx.attrs.get("k"), tuple):
        return  # only windowed layers take `padding` (pad's p is its own)
    if isinstance(p, tuple) and not isinstance(p, Each) and rank >= 1 and len(p) != 2 * rank:
        raise ShapeError(
            f"{ctx.written}: its padding gives {len(p) // 2} axes (begins {dims(p[: len(p) // 2])}"
            f", ends {dims(p[len(p) // 2 :])}), but its input {dims(ctx.inputs[0])} has {rank}"
        )


def _skip_hint(layer: Layer, ctx: Ctx) -> list[str]:
    """A concatenation of maps of different sizes (a U-Net skip): say how to match them."""
    shapes = ctx.inputs
    if (
        layer.op != "concat"
        or not layer.attrs.get("listed")
        or len({len(s) for s in shapes}) != 1
        or len(shapes[0]) < 2
    ):
        return []
    smallest = min(shapes, key=lambda s: math.prod(s[1:]))
    if any(any(n < m for n, m in zip(s[1:], smallest[1:], strict=True)) for s in shapes):
        return []  # no one map fits inside the others
    larger = [dims(s[1:]) for s in shapes if s[1:] != smallest[1:]]
    return [
        f"crop the larger map{'s' if len(larger) > 1 else ''} ({', '.join(larger)}) to "
        f"{dims(smallest[1:])} first: [skip -> crop(to=up), up] -> concat (U-Net's "
        "crop-and-copy), or pad the smaller"
    ]


def _with_op(out: Out, op: str, note: str) -> Out:
    return Out(out.shape, {**out.attrs, "op": op}, out.weights, out.macs, out.window, note)


def check_all(graphs: list[Graph]) -> list[ShapedNet]:
    """Shape several graphs, reporting the errors of all of them together."""
    diagnostics = Diagnostics()
    shaped = []
    for graph in graphs:
        try:
            shaped.append(infer_shapes(graph))
        except NetError as error:
            diagnostics.extend(error)
    diagnostics.raise_if_any()
    return shaped


class ShapeProbe:
    """Shapes of a graph while it is still being expanded, for a definition that reads what
    flows into it (`in.c`, expand.py): each layer is shaped once, when a read first needs it.
    Its shape errors are kept, for the expander to report where a read fails because of one."""

    def __init__(self, graph: Graph, layers: Sequence[Layer]) -> None:
        self.shapes = _Pass(graph, layers)
        self.reported = 0

    def shape(self, layer: int) -> Shape | None:
        """The output shape of `layer`, or None where it (or what feeds it) failed."""
        self.shapes.upto(layer)
        at = self.shapes.index[layer]
        return None if at is None else self.shapes.nodes[at].shape

    def new_errors(self) -> list[Diagnostic]:
        """The errors found since the last call."""
        items = self.shapes.diagnostics.items
        new, self.reported = items[self.reported :], len(items)
        return new
