"""Nets that are graphs: named inputs, named tensors, shared blocks, merges, named outputs.

Oracles: PyTorch re-implementations of the same nets (parameters counted once per module, as
PyTorch counts a module used twice; multiply-adds by hooks on every convolution and linear
layer; output shapes from running them), and hand-worked shapes in the tables.
"""

from __future__ import annotations

import math

import pytest

import netdsl
from netdsl.summary import check_line, table, to_json

SIAMESE = """
net siamese:
    input a: 1x105x105, b: 1x105x105
    tower = [conv10x10(64, p=valid) -> relu -> maxpool2x2 -> conv7x7(128, p=valid) -> relu]
    ya = a -> tower
    yb = b -> tower
    output d: [ya, yb] -> concat -> gap -> fc(1)
"""

HEADS = """
net heads:
    input x: 3x32x32
    trunk = x -> conv3x3(16) -> relu
    output cls: trunk -> conv1x1(9)
    output box: trunk -> conv1x1(36)
"""

UNET = """
net unet_step:
    input x: 1x60x60
    d1 = x -> conv3x3(8, p=valid) -> relu -> conv3x3(8, p=valid) -> relu
    b = d1 -> maxpool2x2 -> conv3x3(16, p=valid) -> relu -> conv3x3(16, p=valid) -> relu
    u1 = b -> upconv2x2/2(8)
    output y: [d1 -> crop(to=u1), u1] -> concat -> conv1x1(2)
"""

# text, {output: shape}, parameters (worked out by hand)
SHAPES = [
    (
        SIAMESE,
        {"d": (1,)},
        # conv 64*100+64, conv 128*64*49+128, fc 128*2+1: the tower once
        64 * 100 + 64 + 128 * 64 * 49 + 128 + 2 * 128 + 1,
    ),
    (HEADS, {"cls": (9, 32, 32), "box": (36, 32, 32)}, 16 * 27 + 16 + 9 * 17 + 36 * 17),
    (UNET, {"y": (2, 48, 48)}, 80 + 584 + 1168 + 2320 + 16 * 8 * 4 + 8 + 16 * 2 + 2),
    # every present spelling still works beside the new ones
    (
        "input 3x8x8\nconv3x3(4) -> relu -> {conv1x1(2) | conv3x3(2)} -> gap",
        {"output": (4, 1, 1)},
        112 + 10 + 74,
    ),
    (
        "net a:\n    input x: 2x4x4\n    y = x -> conv1x1(2)\n    [x, y] -> add -> relu\n",
        {"output": (2, 4, 4)},
        6,
    ),
    (
        "net g:\n    input x: 4x4x4\n    gate = x -> gap -> fc(4) -> sigmoid\n"
        "    output y: [x, gate] -> mul\n    output z: y\n",
        {"y": (4, 4, 4), "z": (4, 4, 4)},
        20,
    ),
    (  # the one unnamed input, used by its keyword in graph lines
        "net k:\n    input 2x4x4\n    y = input -> conv1x1(3)\n"
        "    output s: [input, y] -> concat\n    output t: input -> gap\n",
        {"s": (5, 4, 4), "t": (2, 1, 1)},
        9,
    ),
    (  # Koch et al.'s L1 distance: |a - b| component by component
        "net l1:\n    input a: 2x8x8, b: 2x8x8\n    output d: [a, b] -> sub -> abs -> fc(1)\n",
        {"d": (1,)},
        128 + 1,
    ),
    (  # the mean of three maps of one shape (a two-stream net's late fusion, with three)
        "net m:\n    input x: 2x4x4\n    y = x -> conv1x1(2)\n    [x, y, x -> relu] -> mean\n",
        {"output": (2, 4, 4)},
        6,
    ),
    (  # scores: the mean of two softmaxes over 5 classes
        "net f:\n    input a: 3x4x4, b: 6x4x4\n    sa = a -> fc(5) -> softmax\n"
        "    sb = b -> fc(5) -> softmax\n    output s: [sa, sb] -> mean\n",
        {"s": (5,)},
        48 * 5 + 5 + 96 * 5 + 5,
    ),
    (  # a block used once holds its weights; a block never used adds nothing
        "net b:\n    input x: 3x8x8\n    unused = [conv3x3(64)]\n    body = [conv3x3(4) -> relu]\n"
        "    output y: x -> body -> gap\n",
        {"y": (4, 1, 1)},
        112,
    ),
]


@pytest.mark.parametrize(("text", "outputs", "params"), SHAPES)
def test_shapes_and_parameters(text: str, outputs: dict[str, tuple[int, ...]], params: int) -> None:
    net = netdsl.parse(text)
    assert {name: net.nodes[i].shape for name, i in net.output_list} == outputs
    assert net.params == params


