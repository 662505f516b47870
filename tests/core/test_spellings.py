"""Every spelling the language promises, as a table of (text, output shape, parameters).

Shapes and parameters are worked out by hand for each line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import netdsl

SPELLINGS = [
    ("input 3x8x8\nrelu", (3, 8, 8), 0),
    ("input 784\nfc(10)", (10,), 7850),
    ("# a comment\ninput 3x8x8  # here too\nrelu # and here", (3, 8, 8), 0),
    ("input 3x8x8\nconv3x3(4)\n-> relu\n  -> maxpool", (4, 4, 4), 112),
    ("input 3x8x8\nconv3x3(4) ->\nrelu", (4, 8, 8), 112),
    ("input 3x8x8\nconv(4,\n  k=3,\n  s=2)", (4, 4, 4), 112),
    ("input 3x8x8\nconv(4, k=3, s=1, p=same, d=1, groups=1)", (4, 8, 8), 112),
    ("input 3x8x8\nconv(4, k=3, p=valid)", (4, 6, 6), 112),
    ("input 3x8x8\nconv(4, k=3, p=2)", (4, 10, 10), 112),
    ("input 3x8x8\nconv3x3(4) -> conv1x1(2)", (2, 8, 8), 112 + 10),
    ("input 3x32x32\nconv7x7/2(4)", (4, 16, 16), 3 * 49 * 4 + 4),
    ("input 3x32x32\nconv5x5/s(4) for s in [2]", (4, 16, 16), 3 * 25 * 4 + 4),
    ("input 4x8x8\nmaxpool(k=2, s=2) -> avgpool -> pool", (4, 1, 1), 0),
    ("input 4x9x9\nmaxpool3x3/2 -> avgpool2x2/1", (4, 3, 3), 0),
    ("input 4x8x8\ngap", (4, 1, 1), 0),
    ("input 4x8x8\ngmp -> flatten", (4,), 0),
    ("input 4x2x2\nfc(3)", (3,), 16 * 3 + 3),
    ("input 4x2x2\nflatten -> linear(3) -> relu -> sigmoid -> tanh -> softmax", (3,), 51),
    ("input 4x4x4\nbn -> dropout(0.3) -> lrn(3) -> leakyrelu(0.2) -> identity", (4, 4, 4), 8),
    ("input 4x4x4\ndeconv(2, 3, 2, 1, 1)", (2, 8, 8), 4 * 2 * 9 + 2),
    ("input 4x4x4\ndeconv4x4/2(2, p=1)", (2, 8, 8), 4 * 2 * 16 + 2),
    ("input 4x4x4\ndwconv3x3 -> sepconv3x3(8)", (8, 4, 4), (36 + 4) + (36 + 32 + 8)),
    ("input 4x4x4\nres[conv3x3(4) -> bn]", (4, 4, 4), 36 * 4 + 8),
    ("input 4x8x8\nres[conv3x3/2(8, p=1) -> bn]", (8, 4, 4), 4 * 9 * 8 + 16 + 4 * 8 + 16),
    ("input 4x8x8\nres[conv3x3(4), shortcut=conv1x1(4)]", (4, 8, 8), 144 + 4 + 16 + 4),
    ("input 4x8x8\n{conv1x1(2) | conv3x3(3) | maxpool3x3/1(p=1)}", (9, 8, 8), 10 + 111),
    ("input 4x8x8\n{conv1x1(4) | identity}+", (4, 8, 8), 20),
    ("input 4x8x8\ndense[conv3x3(2)]*3", (10, 8, 8), (72 + 2) + (108 + 2) + (144 + 2)),
    ("input 8x4x4\nscale[gap -> fc(8/4) -> relu -> fc(8) -> sigmoid]", (8, 4, 4), 18 + 24),
    (
        "def b(c, s=1) = conv3x3/s(c)\ninput 3x8x8\nb(4) -> b(4, 2) -> b(s=2, c=4)",
        (4, 2, 2),
        112 + 148 + 148,
    ),
    ("input 3x8x8\n[conv3x3(c) -> relu] for c in [4, 8]", (8, 8, 8), 112 + 296),
    ("input 3x8x8\n[conv3x3(c)*n] for (c, n) in [(4, 1), (8, 2)]", (8, 8, 8), 112 + 296 + 584),
    (
        "input 3x8x8\nconv1x1(4*2+1) -> conv1x1(17/2) -> conv1x1(17%5) -> conv1x1((3-1)*2)",
        (4, 8, 8),
        36 + 80 + 18 + 12,
    ),
    ("net n(width=4, depth=2):\n  input 3x8x8\n  conv3x3(width)*depth", (4, 8, 8), 112 + 148),
    ("input 3x8x8\ndefaults conv.c=5, fc.n=7\nconv3x3 -> fc", (7,), 140 + 5 * 64 * 7 + 7),
    ("input 3x8x8\nconv3x3 -> fc", (10,), 3 * 9 * 64 + 64 + 64 * 64 * 10 + 10),
]


@pytest.mark.parametrize(("text", "shape", "params"), SPELLINGS)
def test_spelling(text: str, shape: tuple[int, ...], params: int) -> None:
    net = netdsl.parse(text)
    assert (net.output_shape, net.params) == (shape, params)


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


def test_structural_names() -> None:
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


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"main.net": 'import "gone.net"\ninput 3x8x8\nrelu'}, "no such file"),
        (
            {"main.net": 'import "a.net"\ninput 3x8x8\nrelu', "a.net": 'import "main.net"'},
            "import cycle",
        ),
    ],
)
def test_import_errors(tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(netdsl.NetError, match=fragment):
        netdsl.load(str(tmp_path / "main.net"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("input 3x8x8\n[conv3x3(64)]*1000000000", "exceeds the limit of 20,000 layers"),
        ("input 3x8x8\n[[conv1x1(4)]*400]*400", "more than 20,000 layers"),
        ("input 3x8x8\nfc(70000) -> fc(70000)", r"more than the limit of 2\^31 - 1"),
        ("def f(x) = f(x)\ninput 3x8x8\nf(1)", "cannot recurse"),
        ("input 3x8x8\nlocallyconnected(4)", "locally connected layers"),
        ("input 3x8x8\n" + "[" * 150 + "relu" + "]" * 150, "nest more than 100 deep"),
    ],
)
def test_limits_are_refused_fast(text: str, fragment: str) -> None:
    start = time.perf_counter()
    with pytest.raises(netdsl.NetError, match=fragment):
        netdsl.parse(text)
    assert time.perf_counter() - start < 5  # generous: a refusal, not a benchmark
