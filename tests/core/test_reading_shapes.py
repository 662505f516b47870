"""Shapes read and stated in the text: `in.c` inside a definition, net parameters in input
sizes, and shape checks (`-> 64x56x56`), as tables of (text, what must come out).

Every expected shape is worked out by hand from the layers of the row.
"""

from __future__ import annotations

import pytest

import netdsl

TRANSITION = "def transition(c=in.c/2) = bn -> relu -> conv1x1(c) -> avgpool2\n"

# (what, text, output shape, parameters)
READS = [
    (
        "in.c in a default",
        TRANSITION + "input 3x8x8\nconv3x3(12) -> transition -> transition",
        (3, 2, 2),
        3 * 9 * 12 + 24 + 12 * 6 + 6 + 12 + 6 * 3 + 3,  # the first conv feeds a bn: no bias
    ),
    (
        "in.c in a layer's argument",
        "def double = conv1x1(2*in.c)\ninput 3x4x4\ndouble -> double",
        (12, 4, 4),
        3 * 6 + 6 + 6 * 12 + 12,
    ),
    (
        "in.h and in.w",
        "def squash = avgpool(k=(in.h, in.w))\ninput 5x6x4\nsquash",
        (5, 1, 1),
        0,
    ),
    (
        "in of the def's use, not of the layer",
        "def f = conv1x1(7) -> conv1x1(in.c)\ninput 3x4x4\nf",
        (3, 4, 4),
        3 * 7 + 7 + 7 * 3 + 3,
    ),
    (
        "nested: each def reads its own input",
        "def g = conv1x1(in.c + 1)\ndef f = conv1x1(10) -> g -> conv1x1(in.c)\ninput 2x4x4\nf",
        (2, 4, 4),
        2 * 10 + 10 + 10 * 11 + 11 + 11 * 2 + 2,
    ),
    (
        "an argument is read where it is written",
        "def g(c) = conv1x1(c)\ndef f = conv1x1(5) -> g(in.c)\ninput 3x4x4\nf",
        (3, 4, 4),
        3 * 5 + 5 + 5 * 3 + 3,
    ),
    (
        "in.c as a repetition count",
        "def f = relu*(in.c) -> conv1x1(1)\ninput 4x2x2\nf",
        (1, 2, 2),
        5,
    ),
    ("in.l of a signal", "def f = conv(in.l, k=1)\ninput 2x9\nf", (9, 9), 2 * 9 + 9),
    ("in.d of a volume", "def f = conv(in.d, k=1)\ninput 2x3x4x4\nf", (3, 3, 4, 4), 9),
    ("in.c of a vector", "def head = fc(in.c/2)\ninput 10\nhead -> head", (2,), 55 + 12),
    (
        "after a projection shortcut",
        "def f = conv1x1(in.c)\ninput 3x4x4\nres[conv3x3/2(8) -> bn] -> f",
        (8, 2, 2),
        3 * 9 * 8 + 16 + (3 * 8 + 16) + 8 * 8 + 8,
    ),
    # net parameters in input sizes
    ("parameter in an input size", "net n(L=10):\n  input (2*L)x8x8\n  conv1x1(1)", (1, 8, 8), 21),
    ("parenthesised middle", "net n(h=6):\n  input 3x(h)x(h+2)\n  relu", (3, 6, 8), 0),
    (
        "named inputs with parameters",
        "net n(c=2):\n  input a: (c)x4x4, b: (2*c)x4x4\n  output y: [a, b] -> concat",
        (6, 4, 4),
        0,
    ),
    # shape checks
    ("a check of every axis", "input 3x8x8\nconv3x3/2(4) -> 4x4x4 -> relu", (4, 4, 4), 112),
    ("a check without channels", "input 3x8x8\nconv3x3/2(4) -> 4x4", (4, 4, 4), 112),
    ("a check of a vector", "input 3x2x2\nflatten -> 12 -> fc(2) -> 2", (2,), 26),
    (
        "a check with a loop variable",
        "input 3x16x16\n[conv3x3/2(c) -> (c)x(64/c)x(64/c)] for c in [8, 16]",
        (16, 4, 4),
        3 * 9 * 8 + 8 + 8 * 9 * 16 + 16,
    ),
    (
        "a check with in",
        "def f = conv3x3/2(2*in.c) -> (2*in.c)x(in.h/2)x(in.w/2)\ninput 3x8x8\nf -> f",
        (12, 2, 2),
        3 * 9 * 6 + 6 + 6 * 9 * 12 + 12,
    ),
]


