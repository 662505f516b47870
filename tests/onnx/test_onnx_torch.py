"""The ONNX backend against PyTorch, an independent implementation of the same layers.

LeNet-5 and ResNet-18 from bench/peers.py (written layer by layer like torchvision) get the same
weights as netdsl's models, copied by name; their outputs must agree, in inference form (plain
and with batch norms folded) and in training form (batch statistics, checked with the reference
evaluator: onnxruntime 1.19's training-mode batch norm is off, see test_ort_run.py). A table of
single layers checks netdsl's semantics (padding, ceil, groups, output padding) against
torch.nn.functional with the padding worked out by hand.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.runtime import ort

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed", allow_module_level=True)

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]


def peers() -> Any:
    from bench import peers

    return peers


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> None:
    """Agreement relative to the larger magnitude of the oracle."""
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) <= tol * max(float(np.abs(b).max()), 1e-6)


def with_logits(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    wide.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return wide


def resnet18_text(size: int) -> str:
    text = (ROOT / "nets" / "resnet.net").read_text("utf-8")
    return re.sub(r"input 3x224x224", f"input 3x{size}x{size}", text)


CASES = [("lenet5", 32, "fc2"), ("resnet18", 224, "head1.fc1")]


@pytest.mark.parametrize(("name", "size", "logits"), CASES)
@pytest.mark.parametrize("fold", [False, True])
def test_inference_matches_pytorch(
    name: str, size: int, logits: str, fold: bool, tmp_path: Path
) -> None:
    p = peers()
    model = p.randomize(p.build(name), seed=1)
    np.savez(tmp_path / "w.npz", **p.to_netdsl(model))
    onnx_model = to_onnx(
        netdsl.load(name), mode="inference", fold_bn=fold, weights=tmp_path / "w.npz"
    )
    x = np.random.default_rng(0).random(
        (2, 1 if name == "lenet5" else 3, size, size), dtype=np.float32
    )
    probs, scores = ort.session(with_logits(onnx_model, logits)).run(None, {"input": x})
    with torch.no_grad():
        want_scores = p.build(name, softmax=False)
        want_scores.load_state_dict(model.state_dict())
        close(scores, want_scores(torch.from_numpy(x)).numpy())
        close(probs, model(torch.from_numpy(x)).numpy())


def test_training_form_matches_pytorch_train_mode(tmp_path: Path) -> None:
    """Batch statistics in the forward pass, and the running mean updated with PyTorch's
    momentum 0.1 (ONNX's momentum 0.9)."""
    p = peers()
    model = p.randomize(p.build("resnet18", softmax=False), seed=2)
    np.savez(tmp_path / "w.npz", **p.to_netdsl(model))
    net = netdsl.parse(resnet18_text(32), "resnet.net", name="resnet18")
    onnx_model = with_logits(to_onnx(net, weights=tmp_path / "w.npz"), "head1.fc1")
    onnx_model = with_logits(onnx_model, "stem1.bn1.running_mean")
    x = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    _, scores, running = ReferenceEvaluator(onnx_model).run(None, {"input": x})
    model.train()
    with torch.no_grad():
        close(scores, model(torch.from_numpy(x)).numpy())
        close(running, model.bn1.running_mean.numpy())


# ---- single layers against torch.nn.functional -----------------------------------------------

Fn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]

LAYERS: list[tuple[str, Fn]] = [
    (
        "input 3x9x9\nconv3x3(4, p=(1, 0, 2, 1), s=2, d=2)",  # pads: top, left, bottom, right
        lambda x, w: F.conv2d(F.pad(x, (0, 1, 1, 2)), w["conv1.weight"], w["conv1.bias"], 2, 0, 2),
    ),
    (
        "input 3x8x8\nconv4x4/2(5)",  # same: total padding 2 at stride 2 -> 1 each side
        lambda x, w: F.conv2d(x, w["conv1.weight"], w["conv1.bias"], 2, 1),
    ),
    (
        "input 3x8x8\nconv4x4(5)",  # same at stride 1: total 3 -> 1 before, 2 after
        lambda x, w: F.conv2d(F.pad(x, (1, 2, 1, 2)), w["conv1.weight"], w["conv1.bias"]),
    ),
    (
        "input 4x6x6\nconv3x3(6, groups=2, p=1)",
        lambda x, w: F.conv2d(x, w["conv1.weight"], w["conv1.bias"], 1, 1, 1, 2),
    ),
    (
        "input 4x6x6\ndwconv3x3(m=2, p=1)",
        lambda x, w: F.conv2d(x, w["dwconv1.weight"], w["dwconv1.bias"], 1, 1, 1, 4),
    ),
    (
        "input 4x5x5\ndeconv3x3/2(6, p=1, output_padding=1, groups=2)",
        lambda x, w: F.conv_transpose2d(x, w["deconv1.weight"], w["deconv1.bias"], 2, 1, 1, 2),
    ),
    (
        "input 3x5x5\ndeconv3x3/2(4, d=2, p=2)",
        lambda x, w: F.conv_transpose2d(
            x, w["deconv1.weight"], w["deconv1.bias"], 2, 2, dilation=2
        ),
    ),
    (
        "input 2x7x7\nmaxpool3x3/2(p=1, ceil=true)",
        lambda x, w: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    ),
    ("input 2x6x6\nmaxpool2x2/3(ceil=true)", lambda x, w: F.max_pool2d(x, 2, 3, ceil_mode=True)),
    (
        "input 2x8x8\navgpool3x3/2(p=1, ceil=true)",
        lambda x, w: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    ),
    (
        "input 2x7x7\navgpool2x2/3(ceil=true)",
        lambda x, w: F.avg_pool2d(x, 2, 3, ceil_mode=True, count_include_pad=False),
    ),
    (
        "input 7x3x3\nlrn(5, alpha=0.5, beta=0.75, k=2)",
        lambda x, w: F.local_response_norm(x, 5, 0.5, 0.75, 2.0),
    ),
    (
        "input 3x4x4\nleakyrelu(0.2) -> gmp",
        lambda x, w: F.adaptive_max_pool2d(F.leaky_relu(x, 0.2), 1),
    ),
    ("input 3x4x4\nfc(5)", lambda x, w: F.linear(x.flatten(1), w["fc1.weight"], w["fc1.bias"])),
]


@pytest.mark.parametrize(("text", "fn"), LAYERS, ids=[t.split("\n")[1] for t, _ in LAYERS])
def test_layer_matches_pytorch(text: str, fn: Fn) -> None:
    net = netdsl.parse(text)
    model = to_onnx(net, mode="inference", seed=4)
    for tensor in model.graph.initializer:  # biases are 0 fresh; make them count
        if tensor.name.endswith(".bias"):
            value = np.linspace(-1, 1, tensor.dims[0], dtype=np.float32)
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    w = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in model.graph.initializer}
    x = ort.random_input((2, *net.input_shape), seed=5) - np.float32(0.5)
    with torch.no_grad():
        want = fn(torch.from_numpy(x), w).numpy()
    close(ort.run(model, x), want, 1e-5)
