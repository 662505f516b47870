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

from netdsl.fields import Field
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


def _rf(rf: Field) -> str:
    # per spatial axis, once where they agree; a net whose input is a vector has none ("-")
    sizes = [str(n) for n in rf.size]
    return "-" if not sizes else sizes[0] if len(set(sizes)) == 1 else "x".join(sizes)


def _stride(rf: Field) -> str:
    strides = [f"{s:g}" for s in _strides(rf)]
    return "-" if not strides else strides[0] if len(set(strides)) == 1 else "x".join(strides)


def _strides(rf: Field) -> tuple[float, ...]:
    # strides multiply: 40 strides of 2^31 make a jump no float holds (shown as inf)
    return tuple(float(s) if abs(s) < 2**1000 else math.inf for s in rf.stride)


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


def spatial_fields(net: ShapedNet) -> dict[str, Node]:
    """Per input with spatial axes: the last node with a spatial output that depends on it
    (in a net of several inputs the last such node may see only one of them)."""
    found: dict[str, Node] = {}
    for n in reversed(net.nodes):
        if len(n.shape) > 1 and math.prod(n.shape[1:]) > 1:
            for name, rf in n.fields.items():
                if rf.reach and name not in found:
                    found[name] = n
    return {name: found[name] for name in net.input_names if name in found}


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    op: str
    kernel: str  # the layer's own window and step ("" for layers without one, and blocks)
    stride: str
    output: str
    params: int
    macs: int
    rf: str  # RF/stride on the first input the layer depends on (`row_fields`: on each)
    memory: int
    note: str


def _groups(net: ShapedNet, depth: int | None) -> dict[str, list[Node]]:
    """The layers of each row: one each, or the blocks of the first `depth` name components."""
    groups: dict[str, list[Node]] = {}
    for node in net.nodes:
        key = ".".join(node.name.split(".")[:depth]) if depth else node.name
        groups.setdefault(key, []).append(node)
    return groups


def rows(net: ShapedNet, depth: int | None = None) -> list[Row]:
    """One row per layer, or per block of the first `depth` name components."""
    out: list[Row] = []
    for key, members in _groups(net, depth).items():
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
                f"{_rf(last.rf)}/{_stride(last.rf)}",
                sum(4 * math.prod(m.shape) for m in members),
                note,
            )
        )
    return out


def row_fields(net: ShapedNet, depth: int | None = None) -> list[dict[str, str]]:
    """Beside each of `rows`: RF/stride per input the row's (last) layer depends on, keyed by
    the input's name, for a net of several inputs; a net of one input has only `Row.rf` ([])."""
    if len(net.inputs) < 2:
        return []
    return [
        {name: f"{_rf(rf)}/{_stride(rf)}" for name, rf in members[-1].fields.items()}
        for members in _groups(net, depth).values()
    ]


def _window(node: Node, key: str) -> str:
    value = node.attrs.get(key)
    return "x".join(map(str, value)) if isinstance(value, tuple) else ""


def table(net: ShapedNet, depth: int | None = None) -> str:
    body = rows(net, depth)
    # several inputs: a field column per input, blank where a layer does not depend on it
    names = net.input_names if len(net.inputs) > 1 else ()
    seen = row_fields(net, depth) or [{} for _ in body]
    fields = tuple(f"RF/stride {name}" for name in names) or ("RF/stride",)
    header = ("layer", "op", "kernel", "stride", "output", "params", "MACs", *fields, "memory")
    cells = [
        (
            r.name,
            r.op,
            r.kernel,
            r.stride,
            r.output,
            f"{r.params:,}",
            f"{r.macs:,}",
            *((f.get(name, "") for name in names) if names else (r.rf,)),
            mib(r.memory),
        )
        for r, f in zip(body, seen, strict=True)
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {5, 6, len(header) - 1}

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
    merged = ", the largest over all paths" if net.merged_paths else ""
    merged = ", the union of all paths" if net.wider_union else merged
    if len(net.inputs) > 1:
        seen = [
            f"{_rf(node.fields[name])} pixels of {name} at {node.name} "
            f"(stride {_stride(node.fields[name])})"
            for name, node in spatial_fields(net).items()
        ]
        if seen:
            lines.append(f"receptive field: {'; '.join(seen)}{merged.replace(',', ';')}")
    elif rf is not None:
        lines.append(
            f"receptive field: {_rf(rf.rf)} pixels at {rf.name} (stride {_stride(rf.rf)}{merged})"
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
                "fields": {
                    name: {"rf": list(rf.size), "rf_stride": list(_strides(rf))}
                    for name, rf in n.fields.items()
                },
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
            "fields": {
                name: {
                    "layer": node.name,
                    "rf": list(node.fields[name].size),
                    "rf_stride": list(_strides(node.fields[name])),
                }
                for name, node in spatial_fields(net).items()
            },
        },
        "defaults_used": list(net.defaults_used),
        "warnings": [w.render() for w in net.warnings],
        "conventions": CONVENTIONS,
        **({"blocks": _blocks(net, depth)} if depth else {}),
    }


def _blocks(net: ShapedNet, depth: int) -> list[dict[str, Any]]:
    blocks = [asdict(r) for r in rows(net, depth)]
    if len(net.inputs) > 1:  # a net of one input has only `rf`
        for block, fields in zip(blocks, row_fields(net, depth), strict=True):
            block["fields"] = fields
    return blocks


def _ints(value: Any) -> list[int] | None:
    return list(value) if isinstance(value, tuple) else None
