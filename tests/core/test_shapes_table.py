"""Output sizes, pads, parameters and multiply-adds of single layers, as tables of cases.

Each size case is checked twice: against the number written in the table (textbook examples,
worked by hand) and against PyTorch running the same layer with the same explicit padding.
"""

from __future__ import annotations

import math

import pytest

import netdsl

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is a test dependency
    torch = None  # type: ignore[assignment]


def one_layer(layer: str, dims: str) -> netdsl.Node:
    net = netdsl.parse(f"input {dims}\n{layer}")
    return net.nodes[-1]


# (layer, input C x H x W, expected output, expected pads (top, left, bottom, right) or None)
SIZES = [
    # the textbook examples
    ("conv(1, k=3, s=2, p=0)", "1x5x5", (1, 2, 2), (0, 0, 0, 0)),
    ("conv(1, k=3, s=2, p=1)", "1x5x5", (1, 3, 3), (1, 1, 1, 1)),
    ("conv(1, k=3, s=2, p=1)", "1x6x6", (1, 3, 3), (1, 1, 1, 1)),
    ("conv(1, k=3, d=2, p=0)", "1x7x7", (1, 3, 3), (0, 0, 0, 0)),
    ("conv3x3(1, p=valid)", "1x4x4", (1, 2, 2), (0, 0, 0, 0)),
    ("conv3x3(1, p=valid)", "1x7x7", (1, 5, 5), (0, 0, 0, 0)),
    # same: ceil(N/s), the odd pixel of padding at the end (SAME_UPPER)
    ("conv3x3(8)", "3x32x32", (8, 32, 32), (1, 1, 1, 1)),
    ("conv2x2(8)", "3x7x7", (8, 7, 7), (0, 0, 1, 1)),
    ("conv4x4(8)", "3x7x7", (8, 7, 7), (1, 1, 2, 2)),
    ("conv3x3/2(8)", "3x224x224", (8, 112, 112), (0, 0, 1, 1)),
    ("conv3x3/2(8)", "3x225x225", (8, 113, 113), (1, 1, 1, 1)),
    ("conv7x7/2(8)", "3x224x224", (8, 112, 112), (2, 2, 3, 3)),
    ("conv1x1/2(8)", "3x7x7", (8, 4, 4), (0, 0, 0, 0)),
    ("conv3x3(8, d=2)", "3x10x10", (8, 10, 10), (2, 2, 2, 2)),
    # explicit, per-axis and per-side padding; rectangular kernels
    ("conv7x7/2(64, p=3)", "3x224x224", (64, 112, 112), (3, 3, 3, 3)),
    ("conv(4, k=3, p=(1, 2))", "1x8x8", (4, 8, 10), (1, 2, 1, 2)),
    ("conv(4, k=3, p=(0, 1, 2, 3))", "1x8x8", (4, 8, 10), (0, 1, 2, 3)),
    ("conv1x7(4, p=(0, 3))", "2x9x9", (4, 9, 9), (0, 3, 0, 3)),
    ("conv11x11/4(96, p=valid)", "3x227x227", (96, 55, 55), (0, 0, 0, 0)),
    # pooling: floor and ceil mode
    ("maxpool", "8x7x7", (8, 3, 3), (0, 0, 0, 0)),
    ("maxpool(ceil=true)", "8x7x7", (8, 4, 4), (0, 0, 0, 0)),
    ("maxpool3x3/2", "8x55x55", (8, 27, 27), (0, 0, 0, 0)),
    ("maxpool3x3/2(ceil=true)", "8x56x56", (8, 28, 28), (0, 0, 0, 0)),
    ("maxpool3x3/2(p=1, ceil=true)", "8x6x6", (8, 4, 4), (1, 1, 1, 1)),
    ("maxpool2x2/2(p=1, ceil=true)", "8x5x5", (8, 3, 3), (1, 1, 1, 1)),  # a 4th would start in pad
    ("maxpool3x3/2(p=1)", "8x112x112", (8, 56, 56), (1, 1, 1, 1)),
    ("avgpool2", "6x28x28", (6, 14, 14), (0, 0, 0, 0)),
    ("avgpool3x3/1(p=1)", "6x9x9", (6, 9, 9), (1, 1, 1, 1)),
    # transposed convolution: s(N-1) + k' - P + output_padding
    ("deconv(4, k=3, s=2, p=1)", "2x5x5", (4, 9, 9), (1, 1, 1, 1)),
    ("deconv(4, k=3, s=2, p=1, output_padding=1)", "2x5x5", (4, 10, 10), (1, 1, 1, 1)),
    ("deconv4x4/2(4, p=1)", "2x7x7", (4, 14, 14), (1, 1, 1, 1)),
    ("deconv64x64/32(21, p=16)", "21x7x7", (21, 224, 224), (16, 16, 16, 16)),
    ("deconv(4, k=3, s=1, d=2)", "2x5x5", (4, 9, 9), (0, 0, 0, 0)),
]