@pytest.mark.parametrize(
    ("text", "shape", "params"), [r[1:] for r in READS], ids=[r[0] for r in READS]
)
def test_reads(text: str, shape: tuple[int, ...], params: int) -> None:
    net = netdsl.parse(text)
    assert (net.output_shape, net.params) == (shape, params)


def test_parameter_in_input_size_follows_overrides() -> None:
    text = "net n(L=10):\n  input (2*L)x8x8\n  conv1x1(1)"
    assert netdsl.parse(text, overrides={"L": 3}).input_shape == (6, 8, 8)


def test_densenet_transitions_read_their_channels() -> None:
    """nets/densenet.net halves whatever arrives (`in.c/2`): torchvision's widths follow."""
    nodes = {n.name: n for n in netdsl.load("densenet121").nodes}
    widths = [nodes[f"stage{i}.transition1.conv1"].shape[0] for i in (1, 2, 3)]
    assert widths == [128, 256, 512]


# (what, text, line:column, message, a note or "")
ERRORS = [
    (
        "in outside a definition",
        "input 3x8x8\nconv1x1(in.c)",
        "2:9",
        "in.c is read inside a definition: `in` is what flows into its use",
        "for example: def transition",
    ),
    (
        "an axis the input lacks",
        "def f = conv1x1(in.h)\ninput 10\nf",
        "1:17",
        "in.h: what flows in is 10 (C), which has in.c",
        "",
    ),
    (
        "an axis of the wrong rank",
        "def f = conv(in.h, k=1)\ninput 2x9\nf",
        "1:14",
        "in.h: what flows in is 2x9 (CxL), which has in.c, in.l",
        "",
    ),
    (
        "what flows in failed: its error, once",
        "def f = conv1x1(in.c)\ninput 3x4x4\nconv5x5(2, p=valid) -> f",
        "3:1",
        "conv5x5",
        "",
    ),
    (
        "a size that is not a whole number",
        "net n(L=1.5):\n  input (L)x8x8\n  relu",
        "2:10",
        "a size must be a whole number, got 1.5",
        "",
    ),
    (
        "a size of zero",
        "net n(L=0):\n  input (L)x8x8\n  relu",
        "2:10",
        "input dimension 0 is out of range",
        "",
    ),
    (
        "a bare name in a size",
        "net n(H=4):\n  input 3xHxH\n  relu",
        "2:9",
        "'xHxH' in a size: write a parameter in parentheses, as in (c)x56x56",
        "",
    ),
    (
        "two sizes without an x",
        "net n(a=2):\n  input (a)(a)\n  relu",
        "2:9",
        "a size is numbers or (expressions) joined by x",
        "",
    ),
    (
        "a wrong check",
        "input 3x8x8\nconv3x3/2(4) -> 4x8x8",
        "2:17",
        "shape check: the shape here is 4x4x4, the text says 4x8x8",
        "conv1 makes 4x4x4 from 3x8x8",
    ),
    (
        "a wrong check without channels",
        "input 3x8x8\nconv3x3/2(4) -> 8x8",
        "2:17",
        "shape check: the sizes here are 4x4, the text says 8x8",
        "",
    ),
    (
        "a check of another rank",
        "input 3x8x8\nrelu -> 3",
        "2:9",
        "shape check: the shape here is 3x8x8, the text says 3",
        "a shape check gives every axis (3x8x8) or all but the channels",
    ),
    (
        "a check with nothing flowing in",
        "net v:\n  input a: 2x4x4, b: 2x4x4\n  100000",
        "3:3",
        "nothing flows into the shape check: the net has several inputs",
        "named so far: a, b",
    ),
    (
        "a check in a repetition says which pass",
        "input 3x8x8\n[maxpool2 -> 3x4x4]*2",
        "2:14",
        "shape check: the shape here is 3x2x2, the text says 3x4x4",
        "repetition 2 of 2",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "message", "note"), [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS]
)
def test_errors(text: str, where: str, message: str, note: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    errors = [d for d in caught.value.diagnostics if d.severity == "error"]
    assert len(errors) == 1, caught.value.render()
    first = errors[0]
    assert f"{first.span.line}:{first.span.column}" == where, caught.value.render()
    assert message in first.message, caught.value.render()
    assert note in "\n".join(first.notes), caught.value.render()
