"""Shaped net -> ONNX model: the last stop of the pipeline.

`emit` (and `to_onnx`, its model alone) walks the nodes of a `ShapedNet` in order and calls one
emitter per op, looked up in `EMITTERS`, a table keyed by exactly the op names of
`netdsl.rules.RULES` (tests/test_op_table.py checks that they agree). Emitters compute no geometry:
pads, strides and kernels are the rules' resolved attributes. Names follow the net's structure: a
layer's node and its output tensor carry the layer's name, its initializers are `layer.weight`,
`layer.bias`, ...; the graph's input is `input` [N, C, H, W] and its output `output`. Every node's
doc_string points at the `.net` text it came from, so a layer named in an onnxruntime error is
found at once; `emit` also returns that map (ONNX node name -> `Span`), through which later stages
report their problems as `Diagnostic`s. Weights come from `weights.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netdsl.backends.onnx import weights as wt
from netdsl.backends.passes import fold_bn as folding
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError, Span

IR_VERSION = 8  # onnxruntime 1.19 and TensorRT 10 read IR <= 10; opset 17 needs IR 8
OPSETS = range(13, 18)  # Unsqueeze/Dropout take their axes and ratio as inputs from 13 on
MODES = ("train", "inference")


@dataclass
class Emitter:
    """The graph being built: nodes, initializers, and what each layer's output is called."""

    net: ShapedNet
    params: wt.Params
    mode: str
    folded: dict[int, int] = field(default_factory=dict)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)  # net node index -> its output tensor
    layer: Node | None = None
    index: int = 0  # of the current layer
    spans: dict[str, Span] = field(default_factory=dict)  # ONNX node name -> its layer's text

    def add(
        self,
        op: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | None = None,
        suffix: str = "",
        **attrs: Any,
    ) -> str:
        """Append an ONNX node for the current layer; return its first output."""
        node = self.layer
        assert node is not None
        name = node.name + suffix
        outputs = list(outputs or [name])
        where = f"{node.span.where}: {node.span.source.line(node.span.line).strip()}"
        folded = [self.net.nodes[i].name for i, j in self.folded.items() if j == self.index]
        note = f"batch norm {folded[0]} folded in" if folded and op != "Constant" else ""
        doc = "\n".join(filter(None, [where, node.note, note]))
        self.spans[name] = node.span
        self.nodes.append(
            helper.make_node(op, list(inputs), outputs, name=name, doc_string=doc, **attrs)
        )
        return outputs[0]

    def weight(self, name: str) -> str:
        """The initializer `layer.name`, or "" where the layer has none by that name."""
        assert self.layer is not None
        full = f"{self.layer.name}.{name}"
        if full not in self.params:
            return ""
        self.initializers.append(full)
        return full

    def const(self, suffix: str, value: np.ndarray) -> str:
        return self.add("Constant", [], suffix=suffix, value=numpy_helper.from_array(value))


Emit = Callable[[Emitter, Node, list[str]], str]


# ---- one emitter per op, named after it; each returns the tensor holding the layer's output ---


