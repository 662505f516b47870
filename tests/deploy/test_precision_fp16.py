"""fp16 by the compiler: the graph holds half-precision weights and arithmetic, fp32 at its
edges and around softmax and LRN, and computes what the fp32 model computes.

Oracles: onnx.checker and shape inference on the rewritten graph, onnxruntime running the fp32
and fp16 models on the same random input (never zeros)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.passes.fp16 import apply_precision

# (zoo net, smaller input for speed or None, largest error relative to the largest output)
NETS = [
    ("lenet5", None, 1e-3),
    ("mnist_conv", None, 1e-3),
    ("alexnet", None, 5e-3),  # LRN kept in fp32
    ("resnet18", 64, 1e-2),
    ("googlenet", 64, 2e-2),
    ("densenet121", 64, 2e-2),
    ("se_resnet50", 64, 2e-2),
    ("fcn32s", 64, 2e-2),
]


def small(name: str, size: int | None) -> netdsl.ShapedNet:
    net = netdsl.load(name)
    if size is None:
        return net
    c, h, _ = net.input_shape
    text = net.span.source.text.replace(f"{c}x{h}x{h}", f"{c}x{size}x{size}")
    return netdsl.parse(text, net.span.source.name, name=name)


@pytest.mark.parametrize(("name", "size", "tolerance"), NETS)
def test_fp16_model_is_valid_and_agrees_with_fp32(
    name: str, size: int | None, tolerance: float
) -> None:
    net = small(name, size)
    fp32 = to_onnx(net, mode="inference", seed=1)
    fp16 = apply_precision(fp32, "fp16")
    onnx.checker.check_model(fp16, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(fp16, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(t.data_type != TensorProto.FLOAT for t in fp16.graph.initializer)
    for node in fp16.graph.node:
        if node.op_type in ("Softmax", "LRN"):
            assert all(types.get(i, TensorProto.FLOAT) == TensorProto.FLOAT for i in node.input)
        elif node.op_type in ("Conv", "Gemm", "ConvTranspose"):
            assert types[node.output[0]] == TensorProto.FLOAT16
    assert fp16.ByteSize() < 0.55 * fp32.ByteSize()
    x = np.random.default_rng(0).standard_normal((4, *net.input_shape), dtype=np.float32)
    y32 = ort.InferenceSession(fp32.SerializeToString()).run(None, {"input": x})[0]
    y16 = ort.InferenceSession(fp16.SerializeToString()).run(None, {"input": x})[0]
    assert y16.dtype == np.float32 and y16.shape == y32.shape
    assert np.abs(y16 - y32).max() / np.abs(y32).max() < tolerance
    assert (
        y16.reshape(4, y16.shape[1], -1).argmax(1) == y32.reshape(4, y32.shape[1], -1).argmax(1)
    ).mean() >= 0.75


def test_fp32_is_unchanged_and_the_input_model_is_not_mutated() -> None:
    model = to_onnx(netdsl.load("lenet5"), mode="inference")
    before = model.SerializeToString()
    assert apply_precision(model, "fp32") is model
    apply_precision(model, "fp16")
    assert model.SerializeToString() == before


@pytest.mark.parametrize(
    ("precision", "weights", "fragment"),
    [
        ("int4", None, "precision must be one of"),
        ("fp16", {"fc1.weight": np.full((10, 4), 1e6, np.float32)}, "beyond fp16's range"),
    ],
)
def test_refusals(precision: str, weights: dict[str, np.ndarray] | None, fragment: str) -> None:
    model = to_onnx(netdsl.parse("input 4\nfc(10)"), mode="inference", weights=weights)
    with pytest.raises(netdsl.NetError, match=fragment):
        apply_precision(model, precision)
