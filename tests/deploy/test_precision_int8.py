"""int8 by the compiler: QDQ graphs calibrated on real images, for onnxruntime and for TensorRT.

Oracles: onnx.checker; the fp32 model on the same inputs; real MNIST accuracy (LeNet-5 trained
here by `netdsl train`); TensorRT's operator table for the TensorRT form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import netdsl
from netdsl.backends.data import sources as data
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.passes.int8 import quantize_int8
from netdsl.backends.tensorrt.support import check_model
from netdsl.cli import main

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, data.Dataset]:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the MNIST test split is not at {MNIST}")
    out = tmp_path_factory.mktemp("lenet")
    spec = f"mnist:{MNIST}"
    assert (
        main(
            [
                "train",
                "lenet5",
                "--data",
                spec,
                "--fit",
                "pad",
                "--epochs",
                "3",
                "--out",
                str(out / "run"),
            ]
        )
        == 0
    )
    net = netdsl.load("lenet5")
    model = to_onnx(net, mode="inference", fold_bn=True, weights=str(out / "run" / "model.onnx"))
    return model, data.fit(data.load(spec), net.input_shape, 10, "lenet5", "pad")


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_int8_lenet_on_mnist_within_one_point(lenet, target: str) -> None:  # type: ignore[no-untyped-def]
    fp32, mnist = lenet
    int8 = quantize_int8(fp32, mnist.x_train[:256], target=target)
    onnx.checker.check_model(int8, full_check=True)
    acc32 = (run(fp32, mnist.x_test).argmax(1) == mnist.y_test).mean()
    acc8 = (run(int8, mnist.x_test).argmax(1) == mnist.y_test).mean()
    assert acc32 > 0.95
    assert abs(acc8 - acc32) <= 0.01, (acc32, acc8)


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_int8_resnet18_agrees_with_fp32(target: str) -> None:
    net = netdsl.load("resnet18")
    text = net.span.source.text.replace("3x224x224", "3x64x64")
    net = netdsl.parse(text, net.span.source.name, name="resnet18")
    fp32 = to_onnx(net, mode="inference", fold_bn=True, seed=3)
    rng = np.random.default_rng(0)
    int8 = quantize_int8(fp32, rng.random((32, 3, 64, 64), dtype=np.float32), target=target)
    x = rng.random((16, 3, 64, 64), dtype=np.float32)
    assert (run(int8, x).argmax(1) == run(fp32, x).argmax(1)).mean() >= 0.75
    weights = [
        t
        for t in int8.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    ]  # not zero points
    assert len(weights) == sum(n.op in ("conv", "fc") for n in net.nodes)


def test_tensorrt_form_has_zero_points_zero_and_passes_the_table() -> None:
    fp32 = to_onnx(netdsl.load("lenet5"), mode="inference", fold_bn=True)
    images = np.random.default_rng(0).random((16, 1, 32, 32), dtype=np.float32)
    int8 = quantize_int8(fp32, images, target="tensorrt")
    points = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in int8.graph.initializer
        if "zero_point" in t.name
    }
    assert points and all(not v.any() for v in points.values())
    assert check_model(int8) == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"method": "mean"}, "calibration method"),
        ({"target": "tpu"}, "int8 target"),
        ({"images": np.zeros((4, 3, 32, 32), np.float32)}, "calibration samples of input must be"),
    ],
)
def test_refusals(kwargs: dict[str, object], fragment: str) -> None:
    fp32 = to_onnx(netdsl.load("lenet5"), mode="inference", fold_bn=True)
    images = kwargs.pop("images", np.ones((4, 1, 32, 32), np.float32))
    with pytest.raises(netdsl.NetError, match=fragment):
        quantize_int8(fp32, images, **kwargs)  # type: ignore[arg-type]


TWO_INPUTS = """\
net two:
    input a: 1x16x16, b: 3x16x16
    ya = a -> conv3x3(8) -> relu -> maxpool
    yb = b -> conv3x3(8) -> relu -> maxpool
    output y: [ya, yb] -> concat -> conv3x3(16) -> relu -> gap -> fc(5)
    output z: ya -> gap -> fc(2)
"""


def test_int8_of_several_inputs_calibrates_on_each_and_agrees_with_fp32() -> None:
    """One array of samples per input: every conv and fc quantized, both outputs within a few
    per cent of fp32's range on unseen inputs."""
    fp32 = to_onnx(netdsl.parse(TWO_INPUTS), mode="inference", fold_bn=True, seed=2)
    rng = np.random.default_rng(0)
    calib = {
        "a": rng.random((32, 1, 16, 16), np.float32),
        "b": rng.random((32, 3, 16, 16), np.float32),
    }
    int8 = quantize_int8(fp32, calib)
    weights = [
        t
        for t in int8.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    ]
    assert len(weights) == 5
    feeds = {
        "a": rng.random((8, 1, 16, 16), np.float32),
        "b": rng.random((8, 3, 16, 16), np.float32),
    }
    want = ort.InferenceSession(fp32.SerializeToString()).run(None, feeds)
    have = ort.InferenceSession(int8.SerializeToString()).run(None, feeds)
    for w, h in zip(want, have, strict=True):
        assert np.abs(w - h).max() <= 0.05 * (np.abs(w).max() + 1e-6)


@pytest.mark.parametrize(
    ("calib", "fragment"),
    [
        ({"a": np.ones((4, 1, 16, 16), np.float32)}, "calibration feeds a; this model takes a, b"),
        (
            {"a": np.ones((4, 1, 16, 16), np.float32), "b": np.ones((3, 3, 16, 16), np.float32)},
            "every input needs as many calibration samples: a 4, b 3",
        ),
        (
            {"a": np.ones((4, 1, 16, 16), np.float32), "b": np.ones((4, 1, 16, 16), np.float32)},
            "calibration samples of b must be N x 3x16x16, got 4x1x16x16",
        ),
    ],
)
def test_int8_of_several_inputs_refuses_wrong_feeds(
    calib: dict[str, np.ndarray], fragment: str
) -> None:
    fp32 = to_onnx(netdsl.parse(TWO_INPUTS), mode="inference", fold_bn=True)
    with pytest.raises(netdsl.NetError, match=fragment):
        quantize_int8(fp32, calib)


def test_compile_int8_of_several_inputs_from_an_npz(tmp_path: Path) -> None:
    """`netdsl compile --precision int8 --calib npz:FILE`: `<input>_train` per input."""
    rng = np.random.default_rng(1)
    arrays = {
        "a_train": rng.integers(0, 256, (20, 1, 16, 16), dtype=np.uint8),
        "b_train": rng.integers(0, 256, (20, 3, 16, 16), dtype=np.uint8),
        "a_test": rng.integers(0, 256, (4, 1, 16, 16), dtype=np.uint8),
        "b_test": rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8),
        "y_train": rng.integers(0, 5, 20),
        "y_test": rng.integers(0, 5, 4),
    }
    np.savez(tmp_path / "two.npz", **arrays)  # type: ignore[arg-type]
    (tmp_path / "two.net").write_text(TWO_INPUTS)
    out = tmp_path / "two8.onnx"
    code = main(
        [
            "compile",
            str(tmp_path / "two.net"),
            "-o",
            str(out),
            "--precision",
            "int8",
            "--calib",
            f"npz:{tmp_path / 'two.npz'}",
            "--calib-images",
            "16",
        ]
    )
    assert code == 0
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["a", "b"]
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
