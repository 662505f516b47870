"""Shaped net -> the training form of its ONNX graph, the one onnxruntime-training differentiates.

Sits beside `backends/onnx.py` and reuses its `Emitter` and `EMITTERS` table, overriding the ops
whose ONNX form onnxruntime-training 1.19.2 cannot train: batch norm (its BatchNormalization
never writes back running statistics, and its eval model is invalid) becomes primitive ops over
the batch, with each norm's batch mean and variance exposed as graph outputs so that the trainer
keeps the running statistics; dropout becomes a product with a mask that the trainer draws from
a seeded generator (a graph input, so runs are deterministic and resumable); LRN becomes squares
and a channel-window sum; global max pooling a max pool over the whole map, and a sum of three
branches or more a chain of Adds (ReduceMax and Sum have no gradient); average pooling (whose
CPU gradient kernel dies of SIGFPE in 1.19.2) a depthwise convolution with a constant kernel.
The final softmax of a classifier is dropped: the loss takes the logits. Ops with no gradient and
no exact lowering (deconv) are refused before training, naming the layer and its `.net` line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netdsl.backends.onnx import emit
from netdsl.backends.onnx.weights import Params
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError

OPSET = 17
LOGITS = "logits"
REFUSED = {"deconv": "ConvTranspose has no CPU gradient in onnxruntime-training 1.19.2"}


@dataclass(frozen=True, slots=True)
class BatchStats:
    """A batch norm's outputs in the training graph: the batch mean and (biased) variance, and
    how many values per image each channel's statistics average over (H*W, or 1)."""

    layer: str
    mean: str
    var: str
    channels: int
    per_image: int
    momentum: float
    owner: str = ""  # the layer whose running statistics these are (a shared block's first use)

    @property
    def running(self) -> tuple[str, str]:
        """The running mean and variance this norm reads and updates."""
        layer = self.owner or self.layer
        return f"{layer}.mean", f"{layer}.var"


@dataclass(frozen=True, slots=True)
class Mask:
    """A dropout's mask input: shape per image, and the drop probability."""

    layer: str
    input: str
    shape: tuple[int, ...]
    p: float


@dataclass(frozen=True, slots=True)
class TrainGraph:
    model: onnx.ModelProto
    stats: tuple[BatchStats, ...]
    masks: tuple[Mask, ...]
    classes: int


def check_trainable(net: ShapedNet) -> int:
    """Refuse what cannot be trained, before any work; return the number of classes."""
    form = net.graph_form()
    if form:  # its gradient builder is given one input and one loss on one output
        raise NetError(
            f"training does not handle a net with {form} with onnxruntime-training's engine: "
            f"{net.name}",
            net.span,
            ["the compiler's own training step (the default engine) trains such nets"],
        )
    for node in net.nodes:
        if node.op in REFUSED:
            raise NetError(
                f"cannot train {node.name} ({node.op}): {REFUSED[node.op]}",
                node.span,
                [
                    "netdsl train supports every other op; compile this net with "
                    "`netdsl compile` and train it elsewhere"
                ],
            )
        if node.op == "lrn" and len(node.shape) != 3:  # its training form is written for images
            raise NetError(
                f"cannot train {node.name} (lrn) on {'x'.join(map(str, node.shape))}: "
                "onnxruntime runs LRN on images (C x H x W) only",
                node.span,
            )
    out = net.nodes[net.output]
    if len(out.shape) != 1 or out.shape[0] < 2:
        raise NetError(
            f"netdsl train trains classifiers: the output of {net.name} must be a "
            f"vector of at least 2 class scores, got {'x'.join(map(str, out.shape))}",
            out.span,
        )
    return out.shape[0]


