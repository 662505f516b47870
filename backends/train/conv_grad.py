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
transposed convolution's weight gradient with input and output gradient swapped.
"""

from __future__ import annotations

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
    """The gradient of a convolution's weight [Co, Ci/group, kh, kw], from its input `inp`
    [N, Ci, H, W] and its output gradient `gout` [N, Co, Ho, Wo] (each a name and a shape)."""
    co, cg, kh, kw = (int(v) for v in w_shape)
    x, inp_shape = inp
    dy, gout_shape = gout
    h, w = (int(v) for v in inp_shape[2:])
    ho, wo = (int(v) for v in gout_shape[2:])
    im2col = LOWERING == "im2col" or (LOWERING == "auto" and co * cg >= 128)
    if group == 1 and im2col:
        return _im2col(g, x, dy, (co, cg, kh, kw), (ho, wo), s, d, pads)
    if group == 1:
        images = g.add("Transpose", [x], perm=[1, 0, 2, 3])  # [Ci, N, H, W]
        kernel = g.add("Transpose", [dy], perm=[1, 0, 2, 3])  # [Co, N, Ho, Wo]
    else:
        split = g.add("Reshape", [x, g.ints(0, group, cg, h, w)])
        moved = g.add("Transpose", [split], perm=[2, 1, 0, 3, 4])  # [Cg, G, N, H, W]
        images = g.add("Reshape", [moved, g.ints(cg, -1, h, w)])
        split = g.add("Reshape", [dy, g.ints(0, group, co // group, ho, wo)])
        moved = g.add("Transpose", [split], perm=[1, 2, 0, 3, 4])  # [G, Kg, N, Ho, Wo]
        kernel = g.add("Reshape", [moved, g.ints(co, -1, ho, wo)])
    full = g.add(
        "Conv",
        [images, kernel],
        kernel_shape=[ho, wo],
        strides=list(d),
        dilations=list(s),
        pads=list(pads),
        group=group,
    )  # [Cg, Co, kh', kw'], kh' >= kh where the last window left rows unused
    got = [
        (n + pads[a] + pads[a + 2] - ((m - 1) * s[a] + 1)) // d[a] + 1
        for a, (n, m) in enumerate(((h, ho), (w, wo)))
    ]
    if got != [kh, kw]:
        full = g.add("Slice", [full, g.ints(0, 0), g.ints(kh, kw), g.ints(2, 3)])
    return g.add("Transpose", [full], perm=[1, 0, 2, 3])


def _im2col(
    g: Grad,
    x: str,
    dy: str,
    w_shape: tuple[int, int, int, int],
    out: tuple[int, int],
    s: Sequence[int],
    d: Sequence[int],
    pads: Sequence[int],
) -> str:
    """dW[:, :, i, j] = dY' @ X'(i, j)^T for each kernel offset (i, j), where dY' is the output
    gradient as [Co, N*Ho*Wo] and X'(i, j) the strided window of the (transposed, padded) input
    at that offset as [Ci, N*Ho*Wo]: one transpose of each, then a slice and a GEMM per
    offset (measured: faster than one GEMM over the stacked slices, whose stacking copies
    every window again)."""
    co, ci, kh, kw = w_shape
    ho, wo = out
    images = g.add("Transpose", [x], perm=[1, 0, 2, 3])  # [Ci, N, H, W]
    if any(pads):
        images = g.add("Pad", [images, g.ints(0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3])])
    grads = g.add("Reshape", [g.add("Transpose", [dy], perm=[1, 0, 2, 3]), g.ints(co, -1)])
    columns = []
    for i in range(kh):
        for j in range(kw):
            start = [i * d[0], j * d[1]]
            stop = [start[0] + (ho - 1) * s[0] + 1, start[1] + (wo - 1) * s[1] + 1]
            window = g.add(
                "Slice", [images, g.ints(*start), g.ints(*stop), g.ints(2, 3), g.ints(*s)]
            )
            rows = g.add("Reshape", [window, g.ints(ci, -1)])
            columns.append(g.add("Gemm", [grads, rows], transB=1))  # [Co, Ci]
    flat = columns[0] if len(columns) == 1 else g.add("Concat", columns, axis=1)
    shaped = g.add("Reshape", [flat, g.ints(co, kh, kw, ci)])
    return g.add("Transpose", [shaped], perm=[0, 3, 1, 2])


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
    co, cg, kh, kw = (int(v) for v in w_shape)
    if group == 1:
        swapped = g.add("Transpose", [w], perm=[1, 0, 2, 3])  # [Ci, Co, kh, kw]
    else:
        split = g.add("Reshape", [w, g.ints(group, co // group, cg, kh, kw)])
        moved = g.add("Transpose", [split], perm=[0, 2, 1, 3, 4])  # [G, Cg, Kg, kh, kw]
        swapped = g.add("Reshape", [moved, g.ints(group * cg, co // group, kh, kw)])
    kernel = g.add(
        "Slice",
        [swapped, g.ints(kh - 1, kw - 1), g.ints(-kh - 1, -kw - 1), g.ints(2, 3), g.ints(-1, -1)],
    )
    return g.add(
        "Conv",
        [dy, kernel],
        kernel_shape=list(k),
        dilations=list(d),
        pads=flipped,
        group=group,
    )
