"""Gradient rules of the ONNX operators with weights or windows, for `grad.GRADIENTS`.

The layers half of the table in `grad.py` (which holds the shape, arithmetic and activation
rules and the table itself): Gemm, Conv and ConvTranspose (their index arithmetic in
`conv_grad.py`), BatchNormalization, the poolings and LRN. Each rule has the signature
`rule(g, node, dys, want) -> one gradient per input`, as `reverse.backward` calls it. Every
rule reads the number of spatial axes from its tensors, so signals (N x C x L), images and
volumes (N x C x D x H x W) take the same rules, except LRN (onnxruntime runs it on images
only).
"""

from __future__ import annotations

import numpy as np
import onnx

from netdsl.backends.train.conv_grad import conv_input_grad, conv_weight_grad, output_padding
from netdsl.backends.train.reverse import Grad, Out, attr, first

Node = onnx.NodeProto


# ---- layers with weights -----------------------------------------------------------------------


def gemm(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """y = alpha * a @ op(b) + beta * c, a not transposed (as netdsl's fc emits it)."""
    if attr(node, "transA", 0):
        raise ValueError(f"{node.name}: a Gemm with transA=1 has no gradient rule")
    dy, alpha, beta = first(dys), attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    a, b = node.input[:2]
    if alpha != 1.0:
        dy = g.add("Mul", [dy, g.const(alpha)])
    trans_b = attr(node, "transB", 0)
    out: Out = [None] * len(node.input)
    if want[0]:
        out[0] = g.add("Gemm", [dy, b], transB=0 if trans_b else 1)
    if want[1]:
        out[1] = g.add("Gemm", [dy, a], transA=1) if trans_b else g.add("Gemm", [a, dy], transA=1)
    if len(node.input) > 2 and want[2]:
        db = first(dys) if beta == 1.0 else g.add("Mul", [first(dys), g.const(beta)])
        out[2] = g.unbroadcast(db, g.shape(node.output[0]), node.input[2])
    return out


def conv(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    dy, x, w = first(dys), node.input[0], node.input[1]
    k, s, d, pads, group = _conv_attrs(g, node)
    out: Out = [None] * len(node.input)
    if want[0]:
        sizes = g.shape(x)[2:], g.shape(node.output[0])[2:]
        out[0] = conv_input_grad(g, dy, w, g.shape(w), sizes, k, s, d, pads, group)
    if want[1]:
        y = g.shape(node.output[0])
        out[1] = conv_weight_grad(g, (x, g.shape(x)), (dy, y), g.shape(w), s, d, pads, group)
    if len(node.input) > 2 and want[2]:
        out[2] = g.add("ReduceSum", [dy, g.ints(0, *_space(g, x))], keepdims=0)
    return out


def conv_transpose(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """The adjoint of a transposed convolution is the convolution with the same kernel; its
    weight gradient is a convolution's, with the roles of input and output gradient swapped."""
    if attr(node, "output_shape") is not None:
        raise ValueError(f"{node.name}: a ConvTranspose with output_shape has no gradient rule")
    dy, x, w = first(dys), node.input[0], node.input[1]
    k, s, d, pads, group = _conv_attrs(g, node)
    out: Out = [None] * len(node.input)
    if want[0]:
        dx = g.add("Conv", [dy, w], kernel_shape=k, strides=s, dilations=d, pads=pads, group=group)
        size = [int(v) for v in g.shape(x)[2:]]
        ys = [int(v) for v in g.shape(node.output[0])[2:]]
        rank = len(k)
        got = [
            (ys[a] + pads[a] + pads[a + rank] - (k[a] - 1) * d[a] - 1) // s[a] + 1
            for a in range(rank)
        ]
        if got != size:  # output_padding >= stride (allowed below the dilation) added rows
            dx = g.add("Slice", [dx, g.ints(*[0] * rank), g.ints(*size), g.ints(*_space(g, x))])
        out[0] = dx
    if want[1]:
        y = g.shape(node.output[0])
        out[1] = conv_weight_grad(g, (dy, y), (x, g.shape(x)), g.shape(w), s, d, pads, group)
    if len(node.input) > 2 and want[2]:
        out[2] = g.add("ReduceSum", [dy, g.ints(0, *_space(g, x))], keepdims=0)
    return out


def _space(g: Grad, x: str) -> list[int]:
    """The spatial axes of `x` [N, C, *space]: one for a signal, two for an image, three for a
    volume."""
    return list(range(2, len(g.shape(x))))


def _conv_attrs(g: Grad, node: Node) -> tuple[list[int], list[int], list[int], list[int], int]:
    if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{node.name}: auto_pad has no gradient rule (write explicit pads)")
    k = list(attr(node, "kernel_shape", None) or [int(v) for v in g.shape(node.input[1])[2:]])
    ones = [1] * len(k)
    return (
        k,
        list(attr(node, "strides", ones)),
        list(attr(node, "dilations", ones)),
        list(attr(node, "pads", [0] * 2 * len(k))),
        int(attr(node, "group", 1)),
    )


def batchnorm(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """In training mode, statistics of the batch (recomputed here):
    dx = scale / std * (dy - mean(dy) - xhat * mean(dy * xhat)); in inference mode an affine map
    whose mean and variance inputs get gradients too (a graph that feeds batch statistics
    computed by other nodes differentiates through them)."""
    dy = first(dys)
    x, scale, _, mean, var = node.input
    eps = g.const(attr(node, "epsilon", 1e-5))
    rank = len(g.shape(x))
    axes = [0, *range(2, rank)]
    c_shape = g.ints(-1, *([1] * (rank - 2)))
    stats = _batch_statistics(g, node)
    training = bool(attr(node, "training_mode", 0)) or stats is not None
    if stats is not None:  # the forward pass's own centred input and variance
        centred, sigma2 = stats
    elif training:
        mu = g.add("ReduceMean", [x], axes=axes, keepdims=1)
        centred = g.add("Sub", [x, mu])
        sigma2 = g.add("ReduceMean", [g.add("Mul", [centred, centred])], axes=axes, keepdims=1)
    else:
        centred = g.add("Sub", [x, g.add("Reshape", [mean, c_shape])])
        sigma2 = g.add("Reshape", [var, c_shape])
    inv = g.add("Reciprocal", [g.add("Sqrt", [g.add("Add", [sigma2, eps])])])
    xhat = g.add("Mul", [centred, inv])
    dbias = g.add("ReduceSum", [dy, g.ints(*axes)], keepdims=0)
    dscale = g.add("ReduceSum", [g.add("Mul", [dy, xhat]), g.ints(*axes)], keepdims=0)
    gain = g.add("Mul", [g.add("Reshape", [scale, c_shape]), inv])  # scale / std, per channel
    out: Out = [None] * 5
    if training:
        m = g.count_of(x, node.input[1])  # values per channel
        mean_dy = g.add("Div", [g.add("Reshape", [dbias, c_shape]), m])
        mean_dyx = g.add("Div", [g.add("Reshape", [dscale, c_shape]), m])
        inner = g.add("Sub", [g.add("Sub", [dy, mean_dy]), g.add("Mul", [xhat, mean_dyx])])
        out[0] = g.add("Mul", [inner, gain]) if want[0] else None
    else:
        out[0] = g.add("Mul", [dy, gain]) if want[0] else None
        flat_gain = g.add("Reshape", [gain, g.ints(-1)])
        out[3] = g.add("Neg", [g.add("Mul", [dbias, flat_gain])]) if want[3] else None
        if want[4]:  # d/dvar of (x - mean) * scale * (var + eps)^-1/2
            half = g.add("Mul", [g.add("Mul", [dscale, scale]), g.const(-0.5)])
            out[4] = g.add("Mul", [half, g.add("Reshape", [g.add("Mul", [inv, inv]), g.ints(-1)])])
    out[1] = dscale if want[1] else None
    out[2] = dbias if want[2] else None
    return out


def _batch_statistics(g: Grad, node: Node) -> tuple[str, str] | None:
    """Whether an inference-form BatchNormalization's mean and variance are the batch
    statistics of its own input, as the training step writes them: mean = ReduceMean(x),
    var = ReduceMean((x - mean)^2) over every axis but the channels. Then the fused training
    rule gives the input's whole gradient at once (the same sum as differentiating through
    the statistics' nodes, in a third of the passes); returns the forward's x - mean and
    variance tensors, or None."""
    x, mean, var = node.input[0], node.input[3], node.input[4]

    def made(tensor: str, op: str) -> Node | None:
        n = g.producers.get(tensor)
        return n if n is not None and n.op_type == op else None

    rank = len(g.shape(x))
    axes = [0, *range(2, rank)]
    reshapes = made(mean, "Reshape"), made(var, "Reshape")
    if reshapes[0] is None or reshapes[1] is None:
        return None
    mu, sigma2 = made(reshapes[0].input[0], "ReduceMean"), made(reshapes[1].input[0], "ReduceMean")
    if mu is None or sigma2 is None or mu.input[0] != x:
        return None
    if any(list(attr(n, "axes", [])) != axes or not attr(n, "keepdims", 1) for n in (mu, sigma2)):
        return None
    square = made(sigma2.input[0], "Mul")
    if square is None or square.input[0] != square.input[1]:
        return None
    centred = made(square.input[0], "Sub")
    if centred is None or list(centred.input) != [x, mu.output[0]]:
        return None
    return centred.output[0], sigma2.output[0]


# ---- pooling and normalisation -----------------------------------------------------------------


def maxpool(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """Through MaxPool's Indices (offsets into the whole input tensor): the output gradient is
    scattered there, added where windows overlap. The forward node gains the Indices output."""
    if attr(node, "ceil_mode", 0) or attr(node, "storage_order", 0):
        raise ValueError(f"{node.name}: ceil_mode/storage_order have no gradient rule")
    if len(node.output) < 2:
        node.output.append(f"{node.output[0]}.indices")
    x, flat = node.input[0], g.ints(-1)
    zeros = g.add("ConstantOfShape", [g.add("Shape", [g.add("Reshape", [x, flat])])])
    indices, values = (g.add("Reshape", [t, flat]) for t in (node.output[1], first(dys)))
    scattered = g.add("ScatterElements", [zeros, indices, values], axis=0, reduction="add")
    return [g.like(scattered, x)]


def global_maxpool(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """To the first maximum of each map (as PyTorch's adaptive max pool)."""
    x = node.input[0]
    rows = g.add("Reshape", [x, g.ints(0, 0, -1)])
    where = g.add("ArgMax", [rows], axis=2, keepdims=1)
    zeros = g.add("ConstantOfShape", [g.add("Shape", [rows])])
    values = g.add("Reshape", [first(dys), g.ints(0, 0, 1)])
    return [g.like(g.add("ScatterElements", [zeros, where, values], axis=2), x)]


def global_avgpool(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    x = node.input[0]
    spread = g.add("Expand", [first(dys), g.shape_of(x)])
    return [g.add("Div", [spread, g.count_of(x, node.output[0])])]


def avgpool(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """Each output's gradient, divided by the pixels its window covered, spread back over the
    window by a depthwise ConvTranspose with a kernel of ones (measured: faster in onnxruntime
    than copying with Expand where the windows tile the map)."""
    if attr(node, "ceil_mode", 0):
        raise ValueError(f"{node.name}: ceil_mode has no gradient rule (write explicit pads)")
    x, y, dy = node.input[0], node.output[0], first(dys)
    k = list(attr(node, "kernel_shape"))
    rank = len(k)
    s = list(attr(node, "strides", [1] * rank))
    pads = list(attr(node, "pads", [0] * 2 * rank))
    size, out = [int(v) for v in g.shape(x)[2:]], [int(v) for v in g.shape(y)[2:]]
    if attr(node, "count_include_pad", 0) or not any(pads):
        counts = np.full(out, float(np.prod(k)))
    else:  # a window's pixels are the product of its extents along each axis
        counts = np.ones([], dtype=np.float64)
        for a in range(rank):
            start = np.arange(out[a]) * s[a] - pads[a]
            extent = np.minimum(start + k[a], size[a]) - np.maximum(start, 0)
            counts = np.multiply.outer(counts, extent.astype(np.float64))
    scaled = g.add("Mul", [dy, g.const((1.0 / counts)[None, None])])
    c = int(g.shape(x)[1])
    return [
        g.add(
            "ConvTranspose",
            [scaled, g.const(np.ones((c, 1, *k)))],
            kernel_shape=k,
            strides=s,
            pads=pads,
            group=c,
            output_padding=output_padding(size, out, k, s, [1] * rank, pads),
        )
    ]


def lrn(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """y = x * d^-beta, d = bias + alpha/size * (window sum of x^2 over channels):
    dx = dy * d^-beta - 2 alpha beta / size * x * (transposed window sum of dy * y / d)."""
    x, y, dy = node.input[0], node.output[0], first(dys)
    size, alpha = int(attr(node, "size")), float(attr(node, "alpha", 1e-4))
    beta, bias = float(attr(node, "beta", 0.75)), float(attr(node, "bias", 1.0))
    lo, hi = (size - 1) // 2, size // 2  # the window: channels c - lo .. c + hi

    def window(t: str, before: int, after: int) -> str:
        rows = g.add("Reshape", [t, g.ints(0, 1, int(g.shape(x)[1]), -1)])
        ones = g.const(np.ones((1, 1, size, 1)))
        summed = g.add("Conv", [rows, ones], kernel_shape=[size, 1], pads=[before, 0, after, 0])
        return g.like(summed, x)

    squares = window(g.add("Mul", [x, x]), lo, hi)
    d = g.add("Add", [g.add("Mul", [squares, g.const(alpha / size)]), g.const(bias)])
    direct = g.add("Mul", [dy, g.add("Pow", [d, g.const(-beta)])])
    back = window(g.add("Div", [g.add("Mul", [dy, y]), d]), hi, lo)
    cross = g.add("Mul", [g.add("Mul", [back, x]), g.const(2.0 * alpha * beta / size)])
    return [g.add("Sub", [direct, cross])]
