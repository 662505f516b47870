"""Shaped-net layers -> ONNX nodes: the `Emitter` that builds a graph, and one emitter per op.

Used by `emit.py`, which walks a `ShapedNet` and assembles the model, and by the training
backends, which override a few entries of `EMITTERS` with their training forms. `EMITTERS` is
keyed by exactly the op names of `netdsl.rules.RULES` (tests/test_op_table.py checks it). Each
emitter is named after its op, returns the tensor that holds the layer's output, and computes no
geometry: kernels, strides and pads (ceil mode's end padding included) are the rule's resolved
attributes. Every node the emitter adds is named after its layer (`layer` or `layer.suffix`),
carries a doc_string with the layer's `.net` line, and is entered in the node -> span map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from netdsl.backends.onnx import weights as wt
from netdsl.shapes import Node, ShapedNet
from netdsl.source import Span


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
        # a later use of a shared block reads the first use's initializers (listed once)
        full = f"{self.layer.shares or self.layer.name}.{name}"
        if full not in self.params:
            return ""
        if full not in self.initializers:
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
    """Across channels, at any rank: onnxruntime's LRN takes N x C x H x W only, so a vector,
    a signal or a volume is reshaped to N x C x P x 1 (P its positions) and back; LRN mixes
    channels only, so where the positions sit does not matter."""
    a = node.attrs
    attrs = {
        "size": a["size"],
        "alpha": float(a["alpha"]),
        "beta": float(a["beta"]),
        "bias": float(a["k"]),
    }
    if len(node.shape) == 3:
        return e.add("LRN", xs, **attrs)
    positions = math.prod(node.shape[1:])
    flat = np.array([0, node.shape[0], positions, 1], dtype=np.int64)
    x = e.add("Reshape", [xs[0], e.const(".to4d", flat)], [f"{node.name}.4d"], ".4d")
    y = e.add("LRN", [x], [f"{node.name}.lrn"], ".lrn", **attrs)
    back = np.array([0, *node.shape], dtype=np.int64)
    return e.add("Reshape", [y, e.const(".from4d", back)])


def add(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Add" if len(xs) == 2 else "Sum", xs)


def mean(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Mean", xs)


def sub(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Sub", xs)


def abs_(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Abs", xs)


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
    "abs": abs_,
    "dropout": dropout,
    "bn": bn,
    "lrn": lrn,
    "add": add,
    "concat": concat,
    "mul": mul,
    "mean": mean,
    "sub": sub,
}

# the layers of netdsl/rules_shape.py (layers_shape.py uses Emitter, hence the import here)
from netdsl.backends.onnx import layers_shape  # noqa: E402

EMITTERS.update(layers_shape.EMITTERS)
