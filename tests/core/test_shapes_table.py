"""The shape table: output sizes, explicit pads, minimum inputs, parameters and multiply-adds of
single layers, each case checked against the value worked out by hand and against PyTorch.

A size row is checked twice: against the number in the table (the textbook examples first), and
against PyTorch running the same layer with the same explicit padding. A row whose pads are
asymmetric is given to PyTorch through `F.pad` (or, for a transposed convolution, by cropping the
unpadded output), since PyTorch's own `padding` is symmetric. In ceil mode the pads are what the
emitters write: the written padding plus the end padding the last window needs; PyTorch runs
ceil mode itself with the written (begin) padding. The rules work on any number of spatial axes:
1-D and 3-D rows call them directly (the language writes 2-D layers) against conv1d/conv3d.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import netdsl

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - torch comes with the test extra
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def last_node(layer: str, dims: str) -> netdsl.Node:
    """The node of `layer` in a one-layer net on an input of `dims`."""
    return netdsl.parse(f"input {dims}\n{layer}\n").nodes[-1]


# (layer, input CxHxW, output shape, pads (top, left, bottom, right) or None)
SIZES: list[Any] = [
    # the textbook examples
    ("conv(1, k=3, s=2, p=0)", "1x5x5", (1, 2, 2), (0, 0, 0, 0)),  # N=5,k=3,p=0,s=2 -> 2
    ("conv(1, k=3, s=2, p=1)", "1x5x5", (1, 3, 3), (1, 1, 1, 1)),  # N=5,k=3,p=1,s=2 -> 3
    ("conv(1, k=3, s=2, p=1)", "1x6x6", (1, 3, 3), (1, 1, 1, 1)),  # N=6,k=3,p=1,s=2 -> 3
    ("conv(1, k=3, d=2, p=0)", "1x7x7", (1, 3, 3), (0, 0, 0, 0)),  # N=7,k=3,d=2,p=0 -> 3
    ("conv3x3(1, p=valid)", "1x4x4", (1, 2, 2), (0, 0, 0, 0)),  # 4x4 valid 3x3 -> 2x2
    ("conv3x3(1, p=valid)", "1x7x7", (1, 5, 5), (0, 0, 0, 0)),  # 7x7 valid 3x3 -> 5x5
    # same: M = ceil(N/s), total padding max((M-1)s + k' - N, 0), the odd pixel at the end
    ("conv3x3(8)", "3x32x32", (8, 32, 32), (1, 1, 1, 1)),
    ("conv5x5(8)", "3x9x9", (8, 9, 9), (2, 2, 2, 2)),
    ("conv2x2(8)", "3x7x7", (8, 7, 7), (0, 0, 1, 1)),
    ("conv4x4(8)", "3x7x7", (8, 7, 7), (1, 1, 2, 2)),
    ("conv4x4(8)", "3x8x8", (8, 8, 8), (1, 1, 2, 2)),
    ("conv3x3/2(8)", "3x224x224", (8, 112, 112), (0, 0, 1, 1)),
    ("conv3x3/2(8)", "3x225x225", (8, 113, 113), (1, 1, 1, 1)),
    ("conv7x7/2(8)", "3x224x224", (8, 112, 112), (2, 2, 3, 3)),
    ("conv2x2/2(8)", "3x7x7", (8, 4, 4), (0, 0, 1, 1)),
    ("conv4x4/2(8)", "3x7x7", (8, 4, 4), (1, 1, 2, 2)),
    ("conv5x5/3(8)", "3x10x10", (8, 4, 4), (2, 2, 2, 2)),
    ("conv3x3/4(8)", "3x5x5", (8, 2, 2), (1, 1, 1, 1)),
    ("conv3x3/2(8)", "3x7x10", (8, 4, 5), (1, 0, 1, 1)),
    ("conv1x1/2(8)", "3x7x7", (8, 4, 4), (0, 0, 0, 0)),
    ("conv1x1/3(8)", "3x10x10", (8, 4, 4), (0, 0, 0, 0)),  # no padding needed: max(.., 0)
    ("conv2x2/4(8)", "3x5x5", (8, 2, 2), (0, 0, 1, 1)),
    ("conv3x3(8, d=2)", "3x10x10", (8, 10, 10), (2, 2, 2, 2)),
    ("conv2x2(8, d=3)", "3x9x9", (8, 9, 9), (1, 1, 2, 2)),  # k' = 4
    ("conv1x7(8)", "3x9x9", (8, 9, 9), (0, 3, 0, 3)),
    ("conv1x7(4, p=(0, 3))", "2x9x9", (4, 9, 9), (0, 3, 0, 3)),
    # explicit padding: one integer, (height, width), (top, left, bottom, right)
    ("conv7x7/2(64, p=3)", "3x224x224", (64, 112, 112), (3, 3, 3, 3)),
    ("conv11x11/4(96, p=valid)", "3x227x227", (96, 55, 55), (0, 0, 0, 0)),
    ("conv11x11/4(96, p=2)", "3x224x224", (96, 55, 55), (2, 2, 2, 2)),
    ("conv(4, k=3, p=(1, 2))", "1x8x8", (4, 8, 10), (1, 2, 1, 2)),
    ("conv(4, k=3, p=(0, 1, 2, 3))", "1x8x8", (4, 8, 10), (0, 1, 2, 3)),
    ("conv(4, k=(3, 5), s=(2, 1), p=(1, 2, 0, 2))", "1x9x9", (4, 4, 9), (1, 2, 0, 2)),
    # stride and dilation
    ("conv(4, k=3, s=(2, 1), p=valid)", "1x9x9", (4, 4, 7), (0, 0, 0, 0)),
    ("conv(4, k=3, d=2, p=2)", "1x7x7", (4, 7, 7), (2, 2, 2, 2)),
    ("conv(4, k=3, d=(2, 3), p=valid)", "1x9x9", (4, 5, 3), (0, 0, 0, 0)),
    ("conv(4, k=3, s=2, d=2, p=valid)", "1x9x9", (4, 3, 3), (0, 0, 0, 0)),
    # depthwise and grouped
    ("dwconv3x3/2", "4x9x9", (4, 5, 5), (1, 1, 1, 1)),
    ("dwconv5x5(m=2, p=valid)", "4x9x9", (8, 5, 5), (0, 0, 0, 0)),
    ("conv3x3(8, groups=2, p=valid)", "4x6x6", (8, 4, 4), (0, 0, 0, 0)),
    # transposed: M = s(N-1) + k' - P + output_padding
    ("deconv(4, k=3, s=2, p=1)", "2x5x5", (4, 9, 9), (1, 1, 1, 1)),
    ("deconv(4, k=3, s=2, p=1, output_padding=1)", "2x5x5", (4, 10, 10), (1, 1, 1, 1)),
    ("deconv4x4/2(4, p=1)", "2x7x7", (4, 14, 14), (1, 1, 1, 1)),
    ("deconv(4)", "2x5x5", (4, 10, 10), (0, 0, 0, 0)),  # k=2, s=k by default
    ("deconv(4, k=3, s=1, d=2)", "2x5x5", (4, 9, 9), (0, 0, 0, 0)),
    ("deconv(4, k=3, s=2, d=2, output_padding=1)", "2x5x5", (4, 14, 14), (0, 0, 0, 0)),
    ("deconv3x3/2(4, p=same)", "2x4x4", (4, 8, 8), (0, 0, 1, 1)),
    ("deconv4x4/2(4, p=same)", "2x4x4", (4, 8, 8), (1, 1, 1, 1)),
    ("deconv(4, k=3, s=2, p=(0, 1, 1, 0))", "2x5x5", (4, 10, 10), (0, 1, 1, 0)),
    (
        "deconv(4, k=(3, 5), s=(2, 3), p=(1, 2), output_padding=(1, 2))",
        "2x5x5",
        (4, 10, 15),
        (1, 2, 1, 2),
    ),
    ("deconv64x64/32(21, p=16)", "21x7x7", (21, 224, 224), (16, 16, 16, 16)),  # FCN-32s
    # pooling, floor mode (the default)
    ("maxpool", "8x7x7", (8, 3, 3), (0, 0, 0, 0)),
    ("maxpool", "8x8x8", (8, 4, 4), (0, 0, 0, 0)),
    ("pool", "8x6x6", (8, 3, 3), (0, 0, 0, 0)),
    ("maxpool3x3/2", "8x55x55", (8, 27, 27), (0, 0, 0, 0)),
    ("maxpool3x3/2(p=1)", "8x112x112", (8, 56, 56), (1, 1, 1, 1)),
    ("maxpool2x2/3", "8x8x8", (8, 3, 3), (0, 0, 0, 0)),
    ("maxpool(k=3, s=2, p=(0, 0, 1, 1))", "8x6x6", (8, 3, 3), (0, 0, 1, 1)),
    ("maxpool(p=same)", "8x7x7", (8, 4, 4), (0, 0, 1, 1)),
    ("maxpool3x3/2(p=same)", "8x5x5", (8, 3, 3), (1, 1, 1, 1)),
    ("avgpool2", "6x28x28", (6, 14, 14), (0, 0, 0, 0)),
    ("avgpool3x3/1(p=1)", "6x9x9", (6, 9, 9), (1, 1, 1, 1)),
    ("avgpool(k=(2, 3), s=(2, 1))", "6x6x6", (6, 3, 4), (0, 0, 0, 0)),
    # pooling, ceil mode; a window must start inside the input (or the begin padding); the
    # pads include the end padding the last window needs
    ("maxpool(ceil=true)", "8x7x7", (8, 4, 4), (0, 0, 1, 1)),
    ("maxpool3x3/2(ceil=true)", "8x56x56", (8, 28, 28), (0, 0, 1, 1)),
    ("maxpool3x3/2(ceil=true)", "8x55x55", (8, 27, 27), (0, 0, 0, 0)),
    ("avgpool3x3/2(ceil=true)", "8x10x10", (8, 5, 5), (0, 0, 1, 1)),
    ("maxpool3x3/2(p=1, ceil=true)", "8x6x6", (8, 4, 4), (1, 1, 2, 2)),
    ("maxpool2x2/2(p=1, ceil=true)", "8x5x5", (8, 3, 3), (1, 1, 1, 1)),  # a 4th: in the pad
    ("maxpool(k=3, s=3, p=1, ceil=true)", "8x5x5", (8, 2, 2), (1, 1, 1, 1)),  # a 3rd: in the pad
    ("maxpool1x1/3(ceil=true)", "8x5x5", (8, 2, 2), (0, 0, 0, 0)),  # a 3rd: past the input
    # a window larger than the input: ceil((3 - 5)/3) + 1 = 1, as in PyTorch
    ("maxpool(k=(5, 1), s=(3, 2), ceil=true)", "1x3x6", (1, 1, 3), (0, 0, 2, 0)),
    ("avgpool(k=4, s=2, ceil=true)", "2x3x3", (2, 1, 1), (0, 0, 1, 1)),
    # global pooling
    ("gap", "8x7x5", (8, 1, 1), None),
    ("gmp", "8x3x9", (8, 1, 1), None),
]


@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), SIZES)
def test_output_size(layer: str, dims: str, shape: tuple[int, ...], pads: Any) -> None:
    node = last_node(layer, dims)
    assert node.shape == shape
    if pads is not None:
        assert node.attrs["pads"] == pads


def torch_shape(node: netdsl.Node, dims: str) -> tuple[int, ...]:
    """The output shape PyTorch gives for the layer `node` describes, with the same pads."""
    c, h, w = (int(d) for d in dims.split("x"))
    x = torch.zeros(1, c, h, w)
    a = node.attrs
    if node.op in ("gap", "gmp"):
        pool = F.adaptive_avg_pool2d if node.op == "gap" else F.adaptive_max_pool2d
        return tuple(pool(x, 1).shape[1:])
    top, left, bottom, right = a["pads"]
    if node.op in ("conv", "dwconv"):
        weight = torch.zeros(a["c"], c // a["groups"], *a["k"])
        padded = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(padded, weight, stride=a["s"], dilation=a["d"], groups=a["groups"])
    elif node.op == "deconv":
        weight = torch.zeros(c, a["c"] // a["groups"], *a["k"])
        options = dict(stride=a["s"], output_padding=a["output_padding"], dilation=a["d"])
        if (top, left) == (bottom, right):
            y = F.conv_transpose2d(x, weight, padding=(top, left), groups=a["groups"], **options)
        else:  # pads remove rows and columns from the full output: crop them
            y = F.conv_transpose2d(x, weight, groups=a["groups"], **options)
            y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
    else:
        pool = F.max_pool2d if node.op == "maxpool" else F.avg_pool2d
        if a["ceil"]:  # PyTorch's own ceil mode, with the written (symmetric) padding
            y = pool(x, a["k"], a["s"], padding=(top, left), ceil_mode=True)
        else:
            y = pool(F.pad(x, (left, right, top, bottom)), a["k"], a["s"])
    return tuple(y.shape[1:])


@needs_torch
@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), SIZES)
def test_output_size_agrees_with_torch(
    layer: str, dims: str, shape: tuple[int, ...], pads: Any
) -> None:
    assert torch_shape(last_node(layer, dims), dims) == shape


SAME_STRIDE_1 = [
    ("conv3x3(2)", "1x6x6"),
    ("conv2x2(2)", "1x7x7"),
    ("conv4x4(2)", "1x8x8"),
    ("conv2x2(2, d=3)", "1x9x9"),
    ("conv1x6(2)", "1x5x9"),
]


@needs_torch
@pytest.mark.parametrize(("layer", "dims"), SAME_STRIDE_1)
def test_same_puts_the_odd_pixel_at_the_end_as_torch_does(layer: str, dims: str) -> None:
    """PyTorch's padding='same' (stride 1) pads the extra pixel at the end: SAME_UPPER. With
    random values, the outputs agree only if netdsl's explicit pads sit on the same sides."""
    node = last_node(layer, dims)
    c, h, w = (int(d) for d in dims.split("x"))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, h, w, generator=generator)
    weight = torch.randn(node.attrs["c"], c, *node.attrs["k"], generator=generator)
    top, left, bottom, right = node.attrs["pads"]
    mine = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, dilation=node.attrs["d"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "even kernel lengths ... zero-padded copy"
        theirs = F.conv2d(x, weight, padding="same", dilation=node.attrs["d"])
    assert torch.allclose(mine, theirs)


# (layers, input, params, MACs), worked out by hand; MACs count conv, deconv and fc only
COSTS = [
    ("conv3x3(64)", "3x224x224", 3 * 9 * 64 + 64, 64 * 224 * 224 * 3 * 9),
    ("conv3x3(64, bias=false)", "3x8x8", 3 * 9 * 64, 64 * 8 * 8 * 27),
    ("conv3x3(64) -> bn", "3x8x8", 3 * 9 * 64 + 2 * 64, 64 * 8 * 8 * 27),  # no bias before bn
    ("conv3x3(64, bias=true) -> bn", "3x8x8", 3 * 9 * 64 + 64 + 2 * 64, 64 * 8 * 8 * 27),
    ("conv5x5/2(16, p=valid)", "3x32x32", 3 * 25 * 16 + 16, 16 * 14 * 14 * 75),
    ("conv3x3(64, groups=4)", "32x8x8", 64 * 8 * 9 + 64, 64 * 8 * 8 * 8 * 9),
    ("conv1x1(64, groups=32)", "32x8x8", 64 + 64, 64 * 8 * 8),
    ("dwconv3x3", "32x8x8", 32 * 9 + 32, 32 * 8 * 8 * 9),
    ("dwconv3x3(m=2, bias=false)", "32x8x8", 64 * 9, 64 * 8 * 8 * 9),
    ("dwconv3x3/2 -> bn", "32x8x8", 32 * 9 + 2 * 32, 32 * 4 * 4 * 9),
    ("sepconv3x3(64)", "32x8x8", 32 * 9 + 32 * 64 + 64, 32 * 64 * 9 + 64 * 64 * 32),
    ("sepconv3x3(64) -> bn", "32x8x8", 32 * 9 + 32 * 64 + 2 * 64, 32 * 64 * 9 + 64 * 64 * 32),
    ("deconv(16, k=4, s=2, p=1)", "8x5x5", 8 * 16 * 16 + 16, 8 * 5 * 5 * 16 * 16),
    ("deconv(16, k=3, s=2, groups=2)", "8x5x5", 8 * 8 * 9 + 16, 8 * 5 * 5 * 8 * 9),
    ("fc(10)", "16x5x5", 400 * 10 + 10, 4000),
    ("fc(10, bias=false)", "100", 1000, 1000),
    ("flatten -> fc(1000)", "512x7x7", 25088 * 1000 + 1000, 25088 * 1000),
    ("bn", "16x5x5", 2 * 16, 0),
    ("bn", "100", 2 * 100, 0),
    ("maxpool -> relu -> gap -> softmax", "16x4x4", 0, 0),
    ("lrn(5) -> dropout(0.5) -> flatten -> sigmoid -> tanh", "16x4x4", 0, 0),
]


@pytest.mark.parametrize(("layers", "dims", "params", "macs"), COSTS)
def test_params_and_macs(layers: str, dims: str, params: int, macs: int) -> None:
    net = netdsl.parse(f"input {dims}\n{layers}\n")
    assert (net.params, net.macs) == (params, macs)


# the same layers built with torch.nn: trainable parameters must agree
TORCH_MODULES: list[tuple[str, str, Callable[[], Any]]] = [
    ("conv3x3(64)", "3x8x8", lambda: nn.Conv2d(3, 64, 3)),
    (
        "conv3x3(64) -> bn",
        "3x8x8",
        lambda: nn.Sequential(nn.Conv2d(3, 64, 3, bias=False), nn.BatchNorm2d(64)),
    ),
    ("conv3x3(64, groups=4)", "32x8x8", lambda: nn.Conv2d(32, 64, 3, groups=4)),
    ("dwconv3x3", "32x8x8", lambda: nn.Conv2d(32, 32, 3, groups=32)),
    ("dwconv3x3(m=2, bias=false)", "32x8x8", lambda: nn.Conv2d(32, 64, 3, groups=32, bias=False)),
    (
        "sepconv3x3(64)",
        "32x8x8",
        lambda: nn.Sequential(nn.Conv2d(32, 32, 3, groups=32, bias=False), nn.Conv2d(32, 64, 1)),
    ),
    ("deconv(16, k=4, s=2, p=1)", "8x5x5", lambda: nn.ConvTranspose2d(8, 16, 4, 2, 1)),
    ("deconv(16, k=3, s=2, groups=2)", "8x5x5", lambda: nn.ConvTranspose2d(8, 16, 3, 2, groups=2)),
    ("fc(10)", "16x5x5", lambda: nn.Linear(400, 10)),
    ("bn", "16x5x5", lambda: nn.BatchNorm2d(16)),
]


@needs_torch
@pytest.mark.parametrize(("layers", "dims", "module"), TORCH_MODULES)
def test_params_agree_with_torch(layers: str, dims: str, module: Callable[[], Any]) -> None:
    net = netdsl.parse(f"input {dims}\n{layers}\n")
    built = module()
    assert net.params == sum(p.numel() for p in built.parameters())
    assert net.buffers == sum(b.numel() for name, b in built.named_buffers() if "running" in name)


def test_flops_are_twice_the_macs_in_the_summary() -> None:
    from netdsl.summary import to_json

    data = to_json(netdsl.parse("input 3x8x8\nconv3x3(4) -> fc(2)\n"))
    assert data["total"]["flops"] == 2 * data["total"]["macs"] == 2 * (4 * 64 * 27 + 256 * 2)


def test_batch_norm_statistics_are_buffers_not_params() -> None:
    net = netdsl.parse("input 16x4x4\nbn\n")
    assert (net.params, net.buffers) == (32, 32)


# ---- the smallest input a layer takes: the message's number, by hand and by PyTorch ----------

# (layer, channels, the smallest square input the error names)
MINIMUM = [
    ("conv5x5(1, p=valid)", 1, 5),  # N - 5 >= 0
    ("conv3x3(1, d=3, p=1)", 1, 5),  # N + 2 - 7 >= 0
    ("maxpool3x3/2", 1, 3),
    ("maxpool(k=5, s=3, ceil=true)", 1, 3),  # ceil((N - 5)/3) + 1 >= 1 iff N > 2
    ("deconv(1, k=1, s=1, p=1)", 1, 3),  # s(N - 1) + k' - P >= 1 iff N >= 3
    ("deconv(1, k=2, s=2, p=2)", 1, 3),  # 2(N - 1) + 2 - 4 >= 1 iff N >= 3 (N = 2 gives 0)
]


def output_or_none(layer: str, c: int, n: int) -> tuple[int, ...] | None:
    try:
        return last_node(layer, f"{c}x{n}x{n}").shape
    except netdsl.NetError:
        return None


@pytest.mark.parametrize(("layer", "c", "least"), MINIMUM)
def test_the_minimum_input_named_in_the_message(layer: str, c: int, least: int) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        last_node(layer, f"{c}x{least - 1}x{least - 1}")
    message = caught.value.diagnostics[0].message
    assert f"needs an input of at least {least}x{least}, got {least - 1}x{least - 1}" in message
    assert output_or_none(layer, c, least) is not None


@needs_torch
@pytest.mark.parametrize(("layer", "c", "least"), MINIMUM)
def test_the_minimum_input_agrees_with_torch(layer: str, c: int, least: int) -> None:
    node = last_node(layer, f"{c}x{least}x{least}")

    def works(n: int) -> bool:
        try:
            shape = torch_shape(node, f"{c}x{n}x{n}")
        except RuntimeError:  # PyTorch: "output size is too small"
            return False
        return min(shape) >= 1

    assert works(least) and not works(least - 1)


# ---- any number of spatial axes: the rules against conv1d / conv3d / pool1d / pool3d ---------

# (rule, attributes, input shape) for 1-D and 3-D layers (no syntax writes them yet)
RANKS: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("conv", {"c": 4, "k": (3,), "s": (2,), "p": "same", "d": (1,), "groups": 1}, (2, 9)),
    ("conv", {"c": 4, "k": (5,), "s": (1,), "p": (1, 3), "d": (2,), "groups": 2}, (2, 11)),
    (
        "conv",
        {"c": 4, "k": (3, 1, 2), "s": (2, 1, 2), "p": "same", "d": (1, 1, 1), "groups": 1},
        (2, 5, 4, 7),
    ),
    (
        "conv",
        {"c": 2, "k": (3, 3, 3), "s": (1, 2, 1), "p": "valid", "d": (1, 1, 2), "groups": 1},
        (2, 6, 7, 8),
    ),
    (
        "deconv",
        {"c": 3, "k": (4,), "s": (2,), "p": (1, 1), "d": (1,), "groups": 1, "output_padding": (1,)},
        (2, 5),
    ),
    (
        "deconv",
        {
            "c": 3,
            "k": (2, 3, 3),
            "s": (2, 1, 2),
            "p": "valid",
            "d": (1, 1, 1),
            "groups": 1,
            "output_padding": (0, 0, 1),
        },
        (2, 3, 4, 5),
    ),
    ("maxpool", {"k": (3,), "s": (2,), "p": "valid", "ceil": True}, (2, 8)),
    (
        "avgpool",
        {"k": (2, 2, 3), "s": (2, 2, 2), "p": (0, 0, 1, 0, 0, 1), "ceil": False},
        (2, 4, 5, 7),
    ),
    ("maxpool", {"k": (3, 3, 3), "s": (2, 2, 2), "p": "valid", "ceil": True}, (2, 6, 7, 8)),
]


