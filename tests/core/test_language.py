"""Every spelling the language promises, as a table of (text, output shape, parameters), and the
promises around it: names, defaults, imports, refusals and limits.

Shapes and parameter counts are worked out by hand for each row.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import netdsl

CARD = "input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n"

# (what, text, output shape, trainable parameters)
SPELLINGS = [
    # files and nets
    ("input CxHxW", "input 3x224x224\nrelu", (3, 224, 224), 0),
    ("grayscale", "input 1x28x28\nflatten", (784,), 0),
    ("vector input", "input 784\nfc(10)", (10,), 7850),
    (
        "comments",
        "# a net\ninput 3x8x8  # the input\n# between\nconv3x3(4) # a conv\n",
        (4, 8, 8),
        112,
    ),
    ("chain goes on at ->", "input 3x8x8\nconv3x3(4)\n-> relu\n    -> maxpool", (4, 4, 4), 112),
    ("chain goes on after ->", "input 3x8x8\nconv3x3(4) ->\n  relu ->\n  maxpool", (4, 4, 4), 112),
    ("newlines in []", "input 3x8x8\n[conv3x3(4)\n  -> relu\n]*2", (4, 8, 8), 112 + 148),
    ("newlines in ()", "input 3x8x8\nconv(4,\n  k=3,\n  s=2)", (4, 4, 4), 112),
    ("newlines in {}", "input 3x8x8\n{conv1x1(2)\n | conv1x1(3)}", (5, 8, 8), 8 + 12),
    ("comment in []", "input 3x8x8\n[conv3x3(4)  # first\n -> relu   # then\n]", (4, 8, 8), 112),
    (
        "for on the next line",
        "input 3x8x8\n[conv3x3(c) -> relu]\n  for c in [4, 8]",
        (8, 8, 8),
        112 + 296,
    ),
    ("backslash goes on", "input 3x8x8\nconv3x3(4) \\\n  -> relu", (4, 8, 8), 112),
    ("CRLF", "input 3x8x8\r\nconv3x3(4)\r\n-> relu\r\n", (4, 8, 8), 112),
    ("tabs", "net t:\n\tinput 3x8x8\n\tconv3x3(4) ->\n\t\trelu", (4, 8, 8), 112),
    # repetition
    ("x*N", "input 3x8x8\nconv3x3(3)*3", (3, 8, 8), 3 * 84),
    ("[..]*N", "input 3x8x8\n[conv3x3(3) -> relu]*3", (3, 8, 8), 3 * 84),
    ("*0 is nothing", "input 3x8x8\nconv3x3(3)*0 -> relu", (3, 8, 8), 0),
    ("*(n-1)", "net n(k=3):\n  input 3x8x8\n  conv1x1(3)*(k-1)", (3, 8, 8), 2 * 12),
    ("*name", "net n(k=2):\n  input 3x8x8\n  [conv1x1(3)]*k", (3, 8, 8), 2 * 12),
    # convolutions
    (
        "conv, every keyword",
        "input 3x8x8\nconv(c=4, k=3, s=1, p=same, d=1, groups=1)",
        (4, 8, 8),
        112,
    ),
    ("conv p=valid", "input 3x8x8\nconv(4, k=3, p=valid)", (4, 6, 6), 112),
    ("conv p=INT", "input 3x8x8\nconv(4, k=3, p=2)", (4, 10, 10), 112),
    ("conv p=(h, w)", "input 3x8x8\nconv(4, k=3, p=(0, 1))", (4, 6, 8), 112),
    ("conv p=(t, l, b, r)", "input 3x8x8\nconv(4, k=3, p=(0, 1, 2, 3))", (4, 8, 10), 112),
    ("conv positional", "input 3x8x8\nconv(4, 3, 2, 1, 1, 1, false)", (4, 4, 4), 108),
    ("conv default k=3", "input 3x8x8\nconv(4)", (4, 8, 8), 112),
    ("conv3x3(c)", "input 3x8x8\nconv3x3(4)", (4, 8, 8), 112),
    ("conv7x7/2(c)", "input 3x32x32\nconv7x7/2(4)", (4, 16, 16), 3 * 49 * 4 + 4),
    ("conv11x11/4", "input 3x227x227\nconv11x11/4(96, p=valid)", (96, 55, 55), 34944),
    ("conv1x1", "input 3x8x8\nconv1x1(4)", (4, 8, 8), 16),
    ("conv1x7", "input 3x8x8\nconv1x7(4)", (4, 8, 8), 3 * 7 * 4 + 4),
    ("conv/name", "net n(s=2):\n  input 3x8x8\n  conv3x3/s(4)", (4, 4, 4), 112),
    ("dilation", "input 3x9x9\nconv3x3(4, d=2, p=valid)", (4, 5, 5), 112),
    ("bias=false", "input 3x8x8\nconv3x3(4, bias=false)", (4, 8, 8), 108),
    ("dwconv3x3", "input 4x8x8\ndwconv3x3", (4, 8, 8), 4 * 9 + 4),
    ("dwconv/2 m=2", "input 4x8x8\ndwconv3x3/2(m=2)", (8, 4, 4), 8 * 9 + 8),
    ("sepconv3x3(c)", "input 4x8x8\nsepconv3x3(8)", (8, 8, 8), 4 * 9 + 4 * 8 + 8),
    ("deconv positional", "input 4x4x4\ndeconv(2, 3, 2, 1, 1)", (2, 8, 8), 4 * 2 * 9 + 2),
    (
        "deconv keywords",
        "input 4x4x4\ndeconv(c=2, k=3, s=2, p=1, output_padding=1)",
        (2, 8, 8),
        4 * 2 * 9 + 2,
    ),
    ("deconv4x4/2", "input 4x4x4\ndeconv4x4/2(2, p=1)", (2, 8, 8), 4 * 2 * 16 + 2),
    ("deconv defaults", "input 4x4x4\ndeconv(2)", (2, 8, 8), 4 * 2 * 4 + 2),
    ("upconv", "input 4x4x4\nupconv2x2/2(2)", (2, 8, 8), 4 * 2 * 4 + 2),
    # pooling
    ("maxpool(k=2, s=2)", "input 4x8x8\nmaxpool(k=2, s=2)", (4, 4, 4), 0),
    ("maxpool, avgpool, pool", "input 4x16x16\nmaxpool -> avgpool -> pool", (4, 2, 2), 0),
    ("maxpool3x3/2", "input 4x9x9\nmaxpool3x3/2", (4, 4, 4), 0),
    ("avgpool2", "input 4x8x8\navgpool2", (4, 4, 4), 0),
    ("ceil=true", "input 4x7x7\nmaxpool(ceil=true)", (4, 4, 4), 0),
    ("gap", "input 4x8x8\ngap", (4, 1, 1), 0),
    ("gmp", "input 4x8x8\ngmp", (4, 1, 1), 0),
    # the rest of the vocabulary
    ("fc(n)", "input 4x2x2\nfc(3)", (3,), 16 * 3 + 3),
    ("linear", "input 16\nlinear(3)", (3,), 51),
    (
        "activations",
        "input 4x2x2\nrelu -> sigmoid -> tanh -> softmax -> leakyrelu(0.1)",
        (4, 2, 2),
        0,
    ),
    ("bn", "input 4x2x2\nbn", (4, 2, 2), 8),
    ("batchnorm(eps, momentum)", "input 4x2x2\nbatchnorm(eps=1e-3, momentum=0.01)", (4, 2, 2), 8),
    ("dropout(p)", "input 4x2x2\ndropout(0.5) -> dropout(p=0.1)", (4, 2, 2), 0),
    ("flatten", "input 4x2x2\nflatten", (16,), 0),
    ("lrn(size)", "input 4x2x2\nlrn(5) -> lrn(size=3, alpha=1e-4, beta=0.75, k=2)", (4, 2, 2), 0),
    ("identity", "input 4x2x2\nidentity", (4, 2, 2), 0),
    # graph forms
    ("res[...]", "input 4x8x8\nres[conv3x3(4) -> bn]", (4, 8, 8), 144 + 8),
    (
        "res[...] projection",
        "input 4x8x8\nres[conv3x3/2(8) -> bn]",
        (8, 4, 4),
        4 * 9 * 8 + 16 + 4 * 8 + 16,
    ),
    (
        "res[..., shortcut=...]",
        "input 4x8x8\nres[conv3x3/2(8) -> bn, shortcut=conv1x1/2(8) -> bn]",
        (8, 4, 4),
        4 * 9 * 8 + 16 + 4 * 8 + 16,
    ),
    (
        "{a | b | c}",
        "input 4x8x8\n{conv1x1(2) | conv3x3(3) | maxpool3x3/1(p=1)}",
        (9, 8, 8),
        10 + 111,
    ),
    ("{a | b}+", "input 4x8x8\n{conv1x1(4) | identity}+", (4, 8, 8), 20),
    (
        "dense[...]*k",
        "input 4x8x8\ndense[conv3x3(2)]*3",
        (10, 8, 8),
        (4 * 18 + 2) + (6 * 18 + 2) + (8 * 18 + 2),
    ),
    (
        "scale[...] (SE)",
        "input 32x4x4\nscale[gap -> fc(32/16) -> relu -> fc(32) -> sigmoid]",
        (32, 4, 4),
        (32 * 2 + 2) + (2 * 32 + 32),
    ),
    # definitions
    (
        "def with defaults",
        "def b(c, s=1) = conv3x3/s(c)\ninput 3x8x8\nb(4) -> b(4, 2) -> b(s=2, c=4)",
        (4, 2, 2),
        112 + 148 + 148,
    ),
    (
        "def default from a parameter",
        "def f(c, d=2*c) = conv1x1(c) -> conv1x1(d)\ninput 3x8x8\nf(4)",
        (8, 8, 8),
        16 + 40,
    ),
    ("def without parameters", "def stem = conv3x3(4) -> relu\ninput 3x8x8\nstem", (4, 8, 8), 112),
    ("def/stride", "def b(c, s=1) = conv3x3/s(c)\ninput 3x8x8\nb/2(4)", (4, 4, 4), 112),
    (
        "def used in a def",
        "def a(c) = conv1x1(c)\ndef b(c) = a(c) -> a(2*c)\ninput 3x8x8\nb(2)",
        (4, 8, 8),
        8 + 12,
    ),
    # comprehensions
    ("for c in [..]", "input 3x8x8\n[conv3x3(c) -> relu] for c in [4, 8]", (8, 8, 8), 112 + 296),
    (
        "for (c, s, n) in [..]",
        "input 3x8x8\n[conv3x3/s(c)*n] for (c, s, n) in [(4, 1, 1), (8, 2, 2)]",
        (8, 2, 2),
        112 + 296 + 584,
    ),
    (
        "def for c in [..]",
        "def blk(c) = conv3x3(c)\ninput 3x8x8\nblk(c) for c in [4, 8]",
        (8, 8, 8),
        112 + 296,
    ),
    # integer arithmetic
    (
        "4*c, c/16, c%8, c-33",
        "net n(c=35):\n  input 3x8x8\n"
        "  conv1x1(c/16) -> conv1x1(4*c/35) -> conv1x1(c%8) -> conv1x1(c-33)",
        (2, 8, 8),
        8 + 12 + 15 + 8,
    ),
    (
        "precedence and parentheses",
        "input 3x8x8\nconv1x1(2+3*2) -> conv1x1((2+3)*2)",
        (10, 8, 8),
        32 + 90,
    ),
    ("/ rounds down", "input 3x8x8\nconv1x1((0-7)/2 + 6)", (2, 8, 8), 8),
    ("unary minus", "input 3x8x8\nconv1x1(-(-2))", (2, 8, 8), 8),
    # defaults
    (
        "defaults conv.c, fc.n",
        "input 3x8x8\ndefaults conv.c=32, fc.n=7\nconv3x3 -> fc",
        (7,),
        (27 * 32 + 32) + (32 * 64 * 7 + 7),
    ),
    ("defaults before input", "defaults conv.c=5\ninput 3x8x8\nconv3x3", (5, 8, 8), 140),
    (
        "defaults from net parameters",
        "net n(w=5):\n  defaults conv.c=w, fc.n=2*w\n  input 3x8x8\n  conv3x3 -> gap -> fc",
        (10,),
        140 + 60,
    ),
    (
        "defaults of other arguments",
        "input 3x8x8\ndefaults conv.k=5, maxpool.k=4\nconv(4) -> maxpool",
        (4, 2, 2),
        3 * 25 * 4 + 4,
    ),
    ("card line", CARD, (10,), 365_734),
    # more spellings, each worked out by hand
    ("spelled 1", "input 3x8x8\nrelu", (3, 8, 8), 0),
    ("spelled 2", "# a comment\ninput 3x8x8  # here too\nrelu # and here", (3, 8, 8), 0),
    ("spelled 3", "input 3x8x8\nconv3x3(4)\n-> relu\n  -> maxpool", (4, 4, 4), 112),
    ("spelled 4", "input 3x8x8\nconv3x3(4) ->\nrelu", (4, 8, 8), 112),
    ("spelled 5", "input 3x8x8\nconv(4, k=3, s=1, p=same, d=1, groups=1)", (4, 8, 8), 112),
    ("spelled 6", "input 3x8x8\nconv3x3(4) -> conv1x1(2)", (2, 8, 8), 122),
    ("spelled 7", "input 3x32x32\nconv5x5/s(4) for s in [2]", (4, 16, 16), 304),
    ("spelled 8", "input 4x8x8\nmaxpool(k=2, s=2) -> avgpool -> pool", (4, 1, 1), 0),
    ("spelled 9", "input 4x9x9\nmaxpool3x3/2 -> avgpool2x2/1", (4, 3, 3), 0),
    ("spelled 10", "input 4x8x8\ngmp -> flatten", (4,), 0),
    (
        "spelled 11",
        "input 4x2x2\nflatten -> linear(3) -> relu -> sigmoid -> tanh -> softmax",
        (3,),
        51,
    ),
    (
        "spelled 12",
        "input 4x4x4\nbn -> dropout(0.3) -> lrn(3) -> leakyrelu(0.2) -> identity",
        (4, 4, 4),
        8,
    ),
    ("spelled 13", "input 4x4x4\ndwconv3x3 -> sepconv3x3(8)", (8, 4, 4), 116),
    ("spelled 14", "input 4x4x4\nres[conv3x3(4) -> bn]", (4, 4, 4), 152),
    ("spelled 15", "input 4x8x8\nres[conv3x3/2(8, p=1) -> bn]", (8, 4, 4), 352),
    ("spelled 16", "input 4x8x8\nres[conv3x3(4), shortcut=conv1x1(4)]", (4, 8, 8), 168),
    ("spelled 17", "input 8x4x4\nscale[gap -> fc(8/4) -> relu -> fc(8) -> sigmoid]", (8, 4, 4), 42),
    ("spelled 18", "input 3x8x8\n[conv3x3(c)*n] for (c, n) in [(4, 1), (8, 2)]", (8, 8, 8), 992),
    (
        "spelled 19",
        "input 3x8x8\nconv1x1(4*2+1) -> conv1x1(17/2) -> conv1x1(17%5) -> conv1x1((3-1)*2)",
        (4, 8, 8),
        146,
    ),
    (
        "spelled 20",
        "net n(width=4, depth=2):\n  input 3x8x8\n  conv3x3(width)*depth",
        (4, 8, 8),
        260,
    ),
    ("spelled 21", "input 3x8x8\ndefaults conv.c=5, fc.n=7\nconv3x3 -> fc", (7,), 2387),
    ("spelled 22", "input 3x8x8\nconv3x3 -> fc", (10,), 42762),
]


@pytest.mark.parametrize(
    ("text", "shape", "params"), [s[1:] for s in SPELLINGS], ids=[s[0] for s in SPELLINGS]
)
def test_spelling(text: str, shape: tuple[int, ...], params: int) -> None:
    net = netdsl.parse(text)
    assert (net.output_shape, net.params) == (shape, params)


def test_an_anonymous_net_is_called_net() -> None:
    assert netdsl.parse("input 3x8x8\nrelu").name == "net"
    assert netdsl.parse("net tiny:\n  input 3x8x8\n  relu").name == "tiny"


def test_the_card_line_verbatim_reports_its_defaults() -> None:
    net = netdsl.parse(CARD)
    assert net.output_shape == (10,)
    assert net.defaults_used == ("conv.c=64 (10 layers)", "fc.n=10 (3 layers)")
    convs = [n for n in net.nodes if n.op == "conv"]
    assert len(convs) == 10 and {n.attrs["c"] for n in convs} == {64}
    assert [n.shape for n in net.nodes if n.op == "maxpool"][-1] == (64, 7, 7)
    macs = 64 * 27 * 224**2 + 64 * 576 * (224**2 + 2 * (112**2 + 56**2 + 28**2 + 14**2))
    assert net.macs == macs + 3136 * 10 + 2 * 100


def test_explicit_defaults_are_not_reported_as_built_in() -> None:
    net = netdsl.parse("input 3x8x8\ndefaults conv.c=32, fc.n=7\nconv3x3 -> fc")
    assert net.defaults_used == ()
    assert netdsl.parse("input 3x8x8\nconv3x3 -> fc(2)").defaults_used == ("conv.c=64 (1 layer)",)


def test_the_projection_shortcut_is_inserted_and_said() -> None:
    net = netdsl.parse("input 4x8x8\nres[conv3x3/2(8) -> bn]")
    assert [n.name for n in net.nodes] == [
        "input",
        "conv1",
        "bn1",
        "shortcut1.conv",
        "shortcut1.bn",
        "add1",
    ]
    nodes = {n.name: n for n in net.nodes}
    conv = nodes["shortcut1.conv"]
    assert (conv.op, conv.inputs, conv.shape) == ("conv", (0,), (8, 4, 4))
    a = conv.attrs
    assert (a["k"], a["s"], a["pads"], a["bias"]) == ((1, 1), (2, 2), (0, 0, 0, 0), False)
    assert conv.note == "projection shortcut 4x8x8 -> 8x4x4"
    assert nodes["shortcut1.bn"].op == "bn"
    assert nodes["add1"].inputs == (2, 4)


def test_a_projection_for_channels_alone_has_stride_1() -> None:
    net = netdsl.parse("input 16x8x8\nres[conv3x3(32)]")
    conv = next(n for n in net.nodes if n.name == "shortcut1.conv")
    assert (conv.attrs["s"], conv.shape) == ((1, 1), (32, 8, 8))


def test_no_projection_where_the_shapes_agree_or_a_shortcut_is_written() -> None:
    same = netdsl.parse("input 4x8x8\nres[conv3x3(4) -> bn]")
    assert [n.name for n in same.nodes] == ["input", "conv1", "bn1", "add1"]
    assert same.nodes[-1].inputs == (2, 0)
    written = netdsl.parse("input 4x8x8\nres[conv3x3/2(8), shortcut=conv1x1/2(8)]")
    assert [n.name for n in written.nodes] == ["input", "conv1", "shortcut1.conv1", "add1"]
    assert all(not n.note for n in written.nodes)


def test_branches_dense_and_scale_wire_their_inputs() -> None:
    net = netdsl.parse(
        "input 4x8x8\n{conv1x1(2) | relu}\n-> dense[conv3x3(2)]\n"
        "-> scale[gap -> fc(8) -> sigmoid]\n-> {conv1x1(8) | identity}+"
    )
    by_name = {n.name: i for i, n in enumerate(net.nodes)}
    node = {n.name: n for n in net.nodes}
    concat = node["branch1.concat"]
    assert concat.inputs == (by_name["branch1.b1.conv1"], by_name["branch1.b2.relu1"])
    assert node["concat1"].inputs == (by_name["branch1.concat"], by_name["conv1"])
    assert node["scale1"].op == "mul"
    assert node["scale1"].inputs == (by_name["concat1"], by_name["sigmoid1"])
    assert node["branch2.add"].op == "add" and node["branch2.add"].shape == (8, 8, 8)


def test_structural_names() -> None:
    text = (
        "def blk(c) = conv3x3(c) -> relu\n"
        "input 4x8x8\n"
        "blk(4) -> blk(4)\n"
        "-> blk(c) for c in [4, 8]\n"
        "-> [blk(c) -> bn] for c in [8]\n"
        "-> [relu]*2 -> conv1x1(8)*2\n"
        "-> {relu | blk(8)}\n"
        "-> sepconv3x3(8)"
    )
    assert [n.name for n in netdsl.parse(text).nodes] == [
        "input",
        "blk1.conv1",
        "blk1.relu1",
        "blk2.conv1",
        "blk2.relu1",
        # a comprehension item that is one definition call is named after the item alone
        "stage1.conv1",
        "stage1.relu1",
        "stage2.conv1",
        "stage2.relu1",
        "stage3.blk1.conv1",
        "stage3.blk1.relu1",
        "stage3.bn1",
        "block1.relu1",
        "block2.relu1",
        "conv1",
        "conv2",
        "branch1.b1.relu1",
        "branch1.b2.blk1.conv1",
        "branch1.b2.blk1.relu1",
        "branch1.concat",
        "sepconv1.dw",
        "sepconv1.pw",
    ]


def test_zoo_names_follow_the_structure() -> None:
    names = {n.name for n in netdsl.load("resnet50").nodes}
    assert {"stem1.conv1", "stage2.bottleneck1.conv2", "stage2.bottleneck1.shortcut1.conv"} <= names


def test_several_nets_in_one_file_are_picked_by_name() -> None:
    text = "net a:\n  input 3x8x8\n  conv1x1(2)\n\nnet b(w=3):\n  input 3x8x8\n  conv1x1(w)\n"
    assert [n.name for n in netdsl.parse_all(text)] == ["a", "b"]
    assert netdsl.parse(text, name="b").output_shape == (3, 8, 8)
    assert netdsl.parse(text, name="b", overrides={"w": 5}).output_shape == (5, 8, 8)
    with pytest.raises(netdsl.NetError, match="holds 2 nets: a, b"):
        netdsl.parse(text)
    with pytest.raises(netdsl.NetError, match=r"has no net named 'c' \(it has: a, b\)"):
        netdsl.parse(text, name="c")


def test_definitions_are_shared_by_the_nets_of_a_file() -> None:
    text = "def blk(c) = conv1x1(c)\nnet a:\n input 3x8x8\n blk(2)\nnet b:\n input 3x8x8\n blk(5)"
    assert [n.output_shape for n in netdsl.parse_all(text)] == [(2, 8, 8), (5, 8, 8)]


def test_import_reads_definitions_relative_to_the_file(write_net) -> None:  # type: ignore[no-untyped-def]
    write_net("def blk(c) = conv3x3(c) -> relu\nnet ignored:\n input 1\n fc(1)\n", "lib/blocks.net")
    write_net('import "blocks.net"\ndef two(c) = blk(c) -> blk(c)\n', "lib/more.net")
    main = write_net('import "lib/more.net"\ninput 3x8x8\ntwo(4) -> blk(2)\n', "main.net")
    net = netdsl.load(str(main))
    assert net.output_shape == (2, 8, 8)
    assert net.params == 112 + 148 + 74
    # `..` may not leave the loaded file's folder, unless the caller names a search path
    nested = write_net('import "../lib/blocks.net"\ninput 3x8x8\nblk(2)\n', "sub/nested.net")
    with pytest.raises(netdsl.NetError, match="leads out of the folders imports may read"):
        netdsl.load(nested)
    assert netdsl.load(nested, search_path=[main.parent]).output_shape == (2, 8, 8)
    found = write_net('import "lib/blocks.net"\ninput 3x8x8\nblk(2)\n', "sub/found.net")
    assert netdsl.load(found, search_path=[main.parent]).output_shape == (2, 8, 8)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"main.net": 'import "gone.net"\ninput 3x8x8\nrelu'},
            "main.net:1:1: error: import 'gone.net': no such file in {dir}",
        ),
        (
            {"main.net": 'import "main.net"\ninput 3x8x8\nrelu'},
            "main.net:1:1: error: import cycle: main.net -> main.net",
        ),
        (
            {
                "main.net": 'import "a.net"\ninput 3x8x8\nrelu',
                "a.net": 'import "b.net"',
                "b.net": 'import "a.net"',
            },
            "b.net:1:1: error: import cycle: a.net -> b.net -> a.net",
        ),
        (
            {"main.net": 'import "a.net"\ninput 3x8x8\nrelu', "a.net": 'import "main.net"'},
            "a.net:1:1: error: import cycle: main.net -> a.net -> main.net",
        ),
        (
            {"main.net": 'import "a.net"\ninput 3x8x8\nrelu', "a.net": "def x = relu ->\n"},
            "a.net:1:16: error: unexpected end of file",
        ),
    ],
    ids=["missing", "self", "cycle", "back to the top", "broken"],
)
def test_import_errors(write_net, files: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    paths = [write_net(text, name) for name, text in files.items()]
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.load(paths[0])
    assert message.format(dir=paths[0].parent.resolve()) in caught.value.render()


def test_imports_nest_at_most_32_deep(write_net) -> None:  # type: ignore[no-untyped-def]
    for i in range(40):
        write_net(f'import "f{i + 1}.net"\ndef d{i} = relu\n', f"f{i}.net")
    write_net("def d40 = relu\n", "f40.net")
    main = write_net('import "f0.net"\ninput 3x8x8\nd0\n', "main.net")
    with pytest.raises(netdsl.NetError, match="imports nest more than 32 deep"):
        netdsl.load(main)


@pytest.mark.parametrize(
    "name", ["local", "locallyconnected", "locally_connected", "lc", "local3x3", "lc3x3"]
)
def test_locally_connected_layers_are_spelled_every_way(name: str) -> None:
    net = netdsl.parse(f"input 3x8x8\n{name}(16)")
    assert (net.nodes[-1].op, net.nodes[-1].shape) == ("local", (16, 6, 6))


def test_defaults_with_a_kernel_shorthand_are_not_silently_widened() -> None:
    with pytest.raises(netdsl.NetError):
        netdsl.parse("input 3x8x8\ndefaults conv5x5.c=8\nconv3x3")


# ---- limits: refused at once, with a message that says which limit --------------------------


def refusal(text: str) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text)
    return caught.value.render(), time.perf_counter() - start


LIMITS = [
    (
        "billion",
        "input 3x8x8\n[conv3x3(64)]*1000000000",
        "repetition count 1,000,000,000 exceeds the limit of 20,000 layers per net",
    ),
    (
        "billion, no brackets",
        "input 3x8x8\nconv3x3(64)*1000000000",
        "repetition count 1,000,000,000 exceeds the limit of 20,000 layers per net",
    ),
    ("count past 2^62", "input 3x8x8\nrelu*(" + "*".join(["1024"] * 7) + ")", "is too large"),
    (
        "fc weight",
        "input 3x8x8\nfc(70000) -> fc(70000)",
        "fc: its weight tensor would have 4,900,000,000 elements (70000x70000), more than the limit "
        "of 2^31 - 1",
    ),
    (
        "conv weight",
        "input 3x8x8\nconv1x1(50000) -> conv3x3(50000)",
        "conv3x3: its weight tensor would have 22,500,000,000 elements (50000x50000x3x3)",
    ),
    (
        "activation",
        "input 3x100000x100000\nrelu",
        "relu: its output 3x100000x100000 would have 30,000,000,000 elements",
    ),
    ("input dimension", "input 3x4294967296x1\nrelu", "input dimension 4294967296 is out of range"),
    (
        "recursion",
        "def f(x) = f(x)\ninput 3x8x8\nf(1)",
        "'f' uses itself; definitions cannot recurse",
    ),
    (
        "mutual recursion",
        "def a = b\ndef b = a\ninput 3x8x8\na",
        "'a' uses itself; definitions cannot recurse",
    ),
    (
        "deep definitions",
        "def d0 = relu\n"
        + "".join(f"def d{i} = d{i - 1}\n" for i in range(1, 3000))
        + "input 3x8x8\nd2999",
        "the net nests more than 150 levels deep",
    ),
    ("square past the limit", "input 3x8x8\n[[conv1x1(4)]*400]*400", "more than 20,000 layers"),
    (
        "deep brackets",
        "input 3x8x8\n" + "[" * 150 + "relu" + "]" * 150,
        "brackets nest more than 100 deep",
    ),
    (
        "deep minus",
        "input 3x8x8\nconv1x1(" + "-" * 5000 + "1)",
        "an expression nests operators more than 100 deep",
    ),
    (
        "long sum",
        "input 3x8x8\nconv1x1(" + "+".join(["1"] * 5000) + ")",
        "an expression nests operators more than 100 deep",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_limits_are_refused_fast(text: str, message: str) -> None:
    rendered, seconds = refusal(text)
    assert message in rendered
    assert seconds < 10, f"refused after {seconds:.2f} s"  # a hang guard, not a speed test


@pytest.mark.parametrize(
    "text",
    ["input 3x8x8\n[[conv1x1(4)]*400]*400", "input 3x8x8\n[[[relu]*1000]*1000]*1000"],
    ids=["400x400", "1000^3"],
)
def test_nested_repetitions_past_the_layer_limit_are_refused(text: str) -> None:
    rendered, _ = refusal(text)
    assert "the net expands to more than 20,000 layers" in rendered


# ---- once in test_spellings.py


def test_the_card_line_verbatim_with_its_defaults() -> None:
    net = netdsl.parse("input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n")
    assert net.output_shape == (10,)
    assert net.defaults_used == ("conv.c=64 (10 layers)", "fc.n=10 (3 layers)")


def test_projection_shortcut_is_inserted_and_said() -> None:
    net = netdsl.parse("input 4x8x8\nres[conv3x3/2(8, p=1) -> bn]")
    names = {n.name: n for n in net.nodes}
    conv = names["shortcut1.conv"]
    assert (conv.attrs["s"], conv.attrs["k"], conv.attrs["bias"]) == ((2, 2), (1, 1), False)
    assert conv.note == "projection shortcut 4x8x8 -> 8x4x4"
    assert "shortcut1.bn" in names


def test_structural_names_of_zoo_nets() -> None:
    names = {n.name for n in netdsl.load("resnet50").nodes}
    assert {"stage2.bottleneck1.conv2", "stage2.bottleneck1.shortcut1.conv"} <= names
    inception = {n.name for n in netdsl.load("googlenet").nodes}
    assert any(n.startswith("inception1.branch1.b2.") for n in inception)


def test_several_nets_and_imports(tmp_path: Path) -> None:
    (tmp_path / "blocks.net").write_text("def blk(c) = conv3x3(c) -> relu\n")
    (tmp_path / "main.net").write_text(
        'import "blocks.net"\nnet a:\n input 3x8x8\n blk(4)\nnet b:\n input 3x8x8\n blk(6)\n'
    )
    assert [n.output_shape for n in netdsl.load_all(str(tmp_path / "main.net"))] == [
        (4, 8, 8),
        (6, 8, 8),
    ]
    assert netdsl.load(f"{tmp_path}/main.net:b").output_shape == (6, 8, 8)
