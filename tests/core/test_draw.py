"""Diagrams: the boxes, edges and frames of zoo nets (counted by hand from the papers' block
structure), DOT and Mermaid text read back by small parsers, DOT checked by Graphviz itself
(`dot -Tcanon`, and the laid-out coordinates of `dot -Tjson`: top to bottom, not too wide), PNG
and SVG files, and the message where Graphviz is missing. Tests that run `dot` skip with the
reason where it is not installed (`apt-get install graphviz`)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import netdsl
from netdsl import diagram, draw
from netdsl.rules import dims

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(
    DOT is None, reason="Graphviz's `dot` is not installed (apt-get install graphviz)"
)

# (net, depth, boxes, dashed skips): boxes include input and output; a conv -> bn -> relu chain
# is one box. resnet18: 5 identity shortcuts (3 blocks project instead); densenet121:
# 6 + 12 + 24 + 16 dense layers; se_resnet50: 16 SE gates + 12 identity shortcuts.
CASES = [
    ("lenet5", None, 9, 0),
    ("resnet18", None, 33, 5),
    ("resnet18", 2, 14, 0),
    ("resnet18", 1, 8, 0),
    ("googlenet", None, 83, 0),
    ("densenet121", None, 244, 58),
    ("se_resnet50", None, 138, 28),
]
ZOO = sorted({c[0] for c in CASES})


def parse_dot(text: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Boxes (id -> label) and edges (src, dst, attributes) of the DOT netdsl writes."""
    boxes = dict(re.findall(r"^\s*(\w+) \[label=(<.*?>|\".*?\"), fillcolor", text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+) \[(.*)\];$", text, re.M)
    return boxes, edges


def parse_mermaid(text: str) -> tuple[set[str], list[tuple[str, str, str]], int]:
    """Boxes, edges (src, arrow, dst) and the subgraph nesting left open at the end."""
    lines = text.splitlines()
    assert lines[:4][0] == "---" and lines[3] == "flowchart TD"
    boxes, edges, depth = set(), [], 0
    for line in lines[4:]:
        s = line.strip()
        if s.startswith("subgraph "):
            depth += 1
        elif s == "end":
            depth -= 1
            assert depth >= 0
        elif m := re.fullmatch(r'(\w+)(\(\(|\[)"[^"]*"(\)\)|\])', s):
            boxes.add(m.group(1))
        elif m := re.fullmatch(r'(\w+) (-->\|"[^"]*"\||-\.->) (\w+)', s):
            edges.append((m.group(1), m.group(2), m.group(3)))
        else:
            assert s.startswith(("classDef ", "class ")), s
    return boxes, edges, depth


@pytest.mark.parametrize(("name", "depth", "boxes", "skips"), CASES)
def test_layout_counts_boxes_and_skips(
    name: str, depth: int | None, boxes: int, skips: int
) -> None:
    net = netdsl.load(name)
    diagram = draw.layout(net, depth)
    assert len(diagram.boxes) == boxes
    assert sum(e.skip for e in diagram.edges) == skips
    # every parameter is drawn exactly once, and each frame's figure is its boxes' sum
    assert sum(b.params for b in diagram.boxes) == net.params
    for frame, params in diagram.frames.items():
        assert params == sum(b.params for b in diagram.boxes if frame in b.cluster)


@pytest.mark.parametrize(("name", "depth", "boxes", "skips"), CASES)
def test_dot_text_is_a_dag_with_shapes_on_its_edges(
    name: str, depth: int | None, boxes: int, skips: int
) -> None:
    net = netdsl.load(name)
    text = draw.to_dot(draw.layout(net, depth))
    ids, edges = parse_dot(text)
    assert len(ids) == boxes
    assert text.count("{") == text.count("}")
    assert all(a in ids and b in ids for a, b, _ in edges)
    shapes = {dims(n.shape) for n in net.nodes}
    solid = [
        re.search(r'label=" ([^"]+)"', attrs) for _, _, attrs in edges if "dashed" not in attrs
    ]
    assert all(m is not None and m.group(1) in shapes for m in solid)
    assert sum("dashed" in attrs for _, _, attrs in edges) == skips
    order = {k: i for i, k in enumerate(ids)}  # boxes are written in topological order
    assert all(order[a] < order[b] for a, b, _ in edges)
    out = [b for a, b, _ in edges if a == "n0"]
    assert out, "the input leads somewhere"
    assert ids["out"].startswith("<<B>output</B><BR/>" + dims(net.output_shape))


@pytest.mark.parametrize(("name", "depth", "boxes", "skips"), CASES)
def test_mermaid_text_matches_the_dot(name: str, depth: int | None, boxes: int, skips: int) -> None:
    diagram = draw.layout(netdsl.load(name), depth)
    ids, edges, left_open = parse_mermaid(draw.to_mermaid(diagram))
    assert left_open == 0
    assert len(ids) == boxes
    assert all(a in ids and b in ids for a, _, b in edges)
    assert len(edges) == len(diagram.edges)
    assert sum(arrow == "-.->" for _, arrow, _ in edges) == skips


def test_labels_say_what_each_box_does() -> None:
    diagram = draw.layout(netdsl.load("resnet18"))
    details = {b.name: b.detail for b in diagram.boxes}
    assert details["stem1.conv1"] == "conv 7x7/2, 64 · bn · relu"
    assert details["stem1.maxpool1"] == "maxpool 3x3/2"
    assert details["stage2.basic1.shortcut1.conv"] == "conv 1x1/2, 128 · bn"
    assert details["stage1.basic1.add1"] == "add · relu"
    assert details["head1.fc1"] == "fc 1000 · softmax"
    blocks = {b.name: b for b in draw.layout(netdsl.load("resnet18"), 2).boxes}
    assert blocks["stage2.basic1"].detail == "3 conv · 3 bn · 2 relu · add"
    assert blocks["stage2.basic1"].params == 230_144  # 73,728 + 147,456 + 8,192 + 3 x 256


@needs_dot
@pytest.mark.parametrize("name", ZOO)
def test_graphviz_accepts_and_lays_out_top_to_bottom(name: str) -> None:
    net = netdsl.load(name)
    text = draw.to_dot(draw.layout(net))
    canon = subprocess.run([DOT, "-Tcanon"], input=text.encode(), capture_output=True)
    assert canon.returncode == 0, canon.stderr.decode()
    laid = json.loads(
        subprocess.run([DOT, "-Tjson"], input=text.encode(), capture_output=True, check=True).stdout
    )
    y = {o["name"]: float(o["pos"].split(",")[1]) for o in laid["objects"] if "pos" in o}
    for edge in laid["edges"]:
        tail, head = laid["objects"][edge["tail"]]["name"], laid["objects"][edge["head"]]["name"]
        assert y[tail] > y[head], f"{tail} -> {head} points up"  # y grows upwards in -Tjson
    width = float(laid["bb"].split(",")[2])
    assert width < 1000, f"{name} is {width:.0f} points wide"  # googlenet, the widest: ~650


@needs_dot
@pytest.mark.parametrize(
    ("name", "depth"), [("lenet5", None), ("resnet18", 2), ("googlenet", None)]
)
def test_png_and_svg_files(tmp_path: Path, name: str, depth: int | None) -> None:
    net = netdsl.load(name)
    png = draw.draw(net, tmp_path / f"{name}.png", depth)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert 200 < width < 1500 and height > width  # a column, readable at 96 dpi
    svg = ET.parse(draw.draw(net, tmp_path / f"{name}.svg", depth)).getroot()
    assert svg.tag.endswith("svg")
    text = "".join(svg.itertext())
    assert net.name in text and dims(net.output_shape) in text


def test_without_graphviz_text_works_and_pictures_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(draw, "graphviz", lambda: None)
    net = netdsl.load("lenet5")
    assert draw.draw(net, tmp_path / "a.dot").read_text().startswith("digraph net {")
    assert draw.draw(net, tmp_path / "a.mmd").read_text().startswith("---\ntitle:")
    for suffix in (".svg", ".png"):
        with pytest.raises(netdsl.NetError, match=r"Graphviz") as caught:
            draw.draw(net, tmp_path / f"a{suffix}")
        assert "apt-get install graphviz" in caught.value.render()
        assert not (tmp_path / f"a{suffix}").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dot", "a.mmd"]


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("net.pdf", "should end in one of .dot, .gv, .mmd, .mermaid, .svg, .png"),
        ("missing/net.dot", "cannot write"),
    ],
)
def test_bad_destinations_are_net_errors(tmp_path: Path, file: str, message: str) -> None:
    with pytest.raises(netdsl.NetError, match=re.escape(message)):
        draw.draw(netdsl.load("lenet5"), tmp_path / file)
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*"))  # no temporary left


