"""An oracle for the training-step tests: netdsl's plain ONNX model, run by PyTorch.

Interprets the model `to_onnx(net, mode="train")` writes (the form any ONNX user sees) op by op
with torch.nn.functional, so that torch.autograd gives the gradients and F.batch_norm the running
statistics that the compiler's training step must reproduce. Nothing of the backward rules is
shared; dropout multiplies by the caller's masks (keyed by layer name) so both sides drop the
same values. The trailing softmax is left out: the loss takes the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

T = torch.Tensor


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def onnx_pad(x: T, pads: list[int], value: float = 0.0) -> T:
    """ONNX pads [begins of each spatial axis, then ends] as F.pad's pairs, last axis first."""
    rank = len(pads) // 2
    return F.pad(
        x, [v for a in reversed(range(rank)) for v in (pads[a], pads[a + rank])], value=value
    )


# PyTorch's functions by tensor rank: signals (N x C x L), images, volumes (N x C x D x H x W)
CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}
DECONV = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}
MAXPOOL = {3: F.max_pool1d, 4: F.max_pool2d, 5: F.max_pool3d}
AVGPOOL = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}
ADAPTIVE_MAX = {3: F.adaptive_max_pool1d, 4: F.adaptive_max_pool2d, 5: F.adaptive_max_pool3d}


def run(
    model: onnx.ModelProto,
    x: T | dict[str, T],
    params: dict[str, T],
    running: dict[str, T],
    masks: dict[str, T],
    output: str = "output",
) -> T:
    """The logits of `model` (a netdsl train-mode model) on `x` (one tensor for the input
    `input`, or one per input by name) at its output `output`; `running` statistics are
    updated in place as PyTorch's batch norm does (twice for a norm used twice)."""
    inputs = x if isinstance(x, dict) else {"input": x}
    dtype = next(iter(inputs.values())).dtype
    env: dict[str, Any] = {**inputs, **params}
    nodes = list(model.graph.node)
    last = next(n for n in nodes if output in n.output)
    if last.op_type == "Softmax":  # the loss takes the logits
        nodes.remove(last)
        output = last.input[0]
    for node in nodes:
        a, ins = _attrs(node), [env.get(i) if i else None for i in node.input]
        env[node.output[0]] = _op(node, a, ins, running, masks, dtype)
    return env[output]  # type: ignore[no-any-return]


def _op(
    node: onnx.NodeProto,
    a: dict[str, Any],
    ins: list[Any],
    running: dict[str, T],
    masks: dict[str, T],
    dtype: torch.dtype,
) -> Any:
    op = node.op_type
    x = ins[0] if ins else None
    if op == "Constant":
        value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        return value.to(dtype) if value.is_floating_point() else value
    if op == "Reshape":
        shape = [x.shape[i] if int(v) == 0 else int(v) for i, v in enumerate(ins[1])]
        return x.reshape(shape)
    if op == "Transpose":
        return x.permute(*a.get("perm", reversed(range(x.dim()))))
    if op == "MatMul":
        return ins[0] @ ins[1]
    if op == "Slice":
        index = [slice(None)] * x.dim()
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(ins[1]))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(ins[1])
        for axis, start, stop, step in zip(axes, ins[1], ins[2], steps, strict=True):
            index[int(axis)] = slice(int(start), int(min(int(stop), x.shape[int(axis)])), int(step))
        return x[tuple(index)]
    if op in ("Conv", "ConvTranspose"):
        rank = x.dim() - 2
        pads = a.get("pads", [0] * 2 * rank)
        s, d = a.get("strides", [1] * rank), a.get("dilations", [1] * rank)
        b = ins[2] if len(ins) > 2 else None
        if op == "Conv":
            return CONV[x.dim()](onnx_pad(x, pads), ins[1], b, s, 0, d, a.get("group", 1))
        y = DECONV[x.dim()](
            x, ins[1], b, s, 0, a.get("output_padding", [0] * rank), a.get("group", 1), d
        )
        crop = [slice(pads[i], y.shape[2 + i] - pads[i + rank]) for i in range(rank)]
        return y[(slice(None), slice(None), *crop)]
    if op == "MaxPool":
        pads = a.get("pads", [0] * 2 * (x.dim() - 2))
        return MAXPOOL[x.dim()](onnx_pad(x, pads, -np.inf), a["kernel_shape"], a.get("strides", 1))
    if op == "AveragePool":  # padding counted in neither sum nor count (window sizes cancel)
        pads, k, s = a.get("pads", [0] * 2 * (x.dim() - 2)), a["kernel_shape"], a.get("strides", 1)
        total = AVGPOOL[x.dim()](onnx_pad(x, pads), k, s)
        count = AVGPOOL[x.dim()](onnx_pad(torch.ones_like(x), pads), k, s)
        return total / count
    if op == "GlobalAveragePool":
        return x.mean(tuple(range(2, x.dim())), keepdim=True)
    if op == "GlobalMaxPool":
        return ADAPTIVE_MAX[x.dim()](x, 1)
    if op == "Pad":  # constant zeros (WaveNet's causal padding)
        pads = [int(v) for v in ins[1]]
        rank = x.dim()
        return F.pad(x, [v for i in reversed(range(rank)) for v in (pads[i], pads[i + rank])])
    if op == "Gemm":
        w = ins[1].T if a.get("transB", 0) else ins[1]
        return x @ w + (ins[2] if len(ins) > 2 else 0)
    if op == "Flatten":
        return x.flatten(1)
    if op == "BatchNormalization":
        return F.batch_norm(  # the running statistics by their tensors' names: shared ones too
            x,
            running[node.input[3]],
            running[node.input[4]],
            ins[1],
            ins[2],
            training=True,
            momentum=1.0 - a.get("momentum", 0.9),
            eps=a.get("epsilon", 1e-5),
        )
    if op == "Dropout":
        return x * masks[node.name]
    if op == "LRN":
        size, alpha, beta, k = (
            a["size"],
            a.get("alpha", 1e-4),
            a.get("beta", 0.75),
            a.get("bias", 1.0),
        )
        sq = F.pad(x * x, (0, 0, 0, 0, (size - 1) // 2, size // 2))
        window = sum(sq[:, i : i + x.shape[1]] for i in range(size))
        return x / (k + alpha / size * window) ** beta
    simple = {
        "Relu": F.relu,
        "Sigmoid": torch.sigmoid,
        "Tanh": torch.tanh,
        "Identity": lambda t: t,
    }
    if op in simple:
        return simple[op](x)
    if op == "LeakyRelu":
        return F.leaky_relu(x, a.get("alpha", 0.01))
    if op == "Softmax":
        return F.softmax(x, a.get("axis", -1))
    if op in ("Add", "Sum"):
        return sum(ins[1:], ins[0])
    if op == "Mul":
        return ins[0] * ins[1]
    if op == "Concat":
        return torch.cat(ins, a["axis"])
    if op == "Unsqueeze":
        for axis in sorted(int(v) for v in ins[1]):
            x = x.unsqueeze(axis)
        return x
    raise NotImplementedError(op)