def training_graph(net: ShapedNet, params: Params) -> TrainGraph:
    """The training form of `net` with `params` as initializers (see the module's docstring)."""
    classes = check_trainable(net)
    e = emit.Emitter(net, params, "train")
    logits = emit_logits(e, {**emit.EMITTERS, **TRAINING_EMITTERS})
    e.layer = net.nodes[net.output]
    e.add("Identity", [logits], [LOGITS], ".logits")
    stats = tuple(_stats(n) for n in net.nodes if n.op == "bn")
    masks = tuple(
        Mask(n.name, f"{n.name}.mask", n.shape, float(n.attrs["p"]))
        for n in net.nodes
        if n.op == "dropout"
    )
    inputs = [_value("input", ["N", *net.input_shape])]
    inputs += [_value(m.input, ["N", *m.shape]) for m in masks]
    outputs = [_value(LOGITS, ["N", classes])]
    for s in stats:
        outputs += [_value(s.mean, [s.channels]), _value(s.var, [s.channels])]
    graph = helper.make_graph(e.nodes, f"{net.name}_training", inputs, outputs)
    used = {name for node in e.nodes for name in node.input}
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in params.items() if k in used)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netdsl"
    )
    model.ir_version = emit.IR_VERSION
    return TrainGraph(model, stats, masks, classes)


def emit_logits(e: emit.Emitter, table: dict[str, emit.Emit], output: int | None = None) -> str:
    """Emit through `table` (a training form's emitters) the nodes that the net's node
    `output` (default: the net's output) depends on, and no others: an output the loss is not
    on is not trained. A trailing softmax is left out, since the loss takes logits. The
    inputs are called as `input_names` says. Returns the logits' tensor."""
    net = e.net
    end = net.output if output is None else output
    needed, names = ancestors(net, end), dict(zip(net.inputs, input_names(net), strict=True))
    for i, node in enumerate(net.nodes):
        e.layer, e.index = node, i
        xs = [e.tensors[j] for j in node.inputs]
        if i not in needed:
            e.tensors.append("")
        elif node.op == "input":
            e.tensors.append(names[i])
        elif node.op == "softmax" and i == end:
            e.tensors.append(xs[0])
        else:
            e.tensors.append(table[node.op](e, node, xs))
    return e.tensors[end]


def input_names(net: ShapedNet) -> tuple[str, ...]:
    """The training graphs' inputs: `input` for a net of one input (whatever it is called),
    the net's own input names for several."""
    return ("input",) if len(net.inputs) == 1 else net.input_names


def ancestors(net: ShapedNet, index: int) -> set[int]:
    """The node `index` and every node it depends on."""
    seen, todo = {index}, [index]
    while todo:
        for j in net.nodes[todo.pop()].inputs:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def chosen_output(net: ShapedNet, name: str | None = None) -> tuple[str, int]:
    """The output the loss is on: `name`, or the net's only output; (name, node index)."""
    outputs = net.output_list
    listed = ", ".join(n for n, _ in outputs)
    if name:
        found = [o for o in outputs if o[0] == name]
        if not found:
            raise NetError(
                f"{net.name} has no output '{name}' to train on (its outputs: {listed})",
                net.span,
            )
        return found[0]
    if len(outputs) > 1:
        raise NetError(
            f"{net.name} has {len(outputs)} outputs ({listed}); training needs the one its "
            "loss is on",
            net.span,
            ["the outputs not chosen are not trained on (their own layers keep their weights)"],
        )
    return outputs[0]


def _stats(node: Node) -> BatchStats:
    per_image = int(np.prod(node.shape[1:])) if len(node.shape) > 1 else 1
    return BatchStats(
        node.name,
        f"{node.name}.batch_mean",
        f"{node.name}.batch_var",
        node.shape[0],
        per_image,
        float(node.attrs["momentum"]),
        node.shares or node.name,
    )


