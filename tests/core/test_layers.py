"""The layers of rules_shape.py at the shape level: LeNet-5's C3 connection table written with
channel slices has the paper's 1,516 parameters, DeepFace's locally connected L4 is counted as
the paper counts it, and each layer's mistakes are one located error with the numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

import netdsl

# LeCun et al. 1998, Table I: C3 map j sees the S2 maps of its column (a set that wraps or
# skips is a concatenation of slices); 25 weights per map seen plus a bias per C3 map.
C3 = """
def c3map(a, b) = channels(a, b) -> conv5x5(1, p=valid)
def c3wrap(a, b, c, d) = {channels(a, b) | channels(c, d)} -> conv5x5(1, p=valid)
net c3:
    input 6x14x14
    {
          c3map(0, 3) | c3map(1, 4) | c3map(2, 5) | c3map(3, 6)
        | c3wrap(4, 6, 0, 1) | c3wrap(5, 6, 0, 2)
        | c3map(0, 4) | c3map(1, 5) | c3map(2, 6)
        | c3wrap(3, 6, 0, 1) | c3wrap(4, 6, 0, 2) | c3wrap(5, 6, 0, 3)
        | c3wrap(0, 2, 3, 5) | c3wrap(1, 3, 4, 6)
        | {channels(0, 1) | channels(2, 4) | channels(5, 6)} -> conv5x5(1, p=valid)
        | c3map(0, 6)
    }
