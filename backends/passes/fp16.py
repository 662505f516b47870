"""Precision as the compiler's job: an fp32 model from `onnx.py` -> the same graph in fp16.

A pass over the emitted ONNX model (after `to_onnx`, before anything runs it). TensorRT 10
deprecated and TensorRT 11 removed the builder's FP16 flag (networks are strongly typed), so the
precision must be in the graph itself. What this pass chooses:

- weights, activations and arithmetic in fp16; the model's `input` and `output` stay fp32, with a
  Cast after the input and before the output, so callers feed and read the same arrays;
- Softmax and LRN stay in fp32 (a Cast on each side): both exponentiate or sum squares, where
  fp16's 10-bit mantissa and 65,504 ceiling cost accuracy; every other op is fp16;
- a weight beyond fp16's range is refused with its name, rather than silently becoming inf.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netdsl.source import NetError

# The precision of every ONNX op type netdsl's emitters produce (tests/test_op_table.py checks
# that each one is here, so a new op must decide): fp32 for the ops that exponentiate or sum
# squares, fp16 for the rest. An op type not listed (from another tool's model) runs in fp16.
PRECISION = {
    **dict.fromkeys(("Softmax", "LRN"), "fp32"),
    **dict.fromkeys(
        (
            "Abs",
            "Add",
            "AveragePool",
            "BatchNormalization",
            "Concat",
            "Constant",
            "Conv",
            "ConvTranspose",
            "Dropout",
            "Flatten",
            "Gemm",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "Identity",
            "LeakyRelu",
            "MatMul",
            "MaxPool",
            "Mean",
            "Mul",
            "Pad",
            "ReduceMax",
            "ReduceMean",
            "Reshape",
            "Resize",
            "Slice",
            "Sub",
            "Transpose",
            "Relu",
            "Sigmoid",
            "Sum",
            "Tanh",
            "Unsqueeze",
        ),
        "fp16",
    ),
}
KEPT_FP32 = frozenset(op for op, precision in PRECISION.items() if precision == "fp32")
PRECISIONS = ("fp32", "fp16")
FP16_MAX = float(np.finfo(np.float16).max)


def apply_precision(
    model: onnx.ModelProto, precision: str, data_inputs: Iterable[str] | None = None
) -> onnx.ModelProto:
    """The model in `precision` (`fp32` returns it unchanged); never mutates its argument.
    `data_inputs` are the graph inputs that carry data (default: those that are not
    initializers)."""
    if precision not in PRECISIONS:
        raise NetError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    if precision == "fp32":
        return model
    return to_fp16(model, data_inputs)


def to_fp16(model: onnx.ModelProto, data_inputs: Iterable[str] | None = None) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    weights = {t.name for t in graph.initializer}
    inputs = (
        set(data_inputs)
        if data_inputs is not None
        else {i.name for i in graph.input if i.name not in weights}
    )
    outputs = {o.name for o in graph.output}
    # Resize's scales are float32 whatever the data's type (ONNX's type constraint)
    scales = {n.input[2] for n in graph.node if n.op_type == "Resize" and len(n.input) > 2}
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in scales:
            tensor.CopyFrom(_half(numpy_helper.to_array(tensor), tensor.name))
    nodes: list[onnx.NodeProto] = [
        helper.make_node(
            "Cast", [name], [f"{name}.fp16"], name=f"{name}.cast_fp16", to=TensorProto.FLOAT16
        )
        for name in sorted(inputs)
    ]
    for node in graph.node:
        node = _rename(node, {name: f"{name}.fp16" for name in inputs})
        if node.op_type == "Constant" and node.output[0] not in scales:
            _half_constant(node)
        if node.op_type in KEPT_FP32:
            nodes.extend(_in_fp32(node, outputs))
            continue
        ends = [o for o in node.output if o in outputs]
        if ends:
            renamed = {o: f"{o}.fp16" for o in ends}
            node.output[:] = [renamed.get(o, o) for o in node.output]
            nodes.append(node)
            nodes.extend(
                helper.make_node(
                    "Cast", [renamed[o]], [o], name=f"{o}.cast_fp32", to=TensorProto.FLOAT
                )
                for o in ends
            )
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; shape inference re-derives them
    helper.set_model_props(
        out,
        {
            **{p.key: p.value for p in out.metadata_props},
            "precision": "fp16 (softmax and lrn in fp32)",
        },
    )
    return out


def _half(array: np.ndarray, name: str) -> onnx.TensorProto:
    big = float(np.max(np.abs(array))) if array.size else 0.0
    if big > FP16_MAX:
        raise NetError(f"weight {name} holds {big:.3g}, beyond fp16's range (±{FP16_MAX:,.0f})")
    return numpy_helper.from_array(array.astype(np.float16), name)


def _half_constant(node: onnx.NodeProto) -> None:
    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
            attr.t.CopyFrom(_half(numpy_helper.to_array(attr.t), attr.t.name))


def _rename(node: onnx.NodeProto, names: dict[str, str]) -> onnx.NodeProto:
    node.input[:] = [names.get(i, i) for i in node.input]
    return node


def _in_fp32(node: onnx.NodeProto, outputs: set[str]) -> list[Any]:
    """A node kept in fp32: Cast its inputs up and its outputs back down (not the model's)."""
    ups = [
        helper.make_node(
            "Cast", [i], [f"{i}.fp32"], name=f"{node.name}.cast_in{k}", to=TensorProto.FLOAT
        )
        for k, i in enumerate(node.input)
        if i
    ]
    node.input[:] = [f"{i}.fp32" if i else i for i in node.input]
    downs = []
    for k, o in enumerate(node.output):
        if o and o not in outputs:
            node.output[k] = f"{o}.fp32"
            downs.append(
                helper.make_node(
                    "Cast", [f"{o}.fp32"], [o], name=f"{node.name}.cast_out", to=TensorProto.FLOAT16
                )
            )
    return [*ups, node, *downs]