@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), SIZES)
def test_output_size(layer: str, dims: str, shape: tuple[int, ...], pads: tuple[int, ...]) -> None:
    node = one_layer(layer, dims)
    assert node.shape == shape
    assert node.attrs["pads"] == pads


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize(("layer", "dims", "shape", "pads"), SIZES)
def test_output_size_agrees_with_torch(
    layer: str, dims: str, shape: tuple[int, ...], pads: tuple[int, ...]
) -> None:
    node = one_layer(layer, dims)
    c, h, w = (int(d) for d in dims.split("x"))
    x = torch.zeros(1, c, h, w)
    top, left, bottom, right = node.attrs["pads"]
    a = node.attrs
    if node.op == "deconv":
        weight = torch.zeros(c, a["c"] // a["groups"], *a["k"])
        # torch pads a transposed conv symmetrically; asymmetric pads never occur in the table
        assert (top, left) == (bottom, right)
        y = F.conv_transpose2d(
            x,
            weight,
            stride=a["s"],
            padding=(top, left),
            output_padding=a["output_padding"],
            dilation=a["d"],
        )
    elif node.op == "conv":
        y = F.conv2d(
            F.pad(x, (left, right, top, bottom)),
            torch.zeros(a["c"], c, *a["k"]),
            stride=a["s"],
            dilation=a["d"],
        )
    elif a["ceil"]:  # torch's ceil mode with its own symmetric padding
        assert (top, left) == (bottom, right)
        pool = F.max_pool2d if node.op == "maxpool" else F.avg_pool2d
        y = pool(x, a["k"], a["s"], padding=(top, left), ceil_mode=True)
    else:
        pool = F.max_pool2d if node.op == "maxpool" else F.avg_pool2d
        y = pool(F.pad(x, (left, right, top, bottom)), a["k"], a["s"])
    assert tuple(y.shape[1:]) == shape


# (layer, input, params, MACs), worked out by hand
COSTS = [
    ("conv3x3(64)", "3x224x224", 3 * 9 * 64 + 64, 64 * 224 * 224 * 3 * 9),
    ("conv3x3(64) -> bn", "3x8x8", 3 * 9 * 64 + 2 * 64, 64 * 8 * 8 * 27),  # bias off before bn
    ("conv3x3(64, bias=true) -> bn", "3x8x8", 3 * 9 * 64 + 64 + 2 * 64, 64 * 8 * 8 * 27),
    ("conv3x3(64, groups=4)", "32x8x8", 64 * 8 * 9 + 64, 64 * 8 * 8 * 8 * 9),
    ("dwconv3x3", "32x8x8", 32 * 9 + 32, 32 * 8 * 8 * 9),
    ("dwconv3x3(m=2, bias=false)", "32x8x8", 64 * 9, 64 * 8 * 8 * 9),
    ("sepconv3x3(64)", "32x8x8", 32 * 9 + 32 * 64 + 64, 32 * 64 * 9 + 64 * 64 * 32),
    ("deconv(16, k=4, s=2, p=1)", "8x5x5", 8 * 16 * 16 + 16, 8 * 5 * 5 * 16 * 16),
    ("fc(10)", "16x5x5", 400 * 10 + 10, 4000),
    ("fc(10, bias=false)", "100", 1000, 1000),
    ("bn", "16x5x5", 32, 0),
    ("maxpool -> relu -> gap -> softmax", "16x4x4", 0, 0),
    ("lrn(5) -> dropout(0.5) -> flatten", "16x4x4", 0, 0),
]


@pytest.mark.parametrize(("layers", "dims", "params", "macs"), COSTS)
def test_params_and_macs(layers: str, dims: str, params: int, macs: int) -> None:
    net = netdsl.parse(f"input {dims}\n{layers}")
    assert (net.params, net.macs) == (params, macs)


def test_batch_norm_statistics_are_buffers_not_params() -> None:
    net = netdsl.parse("input 16x4x4\nbn")
    assert (net.params, net.buffers) == (32, 32)


# receptive field sizes of simple stacks, by r_out = r_in + (k' - 1) * jump
RFS = [
    ("conv3x3(4)", 3),
    ("conv3x3(4) -> conv3x3(4)", 5),
    ("conv3x3(4) -> maxpool -> conv3x3(4)", 8),
    ("conv3x3(4, d=2)", 5),
    ("conv7x7/2(4) -> maxpool3x3/2", 11),
    ("{conv1x1(4) | conv5x5(4)}", 5),  # the largest over the two paths
]


@pytest.mark.parametrize(("layers", "rf"), RFS)
def test_receptive_field(layers: str, rf: int) -> None:
    net = netdsl.parse(f"input 4x64x64\n{layers}")
    assert net.nodes[-1].rf_size == (rf, rf)


def test_receptive_field_through_global_pooling_covers_the_input() -> None:
    net = netdsl.parse("input 4x9x9\nconv3x3(4) -> gap")
    assert net.nodes[-1].rf_size == (3 + 8, 3 + 8)
    assert math.prod(net.nodes[-1].shape) == 4
