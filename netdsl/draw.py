"""Shaped net -> a diagram: boxes and edges, written as Graphviz DOT or Mermaid text, and rendered
to SVG or PNG by Graphviz's `dot` where it is installed.

A consumer at the end of the pipeline, like `summary.py`, whose depth grouping it shares: at
`depth` N a box stands for every layer whose name begins with the same N parts, as a row does in
`netdsl summary --depth N`. Without a depth every layer is drawn, but a shape-preserving op that
only follows one layer (bn, relu, dropout...) is written into that layer's box, so a
conv -> bn -> relu reads as one box. Edges carry the shape that flows along them; an edge that
leaves a box with another way out and lands on an add, concat or scale is a skip (residual,
dense, squeeze-excitation) and is drawn dashed beside the main path. Boxes of one block sit in a
labelled frame with the block's parameters. DOT and Mermaid are plain text and need nothing;
rendering runs `dot` in a subprocess.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from netdsl.rules import dims
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError
from netdsl.summary import si

FOLDED = {"bn", "relu", "leakyrelu", "sigmoid", "tanh", "softmax", "dropout", "identity", "lrn"}
MERGES = {"add": "add", "concat": "concat", "mul": "scale"}
TEXT = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}
PICTURES = {".svg": "svg", ".png": "png"}
COLOURS = {
    "input": "#fff3b0",
    "conv": "#d6e6f7",
    "fc": "#fde0c5",
    "pool": "#dcefd5",
    "merge": "#eeeeee",
    "block": "#e6def5",
    "other": "#f7f7f7",
}
INSTALL = (
    "install Graphviz, which provides `dot`: apt-get install graphviz (Debian, Ubuntu), "
    "brew install graphviz (macOS) or conda install graphviz; .dot and .mmd files need nothing"
)


@dataclass(frozen=True, slots=True)
class Box:
    id: str
    name: str  # the layer's or block's full name
    detail: str  # what it does: "conv 3x3/2, 64 · bn · relu", or "2 conv · 2 bn · add"
    params: int
    kind: str  # a key of COLOURS
    cluster: tuple[str, ...]  # the frames it sits in, outermost first
    short: str = ""  # the name less what every box of its frame shares
    spine: bool = False  # on the main path from input to output, drawn straight


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    shape: str
    skip: bool


@dataclass(frozen=True, slots=True)
class Diagram:
    title: str
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    frames: dict[str, int]  # frame name -> its parameters


def layout(net: ShapedNet, depth: int | None = None) -> Diagram:
    """The boxes and edges of `net` at `depth` (None: every layer, chains of ops in one box)."""
    consumers = Counter(i for node in net.nodes for i in node.inputs)
    box_of: list[str] = []
    for i, node in enumerate(net.nodes):
        own = _prefix(node.name, depth) if i else "input"
        leaf = own == node.name
        parent = node.inputs[0] if len(node.inputs) == 1 else 0
        if leaf and node.op in FOLDED and parent and consumers[parent] == 1:
            own = box_of[parent]  # one consumer only, so no path can return: no cycle
        box_of.append(own)
    members: dict[str, list[int]] = {}
    for i, key in enumerate(box_of):
        members.setdefault(key, []).append(i)
    ids = {key: f"n{k}" for k, key in enumerate(members)}
    frames = _frames(list(members), depth)
    pairs = {(box_of[p], box_of[i]) for i, n in enumerate(net.nodes) for p in n.inputs}
    leaving = Counter(src for src, dst in pairs if src != dst)
    spine = _spine(net, box_of)
    boxes = tuple(
        _box(net, ids[key], key, [net.nodes[i] for i in group], frames.get(key, ()))
        for key, group in members.items()
    )
    boxes = tuple(replace(b, short=_short(b, boxes), spine=b.name in spine) for b in boxes)
    kinds = {b.id: b.kind for b in boxes}
    edges: dict[tuple[str, str], Edge] = {}
    for i, node in enumerate(net.nodes):
        for p in node.inputs:
            src, dst = ids[box_of[p]], ids[box_of[i]]
            if src == dst or (src, dst) in edges:
                continue
            # the other way out of a box, landing on a merge: a residual, dense or SE skip
            skip = leaving[box_of[p]] > 1 and kinds[dst] == "merge"
            edges[(src, dst)] = Edge(src, dst, dims(net.nodes[p].shape), skip)
    last = ids[box_of[net.output]]
    boxes += (Box("out", "output", dims(net.output_shape), 0, "input", (), "output", True),)
    edges[(last, "out")] = Edge(last, "out", dims(net.output_shape), False)
    params = {
        f: sum(b.params for b in boxes if f in b.cluster) for fs in frames.values() for f in fs
    }
    title = (
        f"{net.name}: {dims(net.input_shape)} -> {dims(net.output_shape)}, "
        f"{net.params:,} params, {si(net.macs)}MACs"
    )
    return Diagram(title, boxes, tuple(edges.values()), params)


def _spine(net: ShapedNet, box_of: list[str]) -> set[str]:
    """The boxes on the longest way from input to output: drawn in one straight column, so
    branches and skips stand beside it."""
    longest: list[int] = []
    for node in net.nodes:
        longest.append(1 + max((longest[p] for p in node.inputs), default=0))
    found, i = set(), net.output
    while True:
        found.add(box_of[i])
        if not net.nodes[i].inputs:
            return found
        i = max(net.nodes[i].inputs, key=lambda p: longest[p])


def _short(box: Box, boxes: tuple[Box, ...]) -> str:
    """`box.name` less the name parts that every box of its innermost frame shares."""
    if not box.cluster:
        return box.name
    names = [b.name.split(".") for b in boxes if b.cluster and b.cluster[-1] == box.cluster[-1]]
    shared = 0
    while all(len(n) > shared + 1 and n[shared] == names[0][shared] for n in names):
        shared += 1
    return ".".join(box.name.split(".")[shared:])


def _prefix(name: str, depth: int | None) -> str:
    return ".".join(name.split(".")[:depth]) if depth else name


def _frames(keys: list[str], depth: int | None) -> dict[str, tuple[str, ...]]:
    """The frames around each box: its name's first one and two parts (above `depth`), where
    that frame holds at least two boxes and not the same boxes as the frame around it."""
    chosen: dict[str, tuple[str, ...]] = {key: () for key in keys}
    for n in range(1, (min(2, depth - 1) if depth else 2) + 1):
        level = {key: ".".join(key.split(".")[:n]) for key in keys if key.count(".") >= n}
        inside: dict[str, set[str]] = {}
        for key, frame in level.items():
            inside.setdefault(frame, set()).add(key)
        for key, frame in level.items():
            around = chosen[key]
            same = bool(around) and inside[frame] == {k for k in keys if around[-1] in chosen[k]}
            if len(inside[frame]) >= 2 and not same:
                chosen[key] = (*around, frame)
    return chosen


def _box(net: ShapedNet, id: str, key: str, nodes: list[Node], frames: tuple[str, ...]) -> Box:
    params = sum(n.params for n in nodes)
    head = nodes[0]
    if head.op == "input":
        return Box(id, "input", dims(head.shape), 0, "input", frames)
    if key != head.name:  # a block
        counts = Counter(n.op for n in nodes)
        detail = " · ".join(f"{c} {op}" if c > 1 else op for op, c in counts.items())
        return Box(id, key, detail, params, "block", frames)
    detail = " · ".join([MERGES.get(head.op, _op(head)), *(_op(n) for n in nodes[1:])])
    kind = (
        "merge"
        if head.op in MERGES
        else "conv"
        if "conv" in head.op
        else "fc"
        if head.op == "fc"
        else "pool"
        if "pool" in head.op or head.op in ("gap", "gmp")
        else "other"
    )
    return Box(id, key, detail, params, kind, frames)


def _op(node: Node) -> str:
    """`conv 3x3/2, 64`, `maxpool 3x3/2`, `fc 1000`, `dropout 0.5`: the op and its numbers."""
    a = node.attrs
    text = node.op
    if "k" in a:
        text += " " + "x".join(map(str, _tuple(a["k"])))
        if set(_tuple(a.get("s", 1))) != {1}:
            text += f"/{_size(a['s'])}"
    if set(_tuple(a.get("d", 1))) != {1}:
        text += f" dilation {_size(a['d'])}"
    for attr in ("c", "n"):
        if attr in a:
            text += f", {a[attr]}" if "k" in a else f" {a[attr]}"
    if a.get("groups", 1) != 1:
        text += f", groups {a['groups']}"
    if "p" in a and node.op == "dropout":
        text += f" {a['p']}"
    return text


def _tuple(value: object) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _size(value: object) -> str:
    """A stride or dilation: `2` where every axis has the same, else `2x1`."""
    parts = _tuple(value)
    return str(parts[0]) if len(set(parts)) == 1 else "x".join(map(str, parts))


def _label(box: Box) -> list[str]:
    """The lines of a box: its name, what it does, its parameters."""
    if box.kind == "input":
        return [box.name, box.detail]
    base = box.short.rsplit(".", 1)[-1].rstrip("0123456789")
    if box.kind == "merge" and (base in MERGES or base in MERGES.values()):
        return ["", box.detail]  # "add · relu" says it all; the frame says where
    return [box.short, box.detail, f"{box.params:,} params" if box.params else ""]


# ---- text -------------------------------------------------------------------------------------


def to_dot(diagram: Diagram) -> str:
    """Graphviz DOT, top to bottom."""
    q = _dot_quote
    out = [
        "digraph net {",
        f"  graph [rankdir=TB, nodesep=0.3, ranksep=0.28, fontname=Helvetica, fontsize=12, "
        f"labelloc=t, label={q(diagram.title)}];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10, '
        'margin="0.12,0.05", color="#555555"];',
        '  edge [fontname=Helvetica, fontsize=8, color="#444444", arrowsize=0.6];',
    ]
    opened: list[str] = []
    for box in diagram.boxes:
        while opened and opened != list(box.cluster[: len(opened)]):
            opened.pop()
            out.append("  " * (len(opened) + 1) + "}")
        for frame in box.cluster[len(opened) :]:
            pad = "  " * (len(opened) + 1)
            shown = frame.removeprefix(f"{opened[-1]}.") if opened else frame
            label = f"{shown} · {diagram.frames[frame]:,} params"
            out.append(f"{pad}subgraph {q('cluster_' + frame)} {{")
            out.append(
                f'{pad}  label={q(label)}; style="rounded,dashed"; color="#999999"; '
                f"fontsize=10; labeljust=l;"
            )
            opened.append(frame)
        shape = ", shape=ellipse" if box.kind == "merge" else ""
        group = ", group=spine" if box.spine else ""
        out.append(
            "  " * (len(opened) + 1)
            + f"{box.id} [label={_dot_html(_label(box))}, fillcolor={q(COLOURS[box.kind])}"
            + f"{shape}{group}];"
        )
    out += ["  " * k + "}" for k in range(len(opened), 0, -1)]
    for e in diagram.edges:
        style = ', style=dashed, color="#8a8a8a"' if e.skip else ", weight=4"
        label = "" if e.skip else f"label={q(' ' + e.shape)}"
        out.append(f"  {e.src} -> {e.dst} [{label}{style}];".replace("[, ", "["))
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_html(lines: list[str]) -> str:
    """A Graphviz HTML-like label: the name bold, the parameters small."""
    name, detail, *rest = (html.escape(line, quote=False) for line in lines)
    parts = [f"<B>{name}</B>"] if name else []
    parts.append(detail)
    parts += [f'<FONT POINT-SIZE="8">{r}</FONT>' for r in rest if r]
    return "<" + "<BR/>".join(parts) + ">"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_mermaid(diagram: Diagram) -> str:
    """A Mermaid flowchart, top to bottom (GitHub and many Markdown viewers draw it)."""
    q = _mermaid_quote
    out = ["---", f"title: {q(diagram.title)}", "---", "flowchart TD"]
    opened: list[str] = []
    frame_ids = {f: f"f{k}" for k, f in enumerate(diagram.frames)}
    for box in diagram.boxes:
        while opened and opened != list(box.cluster[: len(opened)]):
            opened.pop()
            out.append("  " * (len(opened) + 1) + "end")
        for frame in box.cluster[len(opened) :]:
            shown = frame.removeprefix(f"{opened[-1]}.") if opened else frame
            label = f"{shown} · {diagram.frames[frame]:,} params"
            out.append("  " * (len(opened) + 1) + f"subgraph {frame_ids[frame]}[{q(label)}]")
            opened.append(frame)
        text = q("<br/>".join(line for line in _label(box) if line))
        shape = f"(({text}))" if box.kind == "merge" else f"[{text}]"
        out.append("  " * (len(opened) + 1) + f"{box.id}{shape}")
    out += ["  " * k + "end" for k in range(len(opened), 0, -1)]
    for e in diagram.edges:
        out.append(f"  {e.src} -.-> {e.dst}" if e.skip else f"  {e.src} -->|{q(e.shape)}| {e.dst}")
    for kind, colour in COLOURS.items():
        out.append(f"  classDef {kind} fill:{colour},stroke:#555555")
    for kind in COLOURS:
        ids = [b.id for b in diagram.boxes if b.kind == kind]
        if ids:
            out.append(f"  class {','.join(ids)} {kind}")
    return "\n".join(out) + "\n"


def _mermaid_quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


# ---- pictures ---------------------------------------------------------------------------------


def graphviz() -> str | None:
    """The path of Graphviz's `dot`, or None where it is not installed."""
    return shutil.which("dot")


def render(dot_text: str, fmt: str) -> bytes:
    """`dot_text` rendered by Graphviz to `fmt` (svg or png)."""
    program = graphviz()
    if program is None:
        raise NetError(f"drawing {fmt.upper()} needs Graphviz's `dot` program", None, [INSTALL])
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetError(f"Graphviz could not draw the net: {error}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise NetError(f"Graphviz could not draw the net: {reason[0] if reason else 'no reason'}")
    return done.stdout


def draw(net: ShapedNet, path: str | Path, depth: int | None = None) -> Path:
    """Write `net`'s diagram to `path`, in the format its suffix names (.svg .png .dot .mmd)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT and suffix not in PICTURES:
        known = ", ".join([*TEXT, *PICTURES])
        raise NetError(f"cannot draw to '{path.name}': the name should end in one of {known}")
    diagram = layout(net, depth)
    if TEXT.get(suffix) == "mermaid":
        data = to_mermaid(diagram).encode()
    elif suffix in TEXT:
        data = to_dot(diagram).encode()
    else:
        data = render(to_dot(diagram), PICTURES[suffix])
    _write(path, data)
    return path


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all: a failed render never leaves half a picture."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as error:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise NetError(f"cannot write '{path}': {error.strerror or error}") from None
