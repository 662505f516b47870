"""Zoo nets that are graphs (several inputs or outputs, named tensors, shared weights) against a
second implementation in PyTorch, written from the paper independently of the .net file.

Each row of GRAPHS names a zoo net and a builder in bench/ that returns the PyTorch module and
the shape of each input, in the order of the net's `input` line. The module takes one tensor per
input and returns one tensor per output (a tensor, or a tuple in the order of the net's `output`
lines). Parameters, multiply-adds (netdsl's convention: convolutions, transposed convolutions
and fc layers; see test_zoo_counts.py) and every output's shape must be equal.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from typing import Any

import pytest

import netdsl

HAS_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "torchinfo"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch and torchinfo are not installed")

# zoo net -> "module:function" in bench/ returning (model, (input shape, ...))
GRAPHS: dict[str, str] = {
    "wavenet": "bench.peers_wavenet:wavenet",
    "bn_inception": "bench.peers_inception:bn_inception",
    "two_stream": "bench.peers_streams:two_stream",
    "siamese": "bench.peers_streams:siamese",
    "fpn_resnet50": "bench.peers_detection:fpn_resnet50",
    "rpn_vgg16": "bench.peers_detection:rpn_vgg16",
    "unet": "bench.peers_detection:unet",
}


def torch_counts(
    model: Any, shapes: tuple[tuple[int, ...], ...]
) -> tuple[int, int, tuple[tuple[int, ...], ...]]:
    """Parameters, multiply-adds and output shapes of a PyTorch model with several inputs and
    outputs, on the meta device: torch's FlopCounterMode (FLOPs / 2) for convolutions, transposed
    convolutions and matrix products, which counts neither biases nor batch norm."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("meta").eval()
    xs = [torch.empty(1, *shape, device="meta") for shape in shapes]
    with FlopCounterMode(display=False) as counter:
        ys = model(*xs)
    outs = ys if isinstance(ys, tuple | list) else (ys,)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, counter.get_total_flops() // 2, tuple(tuple(y.shape[1:]) for y in outs)


def build(name: str) -> tuple[Any, tuple[tuple[int, ...], ...]]:
    module, _, function = GRAPHS[name].partition(":")
    model, shapes = getattr(importlib.import_module(module), function)()
    return model, tuple(shapes)


@needs_torch
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_counts_match_pytorch(name: str) -> None:
    model, shapes = build(name)
    params, macs, outs = torch_counts(model, shapes)
    net = netdsl.load(name)
    assert tuple(net.nodes[i].shape for i in net.inputs) == shapes
    assert tuple(net.nodes[j].shape for _, j in net.output_list) == outs
    assert (net.params, net.macs) == (params, macs)


def test_meta_counts_follow_the_convention() -> None:
    """The counter itself, on a net whose counts are known by hand: a 3x3 conv with bias
    (4*3*9 weights at 8*8 positions), batch norm, and an fc of 4*8*8 -> 5."""
    if not HAS_TORCH:
        pytest.skip("torch is not installed")
    from torch import nn

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, 5)

        def forward(self, a: Any, b: Any) -> tuple[Any, Any]:
            y = self.bn(self.conv(a)) + b
            return y, self.fc(y.flatten(1))

    params, macs, outs = torch_counts(Two(), ((3, 8, 8), (4, 8, 8)))
    assert params == 4 * 3 * 9 + 4 + 8 + 4 * 64 * 5 + 5
    assert macs == 4 * 3 * 9 * 64 + 4 * 64 * 5
    assert outs == ((4, 8, 8), (5,))
    assert math.prod(outs[0]) == 256