def _value(name: str, shape: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# ---- the training emitters: same signature as backends/onnx.py's ------------------------------


class Builder(Protocol):
    """What the emitters use of backends/onnx.py's `Emitter` (typed here: mypy sees that module
    as untyped)."""

    net: ShapedNet

    def add(
        self,
        op: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | None = None,
        suffix: str = "",
        **attrs: Any,
    ) -> str: ...

    def weight(self, name: str) -> str: ...

    def const(self, suffix: str, value: np.ndarray) -> str: ...


def bn(e: Builder, node: Node, xs: list[str]) -> str:
    """y = (x - mean) / sqrt(var + eps) * scale + bias over the batch (and space)."""
    n, spatial = node.name, len(node.shape) > 1
    axes = [0, *range(2, len(node.shape) + 1)]  # all but the channels, at any rank
    mean = e.add("ReduceMean", xs, [f"{n}.mu"], ".mu", axes=axes, keepdims=1)
    centred = e.add("Sub", [xs[0], mean], [f"{n}.centred"], ".centred")
    square = e.add("Mul", [centred, centred], [f"{n}.square"], ".square")
    var = e.add("ReduceMean", [square], [f"{n}.sigma2"], ".sigma2", axes=axes, keepdims=1)
    eps = e.const(".eps", np.array(node.attrs["eps"], dtype=np.float32))
    std = e.add(
        "Sqrt", [e.add("Add", [var, eps], [f"{n}.var_eps"], ".var_eps")], [f"{n}.std"], ".std"
    )
    normed = e.add("Div", [centred, std], [f"{n}.normed"], ".normed")
    channels = e.const(".channels", np.array([node.shape[0]], dtype=np.int64))
    e.add("Reshape", [mean, channels], [f"{n}.batch_mean"], ".batch_mean")
    e.add("Reshape", [var, channels], [f"{n}.batch_var"], ".batch_var")
    scale, bias = e.weight("scale"), e.weight("bias")
    if spatial:
        axes_hw = e.const(".hw", np.arange(1, len(node.shape), dtype=np.int64))
        scale = e.add("Unsqueeze", [scale, axes_hw], [f"{n}.scale_chw"], ".scale_chw")
        bias = e.add("Unsqueeze", [bias, axes_hw], [f"{n}.bias_chw"], ".bias_chw")
    scaled = e.add("Mul", [normed, scale], [f"{n}.scaled"], ".scaled")
    return e.add("Add", [scaled, bias])


def dropout(e: Builder, node: Node, xs: list[str]) -> str:
    """x * mask; the trainer feeds a mask of 0 and 1/(1-p)."""
    return e.add("Mul", [xs[0], f"{node.name}.mask"])


def lrn(e: Builder, node: Node, xs: list[str]) -> str:
    """ONNX LRN: x / (k + alpha/size * sum of x^2 over a channel window)^beta, the window from
    c - floor((size-1)/2) to c + ceil((size-1)/2), summed by a constant 1-D convolution."""
    a, n = node.attrs, node.name
    c, h, w = node.shape
    size = int(a["size"])
    square = e.add("Mul", [xs[0], xs[0]], [f"{n}.square"], ".square")
    flat = e.const(".flat", np.array([-1, 1, c, h * w], dtype=np.int64))
    rows = e.add("Reshape", [square, flat], [f"{n}.rows"], ".rows")
    ones = e.const(".ones", np.ones((1, 1, size, 1), dtype=np.float32))
    lo, hi = (size - 1) // 2, size // 2
    window = e.add(
        "Conv",
        [rows, ones],
        [f"{n}.window"],
        ".window",
        kernel_shape=[size, 1],
        pads=[lo, 0, hi, 0],
    )
    back = e.const(".back", np.array([-1, c, h, w], dtype=np.int64))
    summed = e.add("Reshape", [window, back], [f"{n}.sum"], ".sum")
    factor = e.const(".factor", np.array(float(a["alpha"]) / size, dtype=np.float32))
    k = e.const(".k", np.array(float(a["k"]), dtype=np.float32))
    base = e.add(
        "Add",
        [e.add("Mul", [summed, factor], [f"{n}.scaled"], ".scaled"), k],
        [f"{n}.base"],
        ".base",
    )
    beta = e.const(".beta", np.array(float(a["beta"]), dtype=np.float32))
    denom = e.add("Pow", [base, beta], [f"{n}.denom"], ".denom")
    return e.add("Div", [xs[0], denom])


def gmp(e: Builder, node: Node, xs: list[str]) -> str:
    """A max pool whose window is the whole map (ReduceMax has no gradient either)."""
    return e.add("MaxPool", xs, kernel_shape=list(e.net.nodes[node.inputs[0]].shape[1:]))


def add(e: Builder, node: Node, xs: list[str]) -> str:
    """A chain of Adds: Sum, for three inputs or more, has no gradient."""
    total = xs[0]
    for k, x in enumerate(xs[1:], 1):
        last = k == len(xs) - 1
        total = e.add(
            "Add", [total, x], None if last else [f"{node.name}.sum{k}"], "" if last else f".sum{k}"
        )
    return total


def mean(e: Builder, node: Node, xs: list[str]) -> str:
    """The Adds of `add`, times 1/N: onnxruntime-training has no gradient for Mean."""
    total = e.add("Add", xs[:2], [f"{node.name}.sum1"], ".sum1")
    for k, x in enumerate(xs[2:], 2):
        total = e.add("Add", [total, x], [f"{node.name}.sum{k}"], f".sum{k}")
    share = e.const(".share", np.array(1.0 / len(xs), dtype=np.float32))
    return e.add("Mul", [total, share])


def avgpool(e: Builder, node: Node, xs: list[str]) -> str:
    """A depthwise convolution with a constant 1/prod(k) kernel; where padding cuts a window,
    a constant map rescales it so that padding is not counted, as in the inference form. The
    pads are the rule's (ceil mode's end padding included). (Measured: faster to train than a
    mean over a reshape, strided slices or a matmul.)"""
    a, n = node.attrs, node.name
    size = e.net.nodes[node.inputs[0]].shape
    c, k, s, pads = size[0], tuple(a["k"]), tuple(a["s"]), tuple(a["pads"])
    area = math.prod(k)
    kernel = e.const(".kernel", np.full((c, 1, *k), 1.0 / area, dtype=np.float32))
    out = e.add(
        "Conv",
        [xs[0], kernel],
        [f"{n}.window"] if any(pads) else None,
        ".window" if any(pads) else "",
        kernel_shape=list(k),
        strides=list(s),
        pads=list(pads),
        group=c,
    )
    if not any(pads):
        return out
    counts = _window_counts(size[1:], node.shape[1:], k, s, pads)
    rescale = e.const(".rescale", (area / counts).astype(np.float32)[None, None])
    return e.add("Mul", [out, rescale])


def _window_counts(
    size: tuple[int, ...],
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    pads: tuple[int, ...],
) -> np.ndarray:
    """How many input pixels (not padding) each output's window covers, for any number of
    spatial axes: the product of the per-axis counts."""
    counts = np.ones((), dtype=np.float64)
    for axis, (n, m) in enumerate(zip(size, out, strict=True)):
        start = np.arange(m) * s[axis] - pads[axis]
        stop = np.minimum(start + k[axis], n)
        counts = np.multiply.outer(counts, stop - np.maximum(start, 0))
    return counts


TRAINING_EMITTERS: dict[str, emit.Emit] = {
    "bn": bn,
    "dropout": dropout,
    "lrn": lrn,
    "gmp": gmp,
    "add": add,
    "mean": mean,
    "avgpool": avgpool,
}


# ---- the inference model with trained weights: evaluation and model.onnx ----------------------


def inference_model(
    net: ShapedNet, params: Params, meta: dict[str, str] | None = None
) -> onnx.ModelProto:
    """`to_onnx(net, mode="inference")` with the trained weights and running statistics: the
    model evaluated after each epoch is the one exported."""
    model: onnx.ModelProto = emit.to_onnx(net, mode="inference", weights=params)
    if meta:
        props = {p.key: p.value for p in model.metadata_props}
        helper.set_model_props(model, {**props, **meta})
    return model


def with_logits(model: onnx.ModelProto, output: str = "output") -> tuple[onnx.ModelProto, str]:
    """A copy of an inference model with the logits of its output `output` (the input of a
    final softmax) as another output, for the loss; and their name (`output` where there is
    no softmax)."""
    last = [n for n in model.graph.node if output in n.output]
    if not last or last[0].op_type != "Softmax":
        return model, output
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    value = next(o for o in model.graph.output if o.name == output)
    classes = value.type.tensor_type.shape.dim[1].dim_value
    copy.graph.output.append(_value(last[0].input[0], ["N", classes]))
    return copy, last[0].input[0]