@needs_torch
@pytest.mark.parametrize(("op", "attrs", "shape"), RANKS)
def test_rules_at_any_rank_agree_with_torch(
    op: str, attrs: dict[str, Any], shape: tuple[int, ...]
) -> None:
    from netdsl.rules import RULES, Ctx

    out = RULES[op](Ctx(op, {**attrs, "bias": False} if "c" in attrs else attrs, (shape,)))
    rank, a = len(shape) - 1, out.attrs
    assert len(a["pads"]) == 2 * rank
    x = torch.zeros(1, *shape)
    begins, ends = a["pads"][:rank], a["pads"][rank:]
    flat = [p for axis in reversed(range(rank)) for p in (begins[axis], ends[axis])]
    if op == "conv":
        conv = {1: F.conv1d, 3: F.conv3d}[rank]
        w = torch.zeros(a["c"], shape[0] // a["groups"], *a["k"])
        y = conv(F.pad(x, flat), w, stride=a["s"], dilation=a["d"], groups=a["groups"])
    elif op == "deconv":
        deconv = {1: F.conv_transpose1d, 3: F.conv_transpose3d}[rank]
        w = torch.zeros(shape[0], a["c"], *a["k"])
        y = deconv(x, w, stride=a["s"], output_padding=a["output_padding"], dilation=a["d"])
        y = y[
            (
                slice(None),
                slice(None),
                *(
                    slice(b, y.shape[2 + i] - e)
                    for i, (b, e) in enumerate(zip(begins, ends, strict=True))
                ),
            )
        ]
    else:  # the pads already hold ceil mode's end padding: floor mode on them is the same
        pool = {
            ("maxpool", 1): F.max_pool1d,
            ("maxpool", 3): F.max_pool3d,
            ("avgpool", 1): F.avg_pool1d,
            ("avgpool", 3): F.avg_pool3d,
        }[(op, rank)]
        y = pool(F.pad(x, flat, value=-1.0), a["k"], a["s"])
        if a["ceil"]:
            ceil = pool(x, a["k"], a["s"], ceil_mode=True)
            assert ceil.shape == y.shape
    assert tuple(y.shape[1:]) == out.shape


# ---- receptive fields of simple stacks, by hand: r_out = r_in + (k' - 1) * jump --------------

RFS = [
    ("conv3x3(4)", 3),
    ("conv3x3(4) -> conv3x3(4)", 5),
    ("conv3x3(4) -> maxpool -> conv3x3(4)", 8),
    ("conv3x3(4, d=2)", 5),
    ("conv7x7/2(4) -> maxpool3x3/2", 11),
    ("{conv1x1(4) | conv5x5(4)}", 5),  # the union of the two paths: the larger
    ("conv5x5/4(4, p=valid) -> deconv8x8/4(4)", 9),  # 5 + floor(7/4) * 4, not 5 + 7
    # deconv outputs o-1..o+1 are fed by inputs ceil((o - 4)/2)..floor((o + 1)/2): 3 of them
    # (the sliding formula, 1 + 3/2 + 2/2, would say 4)
    ("deconv4x4/2(4) -> conv3x3(4)", 3),
]


@pytest.mark.parametrize(("layers", "rf"), RFS)
def test_receptive_field(layers: str, rf: int) -> None:
    net = netdsl.parse(f"input 4x64x64\n{layers}\n")
    assert net.nodes[-1].rf_size == (rf, rf)


def test_receptive_field_through_global_pooling_covers_the_input() -> None:
    net = netdsl.parse("input 4x9x9\nconv3x3(4) -> gap\n")
    assert net.nodes[-1].rf_size == (3 + 8, 3 + 8)


CEIL_ROWS = [row for row in SIZES if "ceil=true" in row[0]]


@needs_torch
@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), CEIL_ROWS)
def test_ceil_mode_as_emitted_computes_what_torch_does(
    layer: str, dims: str, shape: tuple[int, ...], pads: Any
) -> None:
    """The emitted pool (floor mode over the rule's pads, which hold ceil mode's end padding)
    gives PyTorch's ceil-mode values, padding counted in neither average."""
    ort = pytest.importorskip("onnxruntime")
    from netdsl.backends.onnx.emit import to_onnx

    net = netdsl.parse(f"input {dims}\n{layer}\n")
    x = torch.randn(
        1, *(int(d) for d in dims.split("x")), generator=torch.Generator().manual_seed(0)
    )
    session = ort.InferenceSession(to_onnx(net, mode="inference").SerializeToString())
    mine = session.run(None, {"input": x.numpy()})[0]
    a = net.nodes[-1].attrs
    begins = a["pads"][:2]
    if net.nodes[-1].op == "maxpool":
        theirs = F.max_pool2d(x, a["k"], a["s"], padding=begins, ceil_mode=True)
    else:
        theirs = F.avg_pool2d(
            x, a["k"], a["s"], padding=begins, ceil_mode=True, count_include_pad=False
        )
    assert mine.shape == tuple(theirs.shape)
    assert torch.allclose(torch.from_numpy(mine), theirs, atol=1e-6)