def test_shared_block_is_one_set_of_weights() -> None:
    net = netdsl.parse(SIAMESE)
    shared = [n for n in net.nodes if n.shares]
    assert [(n.name, n.shares) for n in shared if n.op == "conv"] == [
        ("tower@2.conv1", "tower.conv1"),
        ("tower@2.conv2", "tower.conv2"),
    ]
    assert all(n.params == 0 and "weights of tower." in n.note for n in shared if n.op == "conv")
    # the second use computes as much as the first
    first = sum(n.macs for n in net.nodes if n.name.startswith("tower."))
    assert sum(n.macs for n in shared) == first > 0


def test_summary_lists_inputs_and_outputs() -> None:
    net = netdsl.parse(HEADS)
    data = to_json(net)
    assert data["inputs"] == [{"name": "x", "shape": [3, 32, 32]}]
    assert data["outputs"] == [
        {"name": "cls", "shape": [9, 32, 32]},
        {"name": "box", "shape": [36, 32, 32]},
    ]
    assert data["input"] == [3, 32, 32] and data["output"] == [9, 32, 32]
    assert check_line(net).startswith("heads: x 3x32x32 -> cls 9x32x32, box 36x32x32,")
    one = to_json(netdsl.parse("input 3x8x8\nconv3x3(4)"))
    assert one["inputs"] == [{"name": "input", "shape": [3, 8, 8]}]
    assert one["outputs"] == [{"name": "output", "shape": [4, 8, 8]}]
    assert "outputs cls 9x32x32, box 36x32x32; 4 layers" in table(net)


# text, message fragment, line:column of the caret
ERRORS = [
    (
        "net u:\n    input x: 1x64x64\n    d = x -> conv3x3(4, p=valid)\n"
        "    u = d -> maxpool2x2 -> conv3x3(4, p=valid) -> upconv2x2/2(4)\n    [d, u] -> concat\n",
        "crop the larger map (62x62) to 58x58 first",
        "5:15",
    ),
    (
        "net s:\n    input a: 1x8x8, b: 1x8x8\n    conv3x3(4)\n",
        "nothing flows into 'conv3x3'",
        "3:5",
    ),
    (
        "net s:\n    input a: 1x8x8, a: 1x8x8\n    a\n",
        "'a' names a tensor or block already",
        "2:21",
    ),
    ("net s:\n    input relu: 1x8x8\n    relu\n", "'relu' is a layer; choose another name", "2:11"),
    (
        "net s:\n    input relu1: 1x8x8\n    relu\n",
        "'relu1' is a name netdsl gives a layer",
        "2:11",
    ),
    (
        "net s:\n    input x: 1x8x8\n    y = x -> conv1x1(2)\n    y = x\n    y\n",
        "'y' names a",
        "4:5",
    ),
    (
        "net s:\n    input x: 1x8x8\n    [x, x]\n",
        "2 tensors side by side must be merged next",
        "3:5",
    ),
    ("net s:\n    input x: 1x8x8\n    [x, x] -> relu\n", "must be merged next", "3:15"),
    (
        "net s:\n    input a: 1x8x8, b: 1x8x8\n    output y: input -> relu\n",
        "the net's inputs have names: start from one of them",
        "3:15",
    ),
    (  # a line that adds nothing has no tensor to give (were internal errors)
        "net s:\n    input a: 1x8x8, b: 1x8x8\n    output y: relu*0\n",
        "nothing flows into this line: the net has several inputs",
        "3:15",
    ),
    (
        "net s:\n    input a: 1x8x8, b: 1x8x8\n    conv(c) for c in []\n",
        "nothing flows into this line",
        "3:5",
    ),
    ("net s:\n    input x: 1x8x8\n    [x, x] -> concat(1)\n", "takes no arguments", "3:15"),
    ("net s:\n    input x: 1x8x8\n    [x, x] -> mean(2)\n", "takes no arguments", "3:15"),
    (
        "net s:\n    input x: 1x8x8\n    [x, x, x] -> sub\n",
        "'sub' takes exactly 2 tensors (a - b), got 3",
        "3:18",
    ),
    (  # a gate and a map: `[x, x, x] -> mul` was an internal error
        "net s:\n    input x: 1x8x8\n    [x, x, x] -> mul\n",
        "'mul' takes exactly 2 tensors (a map and its gate), got 3",
        "3:18",
    ),
    (
        "net s:\n    input x: 8x56x56\n    y = x -> crop(48)\n    [x, y] -> sub\n",
        "cannot subtract 8x48x48 from 8x56x56: shapes must be equal",
        "4:15",
    ),
    (
        "net s:\n    input x: 8x56x56\n    y = x -> crop(48)\n    [x, y] -> mean\n",
        "cannot average 8x56x56, 8x48x48: shapes must be equal",
        "4:15",
    ),
    (
        "net s:\n    input x: 8x56x56\n    y = x -> crop(48)\n    [y, x] -> mean\n",
        "crop the larger map (56x56) to 48x48 first: [a -> crop(to=b), b] -> mean",
        "4:15",
    ),
    (
        "net s:\n    input x: 8x6x6\n    y = x -> conv1x1(4)\n    [x, y, x] -> mean\n",
        "cannot average 8x6x6, 4x6x6, 8x6x6: shapes must be equal",
        "4:18",
    ),
    (
        "net s:\n    input x: 8x6x6\n    y = x -> gap -> flatten\n    [x, y] -> sub\n",
        "cannot subtract 8 from 8x6x6",
        "4:15",
    ),
    ("net s:\n    input x: 1x8x8\n    x -> abs(1)\n", "'abs' takes no arguments", "3:14"),
    (
        "net s:\n    input x: 1x8x8\n    t = [relu]\n    x -> t(2)\n",
        "is a shared block; it takes no",
        "4:10",
    ),
    (
        "net s:\n    input x: 1x8x8\n    output y: x -> relu\n    output y: x\n",
        "'y' names a tensor",
        "4:12",
    ),
    (
        "net s:\n    input x: 1x8x8\n    output z\n    z = x\n",
        "'z' is used before it is named (line 4)",
        "3:12",
    ),
    ("net s:\n    input x: 1x8x8\n    t = [relu]\n", "the net has no output", "2:5"),
    (
        "net s:\n    input a: 1x8x8, b: 3x8x8\n    t = [conv3x3(4)]\n    y = a -> t\n"
        "    output z: b -> t\n",
        "a shared block's layer needs the same weights at every use",
        "3:10",
    ),
    (
        "net s:\n    input x: 4x8x8\n    y = x -> maxpool2x2\n    x -> crop(to=q)\n",
        "takes the name of a tensor",
        "4:15",
    ),
    (
        "net s:\n    input x: 4x8x8\n    y = x -> maxpool2x2\n    y -> crop(to=x)\n",
        "the crop is larger",
        "4:10",
    ),
    (
        "net s:\n    input x: 4x8x8\n    y = x -> maxpool2x2\n    x -> conv3x3(4)\n    y\n",
        "only the net's last line",
        "4:5",
    ),
]


