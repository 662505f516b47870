"""ONNX emitters of the layers whose rules are in `netdsl/rules_shape.py`: merged into
`layers.EMITTERS` (this module is imported by `layers.py`, never alone).

Each writes standard ONNX ops only (opset 13-17), so onnxruntime, the reference evaluator and
TensorRT all take it: the locally connected layer is an im2col (a convolution with a constant
identity-patch kernel) then one batched MatMul over positions; an adaptive pool is one
AveragePool/MaxPool where every input size divides by the output size, otherwise, axis by
axis, one Slice and ReduceMean/ReduceMax per bin and a Concat. Nodes are named after their
layer (`layer.suffix`), as in `layers.py`.
"""

from __future__ import annotations

import math

import numpy as np

from netdsl.backends.onnx.layers import Emit, Emitter
from netdsl.shapes import Node


def _ints(e: Emitter, suffix: str, values: list[int]) -> str:
    return e.const(suffix, np.array(values, dtype=np.int64))


def identity_patches(c_in: int, kernel: tuple[int, ...]) -> np.ndarray:
    """The kernel [c_in*k*k, c_in, *k] that copies each input patch into channels, ordered
    (channel, kernel row, kernel column) as PyTorch's unfold orders them."""
    count = c_in * math.prod(kernel)
    eye = np.eye(count, dtype=np.float32)
    return eye.reshape(count, c_in, *kernel)


