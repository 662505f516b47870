"""What TensorRT's ONNX parser accepts, as data, and a static check of netdsl's graphs against it.

A consumer at the end of the pipeline: it takes the ONNX model `onnx.py` emits for a shaped net
(and, with `precision.py`, its fp16 form) and checks every node's op, attributes, data types and
the opset against the table below, without TensorRT (which cannot be installed here). Each
problem is a `netdsl.Diagnostic` like every other error: it names the layer and points at the
`.net` text it came from, found through the emitter's node -> span map (never by reading the
doc_strings back).

Source of the table: onnx-tensorrt's `docs/operators.md` — the per-operator support matrix
(supported types and restrictions) as published for TensorRT 8.4, and the opset range stated for
TensorRT 10.0 ("opset 9 to opset 20"). Only the ops netdsl can emit are listed; an op missing
from the table is reported as unsupported. Restrictions encoded from that document: Conv and
ConvTranspose are 2D/3D with weights as initializers; pooling is 2D/3D and MaxPool has no
`Indices` output; QuantizeLinear/DequantizeLinear need zero points of 0; Unsqueeze and Reshape
need constant axes/shapes. Two rules follow from TensorRT building inference engines only:
BatchNormalization in training mode (training_mode=1, or running-statistics outputs) and Dropout
with a mask output are refused — compile the inference form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx
from onnx import TensorProto

from netdsl.backends.onnx.emit import emit, locate
from netdsl.shapes import ShapedNet
from netdsl.source import Diagnostic, Span

SOURCE = "onnx-tensorrt docs/operators.md (TensorRT 8.4 matrix; TensorRT 10.0 opset range)"
OPSETS = range(9, 21)
MAX_IR_VERSION = 10

F32, F16, I8, I32, I64, BOOL = (
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.INT8,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.BOOL,
)
FLOATS = frozenset({F32, F16})

# op -> the data types TensorRT takes for its main input
SUPPORTED: dict[str, frozenset[int]] = {
    "Abs": frozenset({F32, F16, I32}),
    "Add": frozenset({F32, F16, I32}),
    "AveragePool": frozenset({F32, F16, I8}),
    "BatchNormalization": FLOATS,
    "Cast": frozenset({F32, F16, I32, I8, BOOL}),
    "Concat": frozenset({F32, F16, I32, I8, BOOL}),
    "Constant": frozenset({F32, F16, I32, I8, BOOL, I64}),
    "Conv": frozenset({F32, F16, I8}),
    "ConvTranspose": frozenset({F32, F16, I8}),
    "DequantizeLinear": frozenset({I8}),
    "Dropout": FLOATS,
    "Flatten": frozenset({F32, F16, I32, BOOL}),
    "Gemm": frozenset({F32, F16, I8}),
    "GlobalAveragePool": frozenset({F32, F16, I8}),
    "GlobalMaxPool": frozenset({F32, F16, I8}),
    "Identity": frozenset({F32, F16, I32, I8, BOOL}),
    "LeakyRelu": frozenset({F32, F16, I8}),
    "LRN": FLOATS,
    "MatMul": frozenset({F32, F16, I8}),
    "Pad": frozenset({F32, F16, I32, I8}),
    "ReduceMax": frozenset({F32, F16, I32}),
    "ReduceMean": frozenset({F32, F16, I32}),
    "Resize": frozenset({F32, F16, I8}),
    "Slice": frozenset({F32, F16, I32, I8, BOOL}),
    "Transpose": frozenset({F32, F16, I32, I8, BOOL}),
    "MaxPool": frozenset({F32, F16, I8}),
    "Mean": frozenset({F32, F16, I32}),
    "Mul": frozenset({F32, F16, I32}),
    "QuantizeLinear": FLOATS,
    "Relu": frozenset({F32, F16, I8}),
    "Reshape": frozenset({F32, F16, I32, I8, BOOL}),
    "Sigmoid": frozenset({F32, F16, I8}),
    "Softmax": FLOATS,
    "Sub": frozenset({F32, F16, I32}),
    "Sum": frozenset({F32, F16, I32}),
    "Tanh": frozenset({F32, F16, I8}),
    "Unsqueeze": frozenset({F32, F16, I32, I8, BOOL}),
}


def problem(node: str, message: str, span: Span | None = None) -> Diagnostic:
    """One thing TensorRT would refuse, as a diagnostic like every other error: the ONNX node
    (the netdsl layer's name) and, where known, the `.net` text it came from."""
    return Diagnostic(f"{node}: {message} (TensorRT)", span)


def check_model(
    model: onnx.ModelProto,
    weights: Iterable[str] = (),
    spans: Mapping[str, Span] | None = None,
) -> list[Diagnostic]:
    """Every way `model` falls outside what TensorRT's ONNX parser takes; `weights` names
    graph inputs that stand for initializers (see `structure`); `spans` maps ONNX node names to
    their text (`emit`'s map, or `layer_spans(net)`), so each problem points at its layer."""
    problems: list[Diagnostic] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset not in OPSETS:
        problems.append(problem("model", f"opset {opset} is outside {OPSETS[0]}-{OPSETS[-1]}"))
    if model.ir_version > MAX_IR_VERSION:
        problems.append(problem("model", f"IR version {model.ir_version} > {MAX_IR_VERSION}"))
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *graph.input, *graph.output]
    }
    constant = {t.name for t in graph.initializer} | set(weights)
    constant |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    # explicit quantization: a DequantizeLinear of a constant is a constant (QDQ weights)
    constant |= {
        n.output[0]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in constant
    }
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        span = locate(spans, node.name) if spans else None
        problems.extend(problem(node.name, m, span) for m in _node(node, types, constant))
    return problems