# Two paddings are (height, width) on an image, and (begin, end) on a signal: a causal
# convolution (WaveNet's) pads only the past.
TWO_PADS = [
    ("conv(4, k=2, d=2, p=(2, 0))", "2x16", (4, 16), (2, 0)),
    ("maxpool(k=3, s=1, p=(2, 0))", "2x8", (2, 8), (2, 0)),
    ("conv(4, k=3, p=(0, 2))", "2x8", (4, 8), (0, 2)),
    ("conv(4, k=2, d=2, p=(2, 0))", "2x16x16", (4, 18, 14), (2, 0, 2, 0)),
]


@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), TWO_PADS)
def test_two_paddings_by_rank(layer: str, dims: str, shape: tuple[int, ...], pads: Any) -> None:
    node = last_node(layer, dims)
    assert (node.shape, node.attrs["pads"]) == (shape, pads)


@needs_torch
def test_causal_convolution_as_emitted_equals_torch() -> None:
    """The emitted model of `p=(d, 0)` on a signal is PyTorch's conv1d after a left pad."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    net = netdsl.parse("input 2x16\nconv(4, k=2, d=2, p=(2, 0))\n")
    model = net.to_onnx(mode="inference", seed=1)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(0).standard_normal((1, 2, 16)).astype(np.float32)
    (y,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})
    weight, bias = torch.tensor(w["conv1.weight"]), torch.tensor(w["conv1.bias"])
    want = F.conv1d(F.pad(torch.tensor(x), (2, 0)), weight, bias, dilation=2)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-6)
