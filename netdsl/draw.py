"""Shaped net -> a diagram (`diagram.Diagram`: boxes, edges, frames), and the diagram written
as DOT or Mermaid text (`diagram.py`) or rendered to SVG or PNG by Graphviz's `dot`.

A consumer at the end of the pipeline, like `summary.py`, whose depth grouping it shares: at
`depth` N a box stands for every layer whose name begins with the same N parts, as a row does in
`netdsl summary --depth N`. Without a depth every layer is drawn, but a shape-preserving op that
only follows one layer (bn, relu, dropout...) is written into that layer's box, so a
conv -> bn -> relu reads as one box. Edges carry the shape that flows along them; an edge that
leaves a box with another way out and lands on an add, concat or scale is a skip (residual,
dense, squeeze-excitation), drawn dashed beside the main path, which is the longest way from
input to output and is drawn straight. Boxes of one block sit in a labelled frame with the
block's parameters. Rendering runs `dot` in a subprocess; nothing else here needs Graphviz.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from netdsl.diagram import MERGES, Box, Diagram, Edge, to_dot, to_mermaid
from netdsl.rules import dims
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError
from netdsl.summary import si

__all__ = ["Box", "Diagram", "Edge", "draw", "graphviz", "layout", "render", "to_dot", "to_mermaid"]

FOLDED = {"bn", "relu", "leakyrelu", "sigmoid", "tanh", "softmax", "dropout", "identity", "lrn"}
TEXT = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}
PICTURES = {".svg": "svg", ".png": "png"}
INSTALL = (
    "install Graphviz, which provides `dot`: apt-get install graphviz (Debian, Ubuntu), "
    "brew install graphviz (macOS) or conda install graphviz; .dot and .mmd files need nothing"
)


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


# ---- text -------------------------------------------------------------------------------------


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