"""


def test_lenet5_c3_connection_table_has_the_papers_parameters() -> None:
    net = netdsl.parse(C3, "c3.net")
    assert net.output_shape == (16, 10, 10)
    assert net.params == 6 * (3 * 25 + 1) + 9 * (4 * 25 + 1) + (6 * 25 + 1) == 1_516


def test_deepface_l4_counts_weights_per_position_and_a_bias_per_unit() -> None:
    """Taigman et al. 2014: L4 is 16 filters of 9x9x16 over 63x63 (C3's output), 55x55 out;
    every one of its 55*55 positions has its own 9*9*16 x 16 weights, every output unit a bias."""
    net = netdsl.parse("input 16x63x63\nlocal9x9(16)", "l4.net")
    assert net.output_shape == (16, 55, 55)
    assert net.params == 55 * 55 * (9 * 9 * 16 * 16) + 16 * 55 * 55 == 62_774_800
    assert net.nodes[-1].macs == 55 * 55 * 9 * 9 * 16 * 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input 18x4x4\nreshape(5, -1)", "288 values do not divide into 5 x -1"),
        ("input 18x4x4\nreshape(3, 3, 3)", "holds 27 values, but its input 18x4x4 holds 288"),
        ("input 18x4x4\nreshape(-1, -1)", "only one size may be -1"),
        ("input 3x4x4\ntranspose(1, 1, 2)", "give each of the axes 1, 2, 3 of 3x4x4 once"),
        ("input 3x4x4\nsoftmax(axis=0)", "over the batch axis"),
        ("input 3x4x4\nsoftmax(axis=4)", "outside the 4 axes"),
        ("input 3x4x4\ncrop(5)", "cannot crop 4x4 to 5x5"),
        ("input 3x4x4\ncrop((2, 2, 2))", "gives 3 sizes for an input with 2 spatial axes"),
        ("input 3x4x4\npad(4, mode=reflect)", "reflect padding 4 must be smaller than"),
        ("input 3x4x4\npad((1, 2, 3))", "pads takes 1, 2 or 4"),
        ("input 3x4x4\nupsample(2, mode=cubic)", "expected nearest or bilinear or linear"),
        ("input 6x4x4\nchannels(4, 9)", "0 <= start < end <= 6"),
        ("input 5x4x4\ngated", "even number of channels"),
        ("input 3x2x2\nlocal3x3(4)", "floor((2 + 0 - 3)/1) + 1 = 0"),
        ("input 3x8x8\navgpool3x3/2(ceil=true, count_pad=true)", "count_pad=true with ceil"),
        # adaptive pooling emits at most 1,024 uneven bins an axis (a size of 2^31 - 1 once
        # listed its bins first: gigabytes; found by fuzzing)
        ("input 1x64\nadaptiveavgpool(2147483647)", "2,147,483,647 bins from 64 positions"),
        ("input 1x8x8\nadaptivemaxpool((4, 1025))", "1,025 bins from 8 positions"),
        ("input 1x3000\nadaptiveavgpool(2999)", "2,999 bins from 3,000 positions"),
    ],
)
def test_mistakes_are_located_errors(text: str, message: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert message in str(caught.value)
    assert "bad.net:2:" in str(caught.value)


# ---- zoo nets built from these layers, against PyTorch re-implementations from the papers ----


def _deepface() -> tuple[Any, tuple[int, ...]]:
    """Taigman et al. 2014, Fig. 2, with a locally connected layer written with unfold."""
    import torch
    from torch import nn

    class Local(nn.Module):  # type: ignore[misc]
        def __init__(self, c_in: int, c: int, k: int, s: int, n: int) -> None:
            super().__init__()
            self.k, self.s, m = k, s, (n - k) // s + 1
            self.weight = nn.Parameter(torch.zeros(m * m, c_in * k * k, c))
            self.bias = nn.Parameter(torch.zeros(c, m, m))

        def forward(self, x: Any) -> Any:
            cols = nn.functional.unfold(x, self.k, stride=self.s)
            y = torch.einsum("nkp,pkc->ncp", cols, self.weight)
            return y.reshape(x.shape[0], *self.bias.shape) + self.bias

    model = nn.Sequential(
        nn.Conv2d(3, 32, 11), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(32, 16, 9), nn.ReLU(),
        Local(16, 16, 9, 1, 63), nn.ReLU(), Local(16, 16, 7, 2, 55), nn.ReLU(),
        Local(16, 16, 5, 1, 25), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 21 * 21, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4030), nn.Softmax(1),
    )  # fmt: skip
    return model, (3, 152, 152)


def _lenet5_c3() -> tuple[Any, tuple[int, ...]]:
    """LeCun et al. 1998, Table I: which S2 maps each C3 map sees."""
    import torch
    from torch import nn

    table = [[j % 6 for j in range(i, i + 3)] for i in range(6)]
    table += [[j % 6 for j in range(i, i + 4)] for i in range(6)]
    table += [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], list(range(6))]

    class C3(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.maps = nn.ModuleList(nn.Conv2d(len(cols), 1, 5) for cols in table)

        def forward(self, x: Any) -> Any:
            return torch.cat([m(x[:, cols]) for m, cols in zip(self.maps, table, strict=True)], 1)

    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), C3(), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10), nn.Softmax(1),
    )  # fmt: skip
    return model, (1, 32, 32)


@pytest.mark.parametrize("name", ["deepface", "lenet5_c3"])
def test_zoo_net_matches_pytorch(name: str) -> None:
    """Parameters, multiply-adds (torch's FlopCounterMode / 2: convolutions, matrix products
    and einsums, no biases) and output shape on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, shape = {"deepface": _deepface, "lenet5_c3": _lenet5_c3}[name]()
    model = model.to("meta").eval()
    with FlopCounterMode(display=False) as counter:
        y = model(torch.empty(1, *shape, device="meta"))
    net = netdsl.load(name)
    params = sum(p.numel() for p in model.parameters())
    assert net.input_shape == shape
    assert (net.params, net.macs, net.output_shape) == (
        params,
        counter.get_total_flops() // 2,
        tuple(y.shape[1:]),
    )


# ---- the rules at every rank (1-D C x L and 3-D C x D x H x W), against PyTorch's shapes ----


def _rank_cases() -> list[tuple[str, dict[str, Any], tuple[int, ...], Any]]:
    import torch.nn.functional as F

    def up(mode: str, f: int) -> Any:
        return lambda x: F.interpolate(x, scale_factor=f, mode=mode)

    return [
        ("upsample", {"f": (2,), "mode": "nearest"}, (4, 20), up("nearest", 2)),
        ("upsample", {"f": (3,), "mode": "linear"}, (4, 20), up("linear", 3)),
        ("upsample", {"f": (2,), "mode": "linear"}, (2, 3, 4, 5), up("trilinear", 2)),
        ("crop", {"size": (7,)}, (4, 20), lambda x: x[..., 6:13]),
        ("crop", {"size": (2, 3, 4)}, (2, 5, 6, 7), lambda x: x[:, :, 1:3, 1:4, 1:5]),
        ("pad", {"pads": (1, 2), "mode": "reflect", "value": 0.0}, (4, 20),
         lambda x: F.pad(x, (1, 2), mode="reflect")),
        ("pad", {"pads": (1,), "mode": "constant", "value": 0.0}, (2, 3, 4, 5),
         lambda x: F.pad(x, (1,) * 6)),
        ("adaptiveavgpool", {"size": (6,)}, (4, 20), lambda x: F.adaptive_avg_pool1d(x, 6)),
        ("adaptivemaxpool", {"size": (2, 3, 3)}, (2, 5, 7, 8),
         lambda x: F.adaptive_max_pool3d(x, (2, 3, 3))),
        ("gated", {}, (8, 20), lambda x: x[:, :4]),
        ("channels", {"start": 1, "end": 3}, (4, 5, 6, 7), lambda x: x[:, 1:3]),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(len(_rank_cases())))
def test_rules_at_every_rank(case: int) -> None:
    import torch

    from netdsl.rules import RULES, Ctx

    op, attrs, shape, oracle = _rank_cases()[case]
    out = RULES[op](Ctx(op, attrs, (shape,)))
    assert out.shape == tuple(oracle(torch.zeros(1, *shape)).shape[1:])


@pytest.mark.parametrize(
    ("shape", "k", "s"), [((4, 20), (3,), (2,)), ((2, 6, 7, 8), (3, 2, 3), (1, 2, 1))]
)
def test_locally_connected_at_every_rank(shape: tuple[int, ...], k: Any, s: Any) -> None:
    from netdsl.rules import RULES, Ctx

    attrs = {"c": 5, "k": k, "s": s, "p": "valid", "bias": True}
    out = RULES["local"](Ctx("local", attrs, (shape,)))
    sizes = tuple((n - kk) // ss + 1 for n, kk, ss in zip(shape[1:], k, s, strict=True))
    fan_in = shape[0] * math.prod(k)
    assert out.shape == (5, *sizes)
    assert [w.shape for w in out.weights] == [(math.prod(sizes), fan_in, 5), (5, *sizes)]
