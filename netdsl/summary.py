"""Shaped net -> the table papers print, a one-line check result, or JSON.

A consumer at the end of the pipeline, like a backend: it reads a `ShapedNet` and formats it.
Counting conventions (stated under every table): multiply-adds (MACs) count convolutions,
transposed convolutions and fully connected layers, one per weight use, biases excluded;
FLOPs = 2 x MACs; parameters are trainable weights (batch-norm running statistics are buffers);
memory is float32, per image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from netdsl.rules import dims
from netdsl.shapes import Node, ShapedNet

CONVENTIONS = (
    "MACs = multiply-adds of conv, deconv and fc layers (biases, activations, pooling, "
    "batch norm and adds are not counted); FLOPs = 2 x MACs. Params are trainable weights; "
    "memory is float32 per image. RF = receptive field in input pixels (size, and stride "
    "between neighbouring outputs)."
)


def si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:g} "


def mib(n_bytes: float) -> str:
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MiB"
    return f"{n_bytes / 2**10:.1f} KiB"


def _rf(node: Node) -> str:
    # per spatial axis, once where they agree; a net whose input is a vector has none ("-")
    sizes = [str(n) for n in node.rf_size]
    return "-" if not sizes else sizes[0] if len(set(sizes)) == 1 else "x".join(sizes)


def _stride(node: Node) -> str:
    strides = [f"{s:g}" for s in node.rf_stride]
    return "-" if not strides else strides[0] if len(set(strides)) == 1 else "x".join(strides)


def check_line(net: ShapedNet) -> str:
    return f"{net.name}: {inputs(net)} -> {outputs(net)}, {net.params:,} params, {si(net.macs)}MACs"


def inputs(net: ShapedNet) -> str:
    """`3x224x224`, or `a 1x105x105, b 1x105x105` for a net with named inputs."""
    if len(net.inputs) == 1 and net.nodes[net.inputs[0]].name == "input":
        return dims(net.input_shape)
    return ", ".join(f"{net.nodes[i].name} {dims(net.nodes[i].shape)}" for i in net.inputs)


def outputs(net: ShapedNet) -> str:
    """`1000`, or `cls 9x14x14, box 36x14x14` for a net with named outputs."""
    if len(net.output_list) == 1 and net.output_list[0][0] == "output":
        return dims(net.output_shape)
    return ", ".join(f"{name} {dims(net.nodes[i].shape)}" for name, i in net.output_list)


def spatial_rf(net: ShapedNet) -> Node | None:
    """The last node with a spatial output: the receptive field papers quote."""
    spatial = [n for n in net.nodes if len(n.shape) > 1 and math.prod(n.shape[1:]) > 1]
    return spatial[-1] if spatial else None


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    op: str
    kernel: str  # the layer's own window and step ("" for layers without one, and blocks)
    stride: str
    output: str
    params: int
    macs: int
    rf: str
    memory: int
    note: str


def rows(net: ShapedNet, depth: int | None = None) -> list[Row]:
    """One row per layer, or per block of the first `depth` name components."""
    out: list[Row] = []
    groups: dict[str, list[Node]] = {}
    for node in net.nodes:
        key = ".".join(node.name.split(".")[:depth]) if depth else node.name
        groups.setdefault(key, []).append(node)
    for key, members in groups.items():
        last = members[-1]
        if len(members) == 1 and key == last.name:
            op, note = last.op, last.note
            kernel, stride = _window(last, "k"), _window(last, "s")
        else:
            op, note, kernel, stride = f"{len(members)} layers", "", "", ""
        out.append(
            Row(
                key,
                op,
                kernel,
                stride,
                dims(last.shape),
                sum(m.params for m in members),
                sum(m.macs for m in members),
                f"{_rf(last)}/{_stride(last)}",
                sum(4 * math.prod(m.shape) for m in members),
                note,
            )
        )
    return out


def _window(node: Node, key: str) -> str:
    value = node.attrs.get(key)
    return "x".join(map(str, value)) if isinstance(value, tuple) else ""


def table(net: ShapedNet, depth: int | None = None) -> str:
    body = rows(net, depth)
    header = ("layer", "op", "kernel", "stride", "output", "params", "MACs", "RF/stride", "memory")
    cells = [
        (
            r.name,
            r.op,
            r.kernel,
            r.stride,
            r.output,
            f"{r.params:,}",
            f"{r.macs:,}",
            r.rf,
            mib(r.memory),
        )
        for r in body
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {5, 6, 8}

    def line(values: tuple[str, ...]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(tuple("" for _ in header)).ljust(sum(widths) + 2 * (len(header) - 1)))
    several = "s" if len(net.inputs) > 1 else ""
    lines = [f"{net.name}: input{several} {inputs(net)}", rule, line(header), rule]
    for r, c in zip(body, cells, strict=True):
        lines.append(line(c) + (f"  # {r.note}" if r.note else ""))
    lines.append(rule)
    lines.extend(_totals(net))
    return "\n".join(lines)


def _totals(net: ShapedNet) -> list[str]:
    rf = spatial_rf(net)
    lines = [
        f"output{'s' if len(net.output_list) > 1 else ''} {outputs(net)}; "
        f"{len(net.nodes) - len(net.inputs)} layers",
        f"params: {net.params:,} ({mib(4 * net.params)})"
        + (f"; buffers: {net.buffers:,} (batch-norm running statistics)" if net.buffers else ""),
        f"multiply-adds: {net.macs:,} MACs ({si(net.macs)}MACs = {si(2 * net.macs)}FLOPs)",
        f"activations: {net.activations:,} values ({mib(4 * net.activations)} per image)",
    ]
    if rf is not None:
        merged = ", the largest over all paths" if net.merged_paths else ""
        merged = ", the union of all paths" if net.wider_union else merged
        lines.append(
            f"receptive field: {_rf(rf)} pixels at {rf.name} (stride {_stride(rf)}{merged})"
        )
    lines.append(f"conventions: {CONVENTIONS}")
    return lines


def to_json(net: ShapedNet, depth: int | None = None) -> dict[str, Any]:
    rf = spatial_rf(net)
    return {
        "net": net.name,
        "input": list(net.input_shape),  # the first input's and output's: see inputs, outputs
        "output": list(net.output_shape),
        "inputs": [
            {"name": net.nodes[i].name, "shape": list(net.nodes[i].shape)} for i in net.inputs
        ],
        "outputs": [
            {"name": name, "shape": list(net.nodes[i].shape)} for name, i in net.output_list
        ],
        "layers": [
            {
                "name": n.name,
                "op": n.op,
                "kernel": _ints(n.attrs.get("k")),
                "stride": _ints(n.attrs.get("s")),
                "inputs": [net.nodes[i].name for i in n.inputs],
                "output": list(n.shape),
                "params": n.params,
                "macs": n.macs,
                "rf": list(n.rf_size),
                "rf_stride": list(n.rf_stride),
                "memory": 4 * math.prod(n.shape),
                **({"note": n.note} if n.note else {}),
            }
            for n in net.nodes
        ],
        "total": {
            "params": net.params,
            "buffers": net.buffers,
            "macs": net.macs,
            "flops": 2 * net.macs,
            "activations": net.activations,
            "rf": list(rf.rf_size) if rf else None,
            "rf_max_over_paths": net.merged_paths,
        },
        "defaults_used": list(net.defaults_used),
        "warnings": [w.render() for w in net.warnings],
        "conventions": CONVENTIONS,
        **({"blocks": [asdict(r) for r in rows(net, depth)]} if depth else {}),
    }


def _ints(value: Any) -> list[int] | None:
    return list(value) if isinstance(value, tuple) else None