@pytest.mark.parametrize(("text", "fragment", "where"), ERRORS)
def test_errors(text: str, fragment: str, where: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "g.net")
    rendered = caught.value.render()
    assert fragment in rendered
    assert f"g.net:{where}:" in rendered


# ---- PyTorch twins ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")
nn = torch.nn


class Siamese(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(1, 64, 10), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 128, 7), nn.ReLU()
        )
        self.fc = nn.Linear(256, 1)

    def forward(self, a: object, b: object) -> object:
        y = torch.cat([self.tower(a), self.tower(b)], 1).mean((2, 3))
        return self.fc(y)


class Heads(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 16, 3, padding=1)
        self.cls, self.box = nn.Conv2d(16, 9, 1), nn.Conv2d(16, 36, 1)

    def forward(self, x: object) -> tuple[object, object]:
        t = torch.relu(self.trunk(x))
        return self.cls(t), self.box(t)


CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DECONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def torch_counts(model: object, *xs: object) -> tuple[int, int, list[tuple[int, ...]]]:
    """Parameters (each module once), multiply-adds of convolutions and linear layers (one
    per weight use: a convolution's weights at every output position, a transposed one's at
    every input position), and the output shapes without the batch axis."""
    macs = 0

    def count(module: object, inputs: tuple[object, ...], out: object) -> None:
        nonlocal macs
        if isinstance(module, CONVS):
            positions = math.prod(out.shape[2:])
        elif isinstance(module, DECONVS):
            positions = math.prod(inputs[0].shape[2:])
        else:
            positions = 1
        macs += module.weight.numel() * positions

    for m in model.modules():
        if isinstance(m, CONVS + DECONVS + (nn.Linear,)):
            m.register_forward_hook(count)
    with torch.no_grad():
        out = model(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    params = sum(p.numel() for p in model.parameters())
    return params, macs, [tuple(o.shape[1:]) for o in outs]


@pytest.mark.parametrize(
    ("text", "twin", "shapes"),
    [(SIAMESE, Siamese, [(1, 1, 105, 105)] * 2), (HEADS, Heads, [(1, 3, 32, 32)])],
    ids=["siamese", "heads"],
)
def test_against_pytorch(text: str, twin: type, shapes: list[tuple[int, ...]]) -> None:
    net = netdsl.parse(text)
    params, macs, outs = torch_counts(twin(), *(torch.zeros(s) for s in shapes))
    assert (net.params, net.macs) == (params, macs)
    assert [net.nodes[i].shape for _, i in net.output_list] == outs


# 1-D (CxL) and 3-D (CxDxHxW) inputs: one shorthand per rank (`conv3` is 3 wide on every axis)
RANKS = [
    (
        "input 1x1000\nconv9(16, s=2) -> bn -> relu -> maxpool4 -> conv3(32) -> gap -> fc(10)",
        lambda: nn.Sequential(
            nn.Conv1d(1, 16, 9, 2, padding=4, bias=False),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(16, 32, 3, padding=1),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        ),
        (1, 1, 1000),
    ),
    (
        "input 3x8x32x32\nconv3x3x3(8) -> relu -> maxpool1x2x2 -> conv3(16) -> bn -> relu"
        " -> maxpool2 -> deconv2x2x2/2(4) -> avgpool2 -> gap -> fc(5)",
        lambda: nn.Sequential(
            nn.Conv3d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm3d(16),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.ConvTranspose3d(16, 4, 2, stride=2),
            nn.AvgPool3d(2),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        ),
        (1, 3, 8, 32, 32),
    ),
]


@pytest.mark.parametrize(("text", "twin", "shape"), RANKS, ids=["1-D", "3-D"])
def test_ranks_against_pytorch(text: str, twin: object, shape: tuple[int, ...]) -> None:
    net = netdsl.parse(text)
    model = twin()  # type: ignore[operator]
    params, macs, outs = torch_counts(model, torch.zeros(shape))
    buffers = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert (net.params, net.buffers, net.macs) == (params, buffers, macs)
    assert [net.output_shape] == outs
    # every layer's shape, as PyTorch gives it
    x, torch_shapes = torch.zeros(shape), []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if not isinstance(layer, nn.Flatten):
                torch_shapes.append(tuple(x.shape[1:]))
    assert [n.shape for n in net.nodes[1:]] == torch_shapes


RANK_ERRORS = [
    ("input 1x100\nconv3x3(4)", "is a 2-D layer, but its input 1x100 has 1", "2:1"),
    ("input 3x8x8x8\nmaxpool2x2(p=1)", "is a 2-D layer", "2:1"),
    ("input 3x8x8\nconv3x3(4, p=(1, 1, 1))", "its padding gives 3 axes", "2:1"),
    ("input 3x8x8x8\nconv3(4, p=(1, 1))", "its padding gives 2 axes", "2:1"),
    ("input 3x8x8x8x8\nrelu", "input takes C, CxL, CxHxW or CxDxHxW, got 5", "1:7"),
]


@pytest.mark.parametrize(("text", "fragment", "where"), RANK_ERRORS)
def test_rank_errors(text: str, fragment: str, where: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "g.net")
    rendered = caught.value.render()
    assert fragment in rendered and f"g.net:{where}:" in rendered


# layers named as in the paper: `conv1_1: conv3x3(64)`; a definition's use names its scope
NAMED = [
    (
        "input 3x8x8\nconv1_1: conv3x3(4) -> relu -> pool1: maxpool -> fc6: fc(10)",
        ["input", "conv1_1", "relu1", "pool1", "fc6"],
    ),
    (
        "def inc(c) = {conv1x1(c) | conv3x3(c)}\ninput 3x8x8\ninception_3a: inc(4) -> s: sepconv3x3(2)",
        [
            "input",
            "inception_3a.branch1.b1.conv1",
            "inception_3a.branch1.b2.conv1",
            "inception_3a.branch1.concat",
            "s.dw",
            "s.pw",
        ],
    ),
    ("input 3x8x8\n[c: conv3x3(4)]*2", ["input", "block1.c", "block2.c"]),
    (
        "net n:\n    input x: 3x8x8\n    output y: x -> up: upsample(2) -> c: crop(to=x)\n",
        ["x", "y.up", "y.c"],
    ),
]


@pytest.mark.parametrize(("text", "names"), NAMED)
def test_layers_carry_the_papers_names(text: str, names: list[str]) -> None:
    net = netdsl.parse(text)
    assert [n.name for n in net.nodes] == names
    model = net.to_onnx()
    weights = {t.name.rsplit(".", 1)[0] for t in model.graph.initializer}
    assert weights <= set(names)


NAME_ERRORS = [
    ("input 3x8x8\nc: conv3x3(2) -> c: conv3x3(2)", "the layer name 'c' is given twice", "2:18"),
    ("input 3x8x8\nconv1: relu -> conv3x3(2)", "two layers are named 'conv1'", "2:16"),
    (
        "net a:\n  input x: 1x4x4\n  y = x -> relu\n  x -> q: y",
        "only a layer or a definition",
        "4:8",
    ),
]


@pytest.mark.parametrize(("text", "fragment", "where"), NAME_ERRORS)
def test_name_errors(text: str, fragment: str, where: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "g.net")
    rendered = caught.value.render()
    assert fragment in rendered and f"g.net:{where}:" in rendered