def _node(node: onnx.NodeProto, types: dict[str, int], constant: set[str]) -> Iterable[str]:
    op = node.op_type
    if op not in SUPPORTED:
        yield f"the ONNX op {op} is not in TensorRT's supported-operator list"
        return
    dtype = types.get(node.input[0]) if node.input else None
    if dtype is not None and dtype not in SUPPORTED[op]:
        yield f"{op} does not take {TensorProto.DataType.Name(dtype)} inputs"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if op in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] not in constant:
        yield f"{op} weights must be an initializer"
    # 1-D windows are taken too: onnx-tensorrt's importers of Conv, ConvTranspose and the pools
    # unsqueeze an N x C x L tensor to N x C x L x 1 and squeeze the result (builtin_op_importers)
    pooled = op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool")
    if pooled and len(attrs.get("kernel_shape", [0, 0])) not in (1, 2, 3):
        yield f"{op} must be 1D, 2D or 3D"
    if op == "MaxPool":
        if len(node.output) > 1:
            yield "MaxPool's Indices output is not supported"
        if any(d != 1 for d in attrs.get("dilations", [])):
            yield "MaxPool dilations must be 1"
    if op == "BatchNormalization" and (attrs.get("training_mode", 0) or len(node.output) > 1):
        yield (
            "batch norm in training mode: TensorRT builds inference engines (compile the "
            "inference form)"
        )
    if op == "Dropout" and (len(node.output) > 1 or len(node.input) > 2):
        yield "dropout in training mode (a mask or training_mode): compile the inference form"
    quant = op in ("QuantizeLinear", "DequantizeLinear")
    if quant and len(node.input) > 2 and node.input[2] not in constant:
        yield f"{op} zero point must be a constant 0"
    if op in ("Unsqueeze", "Reshape") and len(node.input) > 1 and node.input[1] not in constant:
        yield f"{op} axes/shape must be constant"


def structure(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """The model without its weight bytes: each initializer becomes a typed graph input of the
    same shape. The check reads types and shapes only, and a VGG's 500 MB would cost seconds."""
    light = onnx.ModelProto()
    light.ir_version, light.producer_name = model.ir_version, model.producer_name
    light.opset_import.extend(model.opset_import)
    light.graph.name = model.graph.name
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    for t in model.graph.initializer:
        light.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    return light, {t.name for t in model.graph.initializer}


def check_nets(nets: Iterable[ShapedNet]) -> list[Diagnostic]:
    """Compile each shaped net as it would be deployed (inference form, fp32 and fp16) and
    check both graphs. The weights are zeros that take no memory (only types and shapes
    matter here), and the fp16 pass runs on the weightless structure."""
    import numpy as np

    from netdsl.backends.passes.fp16 import apply_precision

    problems: list[Diagnostic] = []
    for net in nets:
        zeros = {
            f"{n.name}.{w.name}": np.broadcast_to(np.float32(0), w.shape)
            for n in net.nodes
            for w in n.weights
        }
        emitted = emit(net, mode="inference", weights=zeros or None)
        light, weights = structure(emitted.model)
        for graph in (light, apply_precision(light, "fp16", data_inputs=list(net.input_names))):
            found = check_model(graph, weights, emitted.spans)
            problems.extend(p for p in found if p not in problems)
    return problems
