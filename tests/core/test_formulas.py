"""Output sizes, explicit pads, parameters and multiply-adds of single layers, as tables.

Each size row is checked twice: against the number worked out by hand (the textbook examples
first), and against PyTorch running the same layer with the same explicit padding. A row whose
pads are asymmetric is given to PyTorch through `F.pad` (or, for a transposed convolution, by
cropping the unpadded output), since PyTorch's own `padding` is symmetric.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

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


CEIL_BUG = pytest.mark.xfail(
    strict=True,
    raises=netdsl.NetError,
    reason="bug: ceil=true refuses a window larger than the padded input, though the "
    "documented formula ceil((N + P - k')/s) + 1 (and PyTorch, and ONNX) give 1; the error "
    "note even prints ceil((3 + 0 - 5)/3) + 1 = 0",
)

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
    # pooling, ceil mode; a window must start inside the input (or the left padding)
    ("maxpool(ceil=true)", "8x7x7", (8, 4, 4), (0, 0, 0, 0)),
    ("maxpool3x3/2(ceil=true)", "8x56x56", (8, 28, 28), (0, 0, 0, 0)),
    ("maxpool3x3/2(ceil=true)", "8x55x55", (8, 27, 27), (0, 0, 0, 0)),
    ("avgpool3x3/2(ceil=true)", "8x10x10", (8, 5, 5), (0, 0, 0, 0)),
    ("maxpool3x3/2(p=1, ceil=true)", "8x6x6", (8, 4, 4), (1, 1, 1, 1)),
    ("maxpool2x2/2(p=1, ceil=true)", "8x5x5", (8, 3, 3), (1, 1, 1, 1)),  # a 4th: in the pad
    ("maxpool(k=3, s=3, p=1, ceil=true)", "8x5x5", (8, 2, 2), (1, 1, 1, 1)),  # a 3rd: in the pad
    ("maxpool1x1/3(ceil=true)", "8x5x5", (8, 2, 2), (0, 0, 0, 0)),  # a 3rd: past the input
    pytest.param(
        "maxpool(k=(5, 1), s=(3, 2), ceil=true)",
        "1x3x6",
        (1, 1, 3),
        (0, 0, 0, 0),
        marks=CEIL_BUG,
        id="ceil-window-larger-than-input",
    ),
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
        if a["ceil"]:  # ceil mode's last-window rule needs PyTorch's own (symmetric) padding
            assert (top, left) == (bottom, right), "no asymmetric ceil-mode row in the table"
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