def local(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    c_in = e.net.nodes[node.inputs[0]].shape[0]
    outs = node.shape[1:]
    positions, fan_in = math.prod(outs), c_in * math.prod(a["k"])
    kernel = e.const(".patches", identity_patches(c_in, a["k"]))
    cols = e.add(
        "Conv",
        [xs[0], kernel],
        [f"{node.name}.cols"],
        ".im2col",
        kernel_shape=list(a["k"]),
        strides=list(a["s"]),
        pads=list(a["pads"]),
    )
    flat = e.add(
        "Reshape",
        [cols, _ints(e, ".cols_shape", [0, fan_in, positions])],
        [f"{node.name}.flat"],
        ".flat",
    )
    per_position = e.add(
        "Transpose", [flat], [f"{node.name}.by_position"], ".by_position", perm=[2, 0, 1]
    )
    y = e.add("MatMul", [per_position, e.weight("weight")], [f"{node.name}.mm"], ".matmul")
    back = e.add("Transpose", [y], [f"{node.name}.by_channel"], ".by_channel", perm=[1, 2, 0])
    bias = e.weight("bias")
    shape = _ints(e, ".shape", [0, a["c"], *outs])
    if not bias:
        return e.add("Reshape", [back, shape], suffix="")
    out = e.add("Reshape", [back, shape], [f"{node.name}.unbiased"], ".unflat")
    return e.add("Add", [out, bias])


def softmax(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Softmax", xs, axis=node.attrs["axis"])


def reshape(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Reshape", [xs[0], _ints(e, ".shape", [0, *node.shape])])


def transpose(e: Emitter, node: Node, xs: list[str]) -> str:
    return e.add("Transpose", xs, perm=list(node.attrs["perm"]))


def upsample(e: Emitter, node: Node, xs: list[str]) -> str:
    """PyTorch's Upsample: nearest copies floor(o / f); bilinear (align_corners=False) reads
    (o + 0.5) / f - 0.5, which is ONNX's half_pixel."""
    a = node.attrs
    scales = e.const(".scales", np.array([1.0, 1.0, *a["f"]], dtype=np.float32))
    if a["mode"] == "nearest":
        how = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        how = {"coordinate_transformation_mode": "half_pixel"}
    return e.add("Resize", [xs[0], "", scales], mode=a["mode"], **how)


def crop(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    axes = list(range(2, 2 + len(a["size"])))
    ends = [b + m for b, m in zip(a["begin"], a["size"], strict=True)]
    inputs = [_ints(e, ".starts", list(a["begin"])), _ints(e, ".ends", ends)]
    return e.add("Slice", [xs[0], *inputs, _ints(e, ".axes", axes)])


def pad(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    rank = len(a["pads"]) // 2
    pads = [0, 0, *a["pads"][:rank], 0, 0, *a["pads"][rank:]]
    inputs = [xs[0], _ints(e, ".pads", pads)]
    if a["mode"] == "constant" and a["value"]:
        inputs.append(e.const(".value", np.array(a["value"], dtype=np.float32)))
    return e.add("Pad", inputs, mode=a["mode"])


def channels(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    inputs = [_ints(e, ".starts", [a["start"]]), _ints(e, ".ends", [a["end"]])]
    return e.add("Slice", [xs[0], *inputs, _ints(e, ".axes", [1])])


def _adaptive(e: Emitter, node: Node, xs: list[str], pool: str, reduce: str) -> str:
    a = node.attrs
    sizes = e.net.nodes[node.inputs[0]].shape[1:]
    if all(n % m == 0 for n, m in zip(sizes, a["size"], strict=True)):
        k = [n // m for n, m in zip(sizes, a["size"], strict=True)]
        return e.add(pool, xs, kernel_shape=k, strides=k)
    x = xs[0]
    last = [axis for axis, (n, m) in enumerate(zip(sizes, a["size"], strict=True)) if n != m]
    for axis, (n, m) in enumerate(zip(sizes, a["size"], strict=True)):
        if n == m:
            continue
        parts = []
        for i, (begin, end) in enumerate(a["bins"][axis]):
            tag = f".a{axis}b{i}"
            cut = e.add(
                "Slice",
                [
                    x,
                    _ints(e, f"{tag}.s", [begin]),
                    _ints(e, f"{tag}.e", [end]),
                    _ints(e, f"{tag}.x", [axis + 2]),
                ],
                [f"{node.name}{tag}.slice"],
                f"{tag}.slice",
            )
            parts.append(e.add(reduce, [cut], [f"{node.name}{tag}"], tag, axes=[axis + 2]))
        final = axis == last[-1]
        x = e.add(
            "Concat",
            parts,
            None if final else [f"{node.name}.a{axis}"],
            "" if final else f".a{axis}",
            axis=axis + 2,
        )
    return x


def adaptiveavgpool(e: Emitter, node: Node, xs: list[str]) -> str:
    return _adaptive(e, node, xs, "AveragePool", "ReduceMean")


def adaptivemaxpool(e: Emitter, node: Node, xs: list[str]) -> str:
    return _adaptive(e, node, xs, "MaxPool", "ReduceMax")


def gated(e: Emitter, node: Node, xs: list[str]) -> str:
    """WaveNet's z = tanh(W_f * x) ⊙ σ(W_g * x): the filter is the first half of the channels
    that arrive, the gate the second."""
    c = node.shape[0]
    axis = _ints(e, ".axis", [1])
    halves = []
    for tag, begin, op in ((".filter", 0, "Tanh"), (".gate", c, "Sigmoid")):
        cut = e.add(
            "Slice",
            [xs[0], _ints(e, f"{tag}.s", [begin]), _ints(e, f"{tag}.e", [begin + c]), axis],
            [f"{node.name}{tag}.in"],
            f"{tag}.slice",
        )
        halves.append(e.add(op, [cut], [f"{node.name}{tag}"], tag))
    return e.add("Mul", halves)


def avgpool(e: Emitter, node: Node, xs: list[str]) -> str:
    a = node.attrs
    return e.add(
        "AveragePool",
        xs,
        kernel_shape=list(a["k"]),
        strides=list(a["s"]),
        pads=list(a["pads"]),
        count_include_pad=int(a.get("count_pad", False)),
    )


EMITTERS: dict[str, Emit] = {
    "local": local,
    "softmax": softmax,
    "reshape": reshape,
    "transpose": transpose,
    "upsample": upsample,
    "crop": crop,
    "pad": pad,
    "channels": channels,
    "adaptiveavgpool": adaptiveavgpool,
    "adaptivemaxpool": adaptivemaxpool,
    "gated": gated,
    "avgpool": avgpool,
}
