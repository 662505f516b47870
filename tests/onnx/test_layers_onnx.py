"""The layers of rules_shape.py against PyTorch: shapes and parameter counts, the ONNX model's
outputs (onnxruntime) with identical weights, and the native training engine's gradients
(`train/reverse.backward` over the emitted nodes) against autograd."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import netdsl
from netdsl.backends.onnx import emit, weights
from netdsl.backends.passes import fp16
from netdsl.backends.passes.int8 import quantize_int8
from netdsl.backends.tensorrt import support
from netdsl.backends.train.grad import GRADIENTS
from netdsl.backends.train.reverse import Grad, backward, constants, shapes_of

T = torch.Tensor


def _local(k: int, s: int, p: int) -> Callable[..., T]:
    def f(x: T, w: T, b: T) -> T:  # w: [positions, c_in*k*k, c_out], b: [c_out, *outs]
        cols = F.unfold(x, k, padding=p, stride=s)  # [N, c_in*k*k, positions]
        y = torch.einsum("nkp,pkc->ncp", cols, w)
        return y.reshape(x.shape[0], *b.shape) + b

    return f


def _pad(pads: tuple[int, ...], mode: str) -> Callable[..., T]:
    t, left, b, r = pads
    return lambda x: F.pad(x, (left, r, t, b), mode=mode)


# name -> (net, input shape without batch, PyTorch function of (x, *weights in net order))
CASES: dict[str, tuple[str, tuple[int, ...], Callable[..., T]]] = {
    "local3x3": ("local3x3(4)", (3, 6, 7), _local(3, 1, 0)),
    "local_s2_p1": ("local3x3/2(2, p=1)", (2, 7, 7), _local(3, 2, 1)),
    "reshape_anchors": ("reshape(3, 2, -1)", (6, 4, 4), lambda x: x.reshape(2, 3, 2, -1)),
    "softmax_per_anchor": (
        "reshape(3, 2, -1) -> softmax(axis=2)",
        (6, 4, 4),
        lambda x: torch.softmax(x.reshape(2, 3, 2, -1), 2),
    ),
    "softmax_last": ("softmax(axis=-1)", (3, 4, 5), lambda x: torch.softmax(x, -1)),
    "transpose": ("transpose(2, 3, 1)", (3, 4, 5), lambda x: x.permute(0, 2, 3, 1)),
    "nearest": ("upsample(2)", (2, 3, 4), lambda x: F.interpolate(x, scale_factor=2)),
    "nearest_3x2": (
        "upsample((3, 2))",
        (2, 3, 4),
        lambda x: F.interpolate(x, scale_factor=(3, 2), mode="nearest"),
    ),
    "bilinear": (
        "upsample(2, mode=bilinear)",
        (2, 3, 5),
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
    ),
    "bilinear_x3": (
        "upsample(3, mode=bilinear)",
        (1, 4, 3),
        lambda x: F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False),
    ),
    "crop": ("crop((3, 4))", (2, 8, 7), lambda x: x[:, :, 2:5, 1:5]),
    "pad_constant": ("pad((1, 0, 2, 3))", (2, 4, 5), _pad((1, 0, 2, 3), "constant")),
    "pad_reflect": ("pad((2, 1), mode=reflect)", (2, 4, 5), _pad((2, 1, 2, 1), "reflect")),
    "pad_value": ("pad(1, value=0.5)", (2, 3, 3), lambda x: F.pad(x, (1, 1, 1, 1), value=0.5)),
    "channels": ("channels(1, 3)", (4, 3, 3), lambda x: x[:, 1:3]),
    # lrn on a signal and a volume: reshaped to N x C x P x 1 for onnxruntime's 4-D LRN
    "lrn_signal": (
        "lrn(size=3, alpha=0.5, beta=0.75, k=1)",
        (6, 10),
        lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=1.0),
    ),
    "lrn_volume": (
        "lrn(size=3, alpha=0.5, beta=0.75, k=1)",
        (6, 3, 4, 5),
        lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=1.0),
    ),
    "adaptive_avg_even": ("adaptiveavgpool(3)", (2, 6, 9), lambda x: F.adaptive_avg_pool2d(x, 3)),
    "adaptive_avg_uneven": (
        "adaptiveavgpool((3, 4))",
        (2, 7, 10),
        lambda x: F.adaptive_avg_pool2d(x, (3, 4)),
    ),
    "adaptive_max_uneven": (
        "adaptivemaxpool(3)",
        (2, 7, 5),
        lambda x: F.adaptive_max_pool2d(x, 3),
    ),
    "adaptive_max_even": ("adaptivemaxpool(2)", (2, 4, 6), lambda x: F.adaptive_max_pool2d(x, 2)),
    "avgpool_count_pad": (
        "avgpool3x3/2(p=1, count_pad=true)",
        (2, 7, 7),
        lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True),
    ),
    "gated": ("gated", (6, 3, 3), lambda x: torch.tanh(x[:, :3]) * torch.sigmoid(x[:, 3:])),
    "abs": ("abs", (2, 3, 4), torch.abs),
}


def _net(case: str) -> netdsl.ShapedNet:
    text, shape, _ = CASES[case]
    return netdsl.parse(f"input {'x'.join(map(str, shape))}\n{text}", f"{case}.net")


def _weights(net: netdsl.ShapedNet) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        k: rng.standard_normal(v.shape).astype(np.float32)
        for k, v in weights.initialise(net).items()
    }


def _oracle(case: str, x: np.ndarray, params: dict[str, np.ndarray], grad: bool = False) -> Any:
    tensors = [
        torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in (x, *params.values())
    ]
    return CASES[case][2](*tensors), tensors


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_equal_pytorch(case: str) -> None:
    net = _net(case)
    params = _weights(net)
    x = np.random.default_rng(2).standard_normal((2, *CASES[case][1])).astype(np.float32)
    want, _ = _oracle(case, x, params)
    assert net.output_shape == tuple(want.shape[1:])
    assert net.params == sum(a.size for a in params.values())
    model = emit.to_onnx(net, mode="inference", weights=params or None)
    onnx.checker.check_model(model, full_check=True)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_autograd(case: str) -> None:
    """reverse.backward over the emitted nodes (every rule of the layer's ONNX ops at once)."""
    net = _net(case)
    params = _weights(net)
    x = np.random.default_rng(3).standard_normal((2, *CASES[case][1])).astype(np.float32)
    model = emit.to_onnx(net, mode="inference", weights=params or None, batch=2)
    nodes = list(model.graph.node)
    g = Grad(shapes_of(model), constants(nodes))
    wrt = ["input", *params]
    grads = backward(g, nodes, {"output": "dy"}, wrt, GRADIENTS)
    y, tensors = _oracle(case, x, params, grad=True)
    dy = np.random.default_rng(4).standard_normal(tuple(y.shape)).astype(np.float32)
    want = torch.autograd.grad(y, tensors, torch.tensor(dy, dtype=torch.float64))
    outs = [helper.make_tensor_value_info(f"d:{n}", TensorProto.FLOAT, None) for n in wrt]
    renames = [helper.make_node("Identity", [grads[n]], [f"d:{n}"]) for n in wrt]
    dy_info = helper.make_tensor_value_info("dy", TensorProto.FLOAT, dy.shape)
    graph = helper.make_graph(
        [*nodes, *g.nodes, *renames],
        "b",
        [*model.graph.input, dy_info],
        outs,
        [*model.graph.initializer, *g.initializers],
    )
    full = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    full.ir_version = 8
    got = ort.InferenceSession(full.SerializeToString()).run(None, {"input": x, "dy": dy})
    for name, a, b in zip(wrt, got, want, strict=True):
        b = b.numpy()
        error = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
        assert error <= 1e-4, f"{case} d{name}: relative error {error:.2e}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_fp16_model_runs_close(case: str) -> None:
    """The fp16 pass keeps every new layer valid (Resize's scales stay float32) and close."""
    net = _net(case)
    params = _weights(net)
    x = np.random.default_rng(5).standard_normal((2, *CASES[case][1])).astype(np.float32)
    model = emit.to_onnx(net, mode="inference", weights=params or None)
    half = fp16.apply_precision(model, "fp16")
    onnx.checker.check_model(half, full_check=True)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(half.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 2e-3 * max(np.abs(want).max(), 1.0)


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_int8_model_of_the_new_layers(target: str) -> None:
    """The int8 pass quantizes around the new layers (a locally connected layer stays fp32);
    its TensorRT form passes TensorRT's table."""
    text = (
        "input 3x12x12\nconv3x3(8) -> relu -> local3x3(4) -> relu -> upsample(2, mode=bilinear)"
        " -> adaptiveavgpool(5) -> pad(1, mode=reflect) -> crop(5) -> channels(0, 2)"
        " -> reshape(2, -1) -> softmax(axis=2)"
    )
    model = emit.to_onnx(netdsl.parse(text, "q.net"), mode="inference", fold_bn=True)
    x = np.random.default_rng(6).random((8, 3, 12, 12)).astype(np.float32)
    quantized = quantize_int8(model, x, target=target)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(quantized.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 0.15 * np.abs(want).max()
    if target == "tensorrt":
        assert [d.render() for d in support.check_model(quantized)] == []


# ---- properties: random sizes, the emitted model against PyTorch ----------------------------

SIZES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(text: str, x: np.ndarray) -> np.ndarray:
    shape = "x".join(map(str, x.shape[1:]))
    model = emit.to_onnx(netdsl.parse(f"input {shape}\n{text}", "p.net"), mode="inference")
    return ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]


@SIZES
@given(
    n=st.tuples(st.integers(1, 23), st.integers(1, 23)),
    m=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    kind=st.sampled_from(["avg", "max"]),
)
def test_adaptive_pools_equal_pytorch_at_any_size(
    n: tuple[int, int], m: tuple[int, int], kind: str
) -> None:
    x = np.random.default_rng(sum(n + m)).standard_normal((1, 2, *n)).astype(np.float32)
    pool = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d
    want = pool(torch.tensor(x), m).numpy()
    got = _run(f"adaptive{kind}pool(({m[0]}, {m[1]}))", x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@SIZES
@given(
    n=st.tuples(st.integers(2, 12), st.integers(2, 12)),
    f=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    mode=st.sampled_from(["nearest", "bilinear"]),
    cut=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_upsample_then_crop_equal_pytorch(
    n: tuple[int, int], f: tuple[int, int], mode: str, cut: tuple[int, int]
) -> None:
    x = np.random.default_rng(sum(n + f)).standard_normal((1, 2, *n)).astype(np.float32)
    up = F.interpolate(torch.tensor(x), scale_factor=f, mode=mode)
    size = [max(1, d - c) for d, c in zip(up.shape[2:], cut, strict=True)]
    begin = [(d - s) // 2 for d, s in zip(up.shape[2:], size, strict=True)]
    want = up[:, :, begin[0] : begin[0] + size[0], begin[1] : begin[1] + size[1]].numpy()
    got = _run(f"upsample({f}, mode={mode}) -> crop(({size[0]}, {size[1]}))", x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
