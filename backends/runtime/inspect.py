"""Any ONNX file -> a summary table: per-node output shapes, parameters and multiply-adds.

Beside `ort.py` in the runtime room: it reads an `.onnx` file, netdsl's or anyone's, without
running it. Shapes come from `onnx.shape_inference` (the oracle the ONNX backend is tested
against), parameters from the initializers, multiply-adds from the shapes of Conv,
ConvTranspose, Gemm and MatMul, counted as netdsl counts them (one per weight use, biases
excluded), so a model compiled from a net agrees exactly with `netdsl summary NET`. The table is
the one `netdsl.summary(net)` returns (`netdsl.table.Table`).

Conventions where an ONNX graph says more than a net: batch-norm mean and variance are buffers,
not parameters (as in netdsl); the quantised weights and biases of a QDQ model are parameters,
its scales and zero points and any other integer initializer (shapes, axes) constants; a symbolic
dimension in first place (the batch, `N`) counts as 1, so the figures are per image for a
dynamic-batch model and per run for a fixed-batch one. onnx-tool counts Conv, Gemm and MatMul
the same way; for ConvTranspose it multiplies the output volume by the kernel volume, which
overcounts a strided one: here it is the input volume, as netdsl and PyTorch count.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from netdsl.backends.runtime.ort import read_model
from netdsl.source import NetError
from netdsl.table import Table

Dims = list[int | str]
FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
BUFFERS = {"BatchNormalization": (3, 4)}  # running mean and variance
CONSTANT_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}  # scales, zero points


def summarise_onnx(path: str | Path) -> Table:
    """The summary of the ONNX model at `path`, or a NetError if it is not one."""
    path = Path(path)
    model = _read(path)
    graph = model.graph
    shapes, note = _shapes(model)
    initializers = {t.name: t for t in graph.initializer}
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    buffers = 0
    for index, node in enumerate(graph.node):
        params = 0
        for k, name in enumerate(node.input):
            tensor = initializers.get(name)
            if tensor is None or name in seen:
                continue
            seen.add(name)
            size = math.prod(tensor.dims)
            if k in BUFFERS.get(node.op_type, ()):
                buffers += size
            elif node.op_type == "DequantizeLinear" and k == 0:
                params += size  # a quantised weight (int8) or bias (int32) is still learned
            elif tensor.data_type in FLOATS and k not in CONSTANT_INPUTS.get(node.op_type, ()):
                params += size
        rows.append(
            {
                "name": node.name or f"#{index}",
                "op": node.op_type,
                "output": ", ".join(_dims(shapes.get(o)) for o in node.output if o),
                "params": params,
                "macs": macs(node, shapes),
            }
        )
    known = [r["macs"] for r in rows if r["macs"] is not None]
    unknown = len(rows) - len(known)
    total_macs = sum(known)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    notes = [
        "inputs: " + "; ".join(f"{v.name} {_dims(shapes.get(v.name))}" for v in _inputs(graph)),
        "outputs: " + "; ".join(f"{v.name} {_dims(shapes.get(v.name))}" for v in graph.output),
        "MACs = multiply-adds of Conv, ConvTranspose, Gemm and MatMul, one per weight use, "
        "biases excluded; a symbolic first dimension (the batch) counts as 1. Params are "
        "learned initializers; batch-norm mean and variance are buffers.",
    ]
    if unknown:
        notes.append(f"{unknown} node(s) of those kinds have shapes inference could not fix")
    if note:
        notes.append(note)
    producer = f", from {model.producer_name} {model.producer_version}".rstrip()
    return Table(
        f"{path.name}: graph {graph.name or '(unnamed)'}, opset {opsets}{producer}",
        ("name", "op", "output", "params", "macs"),
        tuple(rows),
        {
            "nodes": len(rows),
            "params": sum(r["params"] for r in rows),
            "buffers": buffers,
            "macs": total_macs,
            "flops": 2 * total_macs,
        },
        tuple(notes),
    )


def _read(path: Path) -> onnx.ModelProto:
    """The model, refusing what is not one: protobuf reads many byte strings (an empty file,
    some text) as an empty message without complaint."""
    if path.is_dir():
        raise NetError(f"'{path}' is a folder, not an ONNX model")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(64)
        text = head.decode("utf-8", "replace")
        if head and all(c.isprintable() or c.isspace() for c in text):  # a model opens with a tag
            first = text.strip().splitlines()[0][:40] if text.strip() else ""
            raise NetError(f"'{path}' is not an ONNX model: it starts with text ({first!r})")
    model = read_model(path)  # a missing file or a protobuf error is a NetError there
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise NetError(f"'{path}' is not an ONNX model (no graph, opset or IR version in it)")
    return model


def _shapes(model: onnx.ModelProto) -> tuple[dict[str, Dims], str]:
    """Every tensor's shape that onnx.shape_inference can find; a note where it failed."""
    note = ""
    try:
        inferred = onnx.shape_inference.infer_shapes(_skeleton(model), data_prop=True)
    except Exception as error:  # a custom op or a malformed graph: keep the declared shapes
        inferred, note = model, f"shape inference failed ({str(error).splitlines()[0][:120]})"
    g = inferred.graph
    shapes: dict[str, Dims] = {t.name: list(t.dims) for t in g.initializer}
    for value in [*g.input, *g.value_info, *g.output]:
        t = value.type.tensor_type
        if t.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in t.shape.dim
            ]
    return shapes, note


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model less the data of its large initializers: inference needs only their shapes,
    and copying a few hundred MB of weights into the inference engine is most of its time."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    g = model.graph
    skeleton.graph.name = g.name
    for part in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(skeleton.graph, part).extend(getattr(g, part))
    for tensor in g.initializer:
        if math.prod(tensor.dims) <= 1024:  # shape and axes constants, read by data propagation
            skeleton.graph.initializer.append(tensor)
        else:
            skeleton.graph.initializer.add(
                name=tensor.name, data_type=tensor.data_type
            ).dims.extend(tensor.dims)
    return skeleton


def _inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in initializers]


def _dims(shape: Dims | None) -> str:
    if shape is None:
        return "?"
    return "x".join(map(str, shape)) if shape else "scalar"


def _volume(shape: Dims | None) -> int | None:
    """Elements of one run, a symbolic first dimension (the batch) counted as 1."""
    if shape is None:
        return None
    dims = [1 if i == 0 and not isinstance(d, int) else d for i, d in enumerate(shape)]
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    return math.prod(int(d) for d in dims)


def macs(node: onnx.NodeProto, shapes: dict[str, Dims]) -> int | None:
    """Multiply-adds of one node (0 for kinds that have none, None where shapes are unknown)."""
    op = node.op_type
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
        return 0
    a, w, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
    if op == "Conv":  # each output element: C_in/groups x kernel products
        kernel = _volume([1, *w[1:]]) if w else None
        outs = _volume(out)
        return None if kernel is None or outs is None else outs * kernel
    if op == "ConvTranspose":  # each input element: C_out/groups x kernel products
        kernel = _volume([1, *w[1:]]) if w else None
        ins = _volume(a)
        return None if kernel is None or ins is None else ins * kernel
    if op == "Gemm":  # (M x K) @ (K x N)
        trans_b = next((x.i for x in node.attribute if x.name == "transB"), 0)
        k = w[1 if trans_b else 0] if w and len(w) == 2 else None
    else:  # MatMul: (..., M, K) @ (..., K, N)
        k = a[-1] if a else None
    outs = _volume(out)
    return outs * k if isinstance(k, int) and outs is not None else None