def conv(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    inputs = [xs[0], e.weight("weight"), e.weight("bias")]
    return e.add(
        "Conv",
        [t for t in inputs if t],
        kernel_shape=list(a["k"]),
        strides=list(a["s"]),
        dilations=list(a["d"]),
        pads=list(a["pads"]),
        group=a["groups"],
    )


def deconv(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    inputs = [xs[0], e.weight("weight"), e.weight("bias")]
    return e.add(
        "ConvTranspose",
        [t for t in inputs if t],
        kernel_shape=list(a["k"]),
        strides=list(a["s"]),
        dilations=list(a["d"]),
        pads=list(a["pads"]),
        output_padding=list(a["output_padding"]),
        group=a["groups"],
    )


def maxpool(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("MaxPool", xs, **_pool(e, node))


def avgpool(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("AveragePool", xs, **_pool(e, node), count_include_pad=0)


def _pool(e: Emitter, node: Node) -> dict[str, Any]:
    """The rule's pads already hold ceil mode's end padding (`rules.pool`), which gives
    netdsl's (and PyTorch's) size where onnxruntime's and the reference evaluator's ceil_mode
    would not; padding counts in neither pool."""
    a = node.attrs
    return {"kernel_shape": list(a["k"]), "strides": list(a["s"]), "pads": list(a["pads"])}


def gap(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("GlobalAveragePool", xs)


def gmp(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("GlobalMaxPool", xs)


def fc(e: Emitter, node: Node, xs: list[str]) -> str:
    x = xs[0]
    if len(e.net.nodes[node.inputs[0]].shape) != 1:
        x = e.add("Flatten", [x], [f"{node.name}.flat"], ".flatten", axis=1)
    inputs = [x, e.weight("weight"), e.weight("bias")]
    return e.add("Gemm", [t for t in inputs if t], transB=1)


def flatten(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Flatten", xs, axis=1)


def relu(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Relu", xs)


def leakyrelu(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("LeakyRelu", xs, alpha=float(node.attrs["alpha"]))


def sigmoid(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Sigmoid", xs)


def tanh(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Tanh", xs)


def softmax(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Softmax", xs, axis=1)


def identity(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Identity", xs)


def dropout(e: Emitter, node: Node, xs: list[str]) -> str:
    if e.mode == "inference":
        return xs[0]  # dropout is the identity at inference
    ratio = e.const(".ratio", np.array(node.attrs["p"], dtype=np.float32))
    training = e.const(".training_mode", np.array(True))
    return e.add("Dropout", [xs[0], ratio, training])


def bn(e: Emitter, node: Node, xs: list[str]) -> str:
    if e.index in e.folded:
        return xs[0]  # folded into the layer before it
    inputs = [xs[0], *(e.weight(w) for w in ("scale", "bias", "mean", "var"))]
    attrs = {"epsilon": float(node.attrs["eps"]), "momentum": 1.0 - node.attrs["momentum"]}
    if e.mode == "inference":
        return e.add("BatchNormalization", inputs, **attrs)
    # ONNX's momentum weighs the running value (PyTorch's weighs the batch): 1 - m.
    stats = [f"{node.name}.running_mean", f"{node.name}.running_var"]
    return e.add("BatchNormalization", inputs, [node.name, *stats], training_mode=1, **attrs)


def lrn(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    return e.add(
        "LRN",
        xs,
        size=a["size"],
        alpha=float(a["alpha"]),
        beta=float(a["beta"]),
        bias=float(a["k"]),
    )


def add(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Add" if len(xs) == 2 else "Sum", xs)


def concat(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Concat", xs, axis=1)


def mul(e: Emitter, node: Node, xs: list[str]) -> str:
    x, gate = xs
    if len(e.net.nodes[node.inputs[1]].shape) == 1:  # a (C,) gate broadcasts as (N, C, 1, 1)
        spatial = range(2, 1 + len(node.shape))  # one axis per spatial axis of x
        axes = e.const(".axes", np.array(list(spatial), dtype=np.int64))
        gate = e.add("Unsqueeze", [gate, axes], [f"{node.name}.gate"], ".unsqueeze")
    return e.add("Mul", [x, gate])


EMITTERS: dict[str, Emit] = {
    "conv": conv,
    "dwconv": conv,
    "deconv": deconv,
    "maxpool": maxpool,
    "avgpool": avgpool,
    "gap": gap,
    "gmp": gmp,
    "fc": fc,
    "flatten": flatten,
    "relu": relu,
    "leakyrelu": leakyrelu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "identity": identity,
    "dropout": dropout,
    "bn": bn,
    "lrn": lrn,
    "add": add,
    "concat": concat,
    "mul": mul,
}


# ---- the model -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Emitted:
    """An emitted model and where each of its nodes came from: ONNX node name -> the `Span` of
    the layer's text. Later stages locate their problems through `spans` (see `locate`); the
    doc_strings say the same for people reading the model in Netron."""

    model: onnx.ModelProto
    spans: Mapping[str, Span]


def locate(spans: Mapping[str, Span], name: str) -> Span | None:
    """The span of the ONNX node `name`, or of the layer a pass's node was made for: passes
    name their nodes after a layer or tensor plus a suffix (`conv1.cast_in0`)."""
    while name:
        if name in spans:
            return spans[name]
        name = name.rpartition(".")[0]
    return None


def layer_spans(net: ShapedNet) -> dict[str, Span]:
    """The spans by layer name, rebuilt from the net alone: every ONNX node of a layer is named
    after it (`layer` or `layer.suffix`), so `locate` finds it here too."""
    return {node.name: node.span for node in net.nodes}


def to_onnx(
    net: ShapedNet,
    *,
    opset: int = 17,
    batch: int | None = None,
    init: str = "auto",
    seed: int = 0,
    weights: str | Path | Mapping[str, np.ndarray] | None = None,
    mode: str = "train",
    fold_bn: bool = False,
    skip_mismatched: bool = False,
) -> onnx.ModelProto:
    """Compile a shaped net to an ONNX model (`emit`'s model; see there and docs/onnx.md)."""
    return emit(
        net,
        opset=opset,
        batch=batch,
        init=init,
        seed=seed,
        weights=weights,
        mode=mode,
        fold_bn=fold_bn,
        skip_mismatched=skip_mismatched,
    ).model


def emit(
    net: ShapedNet,
    *,
    opset: int = 17,
    batch: int | None = None,
    init: str = "auto",
    seed: int = 0,
    weights: str | Path | Mapping[str, np.ndarray] | None = None,
    mode: str = "train",
    fold_bn: bool = False,
    skip_mismatched: bool = False,
) -> Emitted:
    """Compile a shaped net to an ONNX model, with the source span of every node.

    `batch` None gives a dynamic batch dimension "N"; `init` is auto (He for ReLU nets, Glorot
    otherwise), he, glorot or normal (N(0, 0.01)); `weights` a .npz or .onnx file (or a dict of
    arrays) whose tensors replace the fresh ones by name; `mode` train or inference, where
    `fold_bn` folds each batch norm into the conv or fc before it and dropout disappears.
    """
    _check_options(net, opset, batch, mode, fold_bn)
    wt.check_size(net)  # a net whose weights cannot be allocated is refused with its size
    # a weights file is read only where it matches the net's tensors (names and shapes)
    tensors, where = wt.given(weights, wt.shapes(net)) if weights is not None else ({}, "")
    params = wt.initialise(net, init, seed, provided=tensors)
    meta = {
        "source": net.span.source.name,
        "net": net.name,
        "netdsl_version": _version(),
        "mode": mode + (", batch norms folded" if fold_bn else ""),
        "init": f"{wt.choose_init(net, init)} (seed {seed})",
    }
    if weights is not None:
        params, loaded = wt.merge(params, tensors, skip_mismatched=skip_mismatched, where=where)
        meta["weights"] = loaded.describe()
    folded: dict[int, int] = {}
    if fold_bn:
        params, folded = folding.fold_bn(net, params)
    e = Emitter(net, params, mode, folded)
    for i, node in enumerate(net.nodes):
        e.layer, e.index = node, i
        xs = [e.tensors[j] for j in node.inputs]
        e.tensors.append("input" if node.op == "input" else EMITTERS[node.op](e, node, xs))
    _name_output(e)
    model = onnx.ModelProto()  # built in place: make_model would copy every weight again
    model.ir_version = IR_VERSION
    model.producer_name, model.producer_version = "netdsl", _version()
    model.opset_import.add(domain="", version=opset)
    _graph(e, batch, model.graph)
    helper.set_model_props(model, meta)
    return Emitted(model, e.spans)


def _check_options(net: ShapedNet, opset: int, batch: int | None, mode: str, fold_bn: bool) -> None:
    if opset not in OPSETS:
        raise NetError(f"opset {opset} is not supported (choose {OPSETS[0]} to {OPSETS[-1]})")
    if batch is not None and (isinstance(batch, bool) or batch < 1):
        raise NetError(f"batch must be a whole number >= 1, got {batch}")
    if mode not in MODES:
        raise NetError(f"mode must be 'train' or 'inference', got '{mode}'")
    if fold_bn and mode != "inference":
        raise NetError('folding batch norms needs inference mode (mode="inference")')
    if mode == "train" and opset < 14 and any(n.op == "bn" for n in net.nodes):
        raise NetError(
            f"the training form of batch norm needs opset 14 or later, not {opset} "
            "(or compile in inference form)"
        )


def _graph(e: Emitter, batch: int | None, graph: onnx.GraphProto) -> None:
    net, dim = e.net, "N" if batch is None else batch
    graph.name, graph.doc_string = net.name, f"{net.name}, from {net.span.where}"
    graph.node.extend(e.nodes)
    graph.input.append(_value("input", dim, net.input_shape))
    graph.output.append(_value("output", dim, net.output_shape))
    for name in e.initializers:  # written in place: make_graph would copy every tensor
        tensor, value = graph.initializer.add(), e.params[name]
        tensor.name, tensor.data_type = name, TensorProto.FLOAT
        tensor.dims.extend(value.shape)
        tensor.raw_data = value.astype("<f4", copy=False).tobytes()


def _name_output(e: Emitter) -> None:
    """Call the net's output tensor `output`; a net that is only its input gets an Identity."""
    last = e.tensors[e.net.output]
    if last == "input":
        e.layer = e.net.nodes[e.net.output]
        e.add("Identity", ["input"], ["output"], ".output")
        return
    for node in e.nodes:
        for names in (node.input, node.output):
            for k, name in enumerate(names):
                if name == last:
                    names[k] = "output"


def _value(name: str, batch: int | str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *shape])


def _version() -> str:
    import netdsl

    return netdsl.__version__
