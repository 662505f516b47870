"""The layers of rules_shape.py at the shape level: LeNet-5's C3 connection table written with
channel slices has the paper's 1,516 parameters, DeepFace's locally connected L4 is counted as
the paper counts it, and each layer's mistakes are one located error with the numbers."""

from __future__ import annotations

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
        ("input 3x4x4\npad((1, 2, 3))", "p takes 1, 2 or 4"),
        ("input 3x4x4\nupsample(2, mode=cubic)", "expected nearest or bilinear or linear"),
        ("input 6x4x4\nchannels(4, 9)", "0 <= start < end <= 6"),
        ("input 5x4x4\ngated", "even number of channels"),
        ("input 3x2x2\nlocal3x3(4)", "floor((2 + 0 - 3)/1) + 1 = 0"),
        ("input 3x8x8\navgpool3x3/2(ceil=true, count_pad=true)", "count_pad=true with ceil"),
    ],
)
def test_mistakes_are_located_errors(text: str, message: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert message in str(caught.value)
    assert "bad.net:2:" in str(caught.value)
