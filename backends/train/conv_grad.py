"""The two halves of a convolution's backward pass that need index arithmetic, for `grad.py`.

A convolution's input gradient is a ConvTranspose of the output gradient with the same kernel;
`output_padding` gives the rows and columns that the last strided window never reached, so the
result has the input's size again. Its weight gradient (`conv_weight_grad`) is a convolution
whose roles are swapped: images become channels, so that the sum over the batch is the sum a
convolution does over input channels, the forward stride becomes a dilation and the forward
dilation a stride:

    dW[k, c, i, j] = sum over n, y, x of dY[n, k, y, x] * Xpad[n, c, y*s + i*d, x*s + j*d]

With groups, each group's images and channels are regrouped so that one grouped convolution
does every group at once (depthwise convolutions included). The same function gives a
transposed convolution's weight gradient with input and output gradient swapped. Every
function takes its geometry as per-axis tuples (ONNX's pads: all begins, then all ends), so
signals (N x C x L) and volumes (N x C x D x H x W) go through the same nodes as images.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from netdsl.backends.train.reverse import Grad, Shape

# How a convolution's weight gradient is written (groups > 1 always use "conv"): "conv", one
# convolution over transposed tensors, "im2col", a slice and a GEMM per kernel offset, or
# "auto": im2col from 128 (output x input) channel pairs on. Measured on one thread: LeNet-5's
# two small convolutions (batch 128) 15.8 ms a step with conv against 17.7 with im2col; 3x3
# layers at batch 32, conv against im2col: 64 channels on 32x32 maps 165 against 87 ms, 128 on
# 16x16 120 against 60, 256 on 8x8 93 against 53, 512 on 4x4 89 against 59.
LOWERING = "auto"


def output_padding(
    size: Sequence[int | str],
    out: Sequence[int | str],
    k: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
    pads: Sequence[int],
) -> list[int]:
    """What a ConvTranspose of the output gradient must add at the end to give `size` back
    (always less than the stride)."""
    rank = len(k)
    return [
        int(size[a]) - ((int(out[a]) - 1) * s[a] + (k[a] - 1) * d[a] + 1 - pads[a] - pads[a + rank])
        for a in range(rank)
    ]


def conv_weight_grad(
    g: Grad,
    inp: tuple[str, Shape],
    gout: tuple[str, Shape],
    w_shape: Shape,
    s: Sequence[int],
    d: Sequence[int],
    pads: Sequence[int],
    group: int,
) -> str:
    """The gradient of a convolution's weight [Co, Ci/group, *k], from its input `inp`
    [N, Ci, *size] and its output gradient `gout` [N, Co, *out] (each a name and a shape), at
    any number of spatial axes (signals, images, volumes)."""
    co, cg, *k = (int(v) for v in w_shape)
    x, inp_shape = inp
    dy, gout_shape = gout
    size = [int(v) for v in inp_shape[2:]]
    out = [int(v) for v in gout_shape[2:]]
    rank = len(k)
    space = list(range(2, 2 + rank))  # the spatial axes of [A, B, *space]
    im2col = LOWERING == "im2col" or (LOWERING == "auto" and co * cg >= 128)
    if group == 1 and im2col:
        return _im2col(g, x, dy, (co, cg, *k), out, s, d, pads)
    if group == 1:
        images = g.add("Transpose", [x], perm=[1, 0, *space])  # [Ci, N, *size]
        kernel = g.add("Transpose", [dy], perm=[1, 0, *space])  # [Co, N, *out]
    else:
        inner = list(range(3, 3 + rank))
        split = g.add("Reshape", [x, g.ints(0, group, cg, *size)])
        moved = g.add("Transpose", [split], perm=[2, 1, 0, *inner])  # [Cg, G, N, *size]
        images = g.add("Reshape", [moved, g.ints(cg, -1, *size)])
        split = g.add("Reshape", [dy, g.ints(0, group, co // group, *out)])
        moved = g.add("Transpose", [split], perm=[1, 2, 0, *inner])  # [G, Kg, N, *out]
        kernel = g.add("Reshape", [moved, g.ints(co, -1, *out)])
    full = g.add(
        "Conv",
        [images, kernel],
        kernel_shape=out,
        strides=list(d),
        dilations=list(s),
        pads=list(pads),
        group=group,
    )  # [Cg, Co, *k'], k' >= k where the last window left rows unused
    got = [
        (n + pads[a] + pads[a + rank] - ((m - 1) * s[a] + 1)) // d[a] + 1
        for a, (n, m) in enumerate(zip(size, out, strict=True))
    ]
    if got != k:
        full = g.add("Slice", [full, g.ints(*[0] * rank), g.ints(*k), g.ints(*space)])
    return g.add("Transpose", [full], perm=[1, 0, *space])


def _im2col(
    g: Grad,
    x: str,
    dy: str,
    w_shape: tuple[int, ...],
    out: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
    pads: Sequence[int],
) -> str:
    """dW[:, :, *o] = dY' @ X'(o)^T for each kernel offset o, where dY' is the output gradient
    as [Co, N*prod(out)] and X'(o) the strided window of the (transposed, padded) input at that
    offset as [Ci, N*prod(out)]: one transpose of each, then a slice and a GEMM per offset
    (measured: faster than one GEMM over the stacked slices, whose stacking copies every
    window again)."""
    co, ci, *k = w_shape
    rank = len(k)
    space = list(range(2, 2 + rank))
    images = g.add("Transpose", [x], perm=[1, 0, *space])  # [Ci, N, *size]
    if any(pads):
        images = g.add("Pad", [images, g.ints(0, 0, *pads[:rank], 0, 0, *pads[rank:])])
    grads = g.add("Reshape", [g.add("Transpose", [dy], perm=[1, 0, *space]), g.ints(co, -1)])
    columns = []
    for offset in itertools.product(*(range(n) for n in k)):
        start = [o * d[a] for a, o in enumerate(offset)]
        stop = [start[a] + (out[a] - 1) * s[a] + 1 for a in range(rank)]
        window = g.add("Slice", [images, g.ints(*start), g.ints(*stop), g.ints(*space), g.ints(*s)])
        rows = g.add("Reshape", [window, g.ints(ci, -1)])
        columns.append(g.add("Gemm", [grads, rows], transB=1))  # [Co, Ci]
    flat = columns[0] if len(columns) == 1 else g.add("Concat", columns, axis=1)
    shaped = g.add("Reshape", [flat, g.ints(co, *k, ci)])
    return g.add("Transpose", [shaped], perm=[0, rank + 1, *range(1, rank + 1)])


def conv_input_grad(
    g: Grad,
    dy: str,
    w: str,
    w_shape: Shape,
    sizes: tuple[Sequence[int | str], Sequence[int | str]],
    k: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
    pads: Sequence[int],
    group: int,
) -> str:
    """A convolution's input gradient. Stride 1 and "same" padding: a convolution of the output
    gradient with the kernel flipped in space and its in/out channels swapped (onnxruntime's CPU
    Conv beats its ConvTranspose there: ResNet-18's step 5.0 -> 3.7 s); otherwise a
    ConvTranspose with the same kernel."""
    rank = len(k)
    flipped = [(k[a] - 1) * d[a] - pads[a] for a in range(rank)]
    flipped += [(k[a] - 1) * d[a] - pads[a + rank] for a in range(rank)]
    # the flipped form only where it pads the output gradient no more than the forward pass
    # padded its input ("same" convolutions): a valid convolution's would be mostly zeros
    if any(v != 1 for v in s) or any(p < 0 for p in flipped) or sum(flipped) > sum(pads):
        return g.add(
            "ConvTranspose",
            [dy, w],
            kernel_shape=list(k),
            strides=list(s),
            dilations=list(d),
            pads=list(pads),
            group=group,
            output_padding=output_padding(*sizes, k, s, d, pads),
        )
    co, cg, *kernel_size = (int(v) for v in w_shape)
    space = list(range(2, 2 + rank))
    if group == 1:
        swapped = g.add("Transpose", [w], perm=[1, 0, *space])  # [Ci, Co, *k]
    else:
        split = g.add("Reshape", [w, g.ints(group, co // group, cg, *kernel_size)])
        moved = g.add("Transpose", [split], perm=[0, 2, 1, *range(3, 3 + rank)])  # [G, Cg, Kg, *k]
        swapped = g.add("Reshape", [moved, g.ints(group * cg, co // group, *kernel_size)])
    kernel = g.add(
        "Slice",
        [
            swapped,
            g.ints(*(n - 1 for n in kernel_size)),
            g.ints(*(-n - 1 for n in kernel_size)),
            g.ints(*space),
            g.ints(*[-1] * rank),
        ],
    )
    return g.add(
        "Conv",
        [dy, kernel],
        kernel_shape=list(k),
        dilations=list(d),
        pads=flipped,
        group=group,
    )