def test_quotes_in_names_cannot_break_the_text() -> None:
    assert diagram._dot_quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert diagram._mermaid_quote('say "hi"') == '"say #quot;hi#quot;"'
    assert diagram._dot_html(["<b>", "x & y", ""]) == "<<B>&lt;b&gt;</B><BR/>x &amp; y>"


def test_each_frame_is_written_once_whatever_the_order_of_its_boxes() -> None:
    box = diagram.Box
    boxes = (
        box("n0", "input", "3x8x8", 0, "input", ()),
        box("n1", "a.x", "conv", 10, "conv", ("a",), "x"),
        box("n2", "b.x", "conv", 20, "conv", ("b",), "x"),
        box("n3", "a.y", "conv", 30, "conv", ("a",), "y"),
    )
    edges = tuple(diagram.Edge(f"n{i}", f"n{i + 1}", "8", False) for i in range(3))
    d = diagram.Diagram("t", boxes, edges, {"a": 40, "b": 20})
    dot = diagram.to_dot(d)
    assert dot.count('subgraph "cluster_a"') == 1 and 'label="a · 40 params"' in dot
    mermaid = diagram.to_mermaid(d)
    assert mermaid.count("subgraph f0") == 1
    assert parse_mermaid(mermaid)[2] == 0
    if DOT is not None:
        assert (
            subprocess.run([DOT, "-Tcanon"], input=dot.encode(), capture_output=True).returncode
            == 0
        )


def test_command_line_draws_and_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main

    out = tmp_path / "r.mmd"
    assert main(["draw", "resnet18", "-o", str(out), "--depth", "2"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: resnet18, 14 boxes (depth 2)\n"
    assert parse_mermaid(out.read_text())[0] >= {"n0", "out"}
    assert main(["draw", "lenet5", "-o", str(tmp_path / "l.pdf")]) == 1
    assert "cannot draw to 'l.pdf'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["draw", "lenet5", "--depth", "0"])
    assert usage.value.code == 2


def test_every_merge_is_drawn_as_one() -> None:
    """The merges of named tensors are merge boxes, like add, concat and scale."""
    kinds = {b.name: b.kind for b in draw.layout(netdsl.load("siamese")).boxes}
    assert kinds["p.sub1"] == "merge"
    kinds = {b.name: b.kind for b in draw.layout(netdsl.load("two_stream")).boxes}
    assert [k for name, k in kinds.items() if name.rsplit(".", 1)[-1].startswith("mean")] == [
        "merge"
    ]
