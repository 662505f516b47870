"""A diagram as data (boxes, edges, frames) and as text: Graphviz DOT and Mermaid.

Written by `draw.py`, which lays a shaped net out as a `Diagram`; read by `draw.py` again to
render pictures through Graphviz, and by `table.py` for notebooks. Nothing here knows about nets:
a box is a name, what it does, its parameters and the frames it sits in. Each frame is written
once, holding its boxes and inner frames, whatever order the boxes come in. Both texts draw top
to bottom; skips are dashed and unlabelled (their shape is their neighbour's).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Union

MERGES = {"add": "add", "concat": "concat", "mul": "scale", "mean": "mean", "sub": "sub"}
COLOURS = {
    "input": "#fff3b0",
    "conv": "#d6e6f7",
    "fc": "#fde0c5",
    "pool": "#dcefd5",
    "merge": "#eeeeee",
    "block": "#e6def5",
    "other": "#f7f7f7",
}


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


Item = Union["Box", tuple[str, list["Item"]]]


def nest(diagram: Diagram) -> list[Item]:
    """The boxes as a tree of frames, each frame once, in the order it first appears."""
    root: list[Item] = []
    children: dict[tuple[str, ...], list[Item]] = {(): root}
    for box in diagram.boxes:
        for k in range(1, len(box.cluster) + 1):
            path = box.cluster[:k]
            if path not in children:
                children[path] = []
                children[path[:-1]].append((path[-1], children[path]))
        children[box.cluster].append(box)
    return root


def _frame_label(diagram: Diagram, frame: str, outer: str) -> str:
    shown = frame.removeprefix(f"{outer}.") if outer else frame
    return f"{shown} · {diagram.frames[frame]:,} params"


def _label(box: Box) -> list[str]:
    """The lines of a box: its name, what it does, its parameters."""
    if box.kind == "input":
        return [box.name, box.detail]
    base = box.short.rsplit(".", 1)[-1].rstrip("0123456789")
    if box.kind == "merge" and (base in MERGES or base in MERGES.values()):
        return ["", box.detail]  # "add · relu" says it all; the frame says where
    return [box.short, box.detail, f"{box.params:,} params" if box.params else ""]


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

    def write(items: list[Item], outer: str, pad: str) -> None:
        for item in items:
            if isinstance(item, tuple):
                frame, inner = item
                out.append(f"{pad}subgraph {q('cluster_' + frame)} {{")
                out.append(
                    f"{pad}  label={q(_frame_label(diagram, frame, outer))}; "
                    'style="rounded,dashed"; color="#999999"; fontsize=10; labeljust=l;'
                )
                write(inner, frame, pad + "  ")
                out.append(f"{pad}}}")
                continue
            shape = ", shape=ellipse" if item.kind == "merge" else ""
            group = ", group=spine" if item.spine else ""  # the main path drawn straight
            out.append(
                f"{pad}{item.id} [label={_dot_html(_label(item))}, "
                f"fillcolor={q(COLOURS[item.kind])}{shape}{group}];"
            )

    write(nest(diagram), "", "  ")
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
    frame_ids = {f: f"f{k}" for k, f in enumerate(diagram.frames)}

    def write(items: list[Item], outer: str, pad: str) -> None:
        for item in items:
            if isinstance(item, tuple):
                frame, inner = item
                label = q(_frame_label(diagram, frame, outer))
                out.append(f"{pad}subgraph {frame_ids[frame]}[{label}]")
                write(inner, frame, pad + "  ")
                out.append(f"{pad}end")
                continue
            text = q("<br/>".join(line for line in _label(item) if line))
            out.append(f"{pad}{item.id}" + (f"(({text}))" if item.kind == "merge" else f"[{text}]"))

    write(nest(diagram), "", "  ")
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
