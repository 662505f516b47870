"""Running models with onnxruntime: inputs, top-k, benchmarks, errors, and the CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.runtime import ort
from netdsl.cli import main
from netdsl.errors import FixedBatch

MNIST = "input 1x28x28\nconv3x3(4) -> relu -> maxpool -> flatten -> fc(10) -> softmax"


@pytest.fixture
def model() -> onnx.ModelProto:
    return to_onnx(netdsl.parse(MNIST), mode="inference")


@pytest.fixture
def mnist_file(tmp_path: Path) -> Path:
    path = tmp_path / "mnist.net"
    path.write_text(f"net mnist:\n    {MNIST.replace(chr(10), chr(10) + '    ')}\n")
    return path


def foreign(inputs: list[tuple[str, int]]) -> onnx.ModelProto:
    """A model not made by netdsl: its inputs pass through Identity nodes."""
    values = [helper.make_tensor_value_info(n, t, [1, 3]) for n, t in inputs]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _ in inputs]
    outs = [helper.make_tensor_value_info(f"{n}_out", t, [1, 3]) for n, t in inputs]
    m = helper.make_model(
        helper.make_graph(nodes, "g", values, outs), opset_imports=[helper.make_opsetid("", 17)]
    )
    m.ir_version = 8
    return m


# ---- inputs ----------------------------------------------------------------------------------


def test_one_image_gets_a_batch(model: onnx.ModelProto) -> None:
    x = ort.random_input((1, 28, 28))
    assert ort.run(model, x).shape == (1, 10)
    assert ort.run(model, np.stack([x, x]).astype(np.float64)).shape == (2, 10)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            np.zeros((3, 32, 32), np.float32),
            "input: expected an array of shape Nx1x28x28 \\(or 1x28x28 for one image\\), got 3x32x32",
        ),
        (np.zeros((28, 28), np.float32), "got 28x28$"),
        (np.zeros((1, 28, 28), np.int64), "input: expected float32 values, got int64$"),
        (np.zeros((1, 28, 28), np.uint8), "got uint8 \\(scale images to \\[0, 1\\] first\\)"),
    ],
)
def test_bad_input(model: onnx.ModelProto, x: np.ndarray, message: str) -> None:
    with pytest.raises(netdsl.NetError, match=message):
        ort.run(model, x)


def test_fixed_batch_is_enforced() -> None:
    model = to_onnx(netdsl.parse(MNIST), mode="inference", batch=2)
    with pytest.raises(netdsl.NetError, match=r"shape 2x1x28x28 .*got 3x1x28x28"):
        ort.run(model, np.zeros((3, 1, 28, 28), np.float32))


@pytest.mark.parametrize(
    ("color", "channels", "expected"),
    [
        ((255, 0, 0), 3, [1.0, 0.0, 0.0]),
        ((255, 0, 0), 1, [76 / 255]),  # ITU-R 601 luma: 255 * 299/1000 = 76.2 -> 76
        ((0, 0, 255), 1, [29 / 255]),
    ],  # 255 * 114/1000 = 29.07 -> 29
)
def test_image_is_resized_and_scaled(
    color: tuple[int, int, int], channels: int, expected: list[float], tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (40, 30), color).save(tmp_path / "x.png")
    x = ort.load_image(tmp_path / "x.png", (channels, 8, 12))
    assert x.shape == (channels, 8, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 4, 6], expected, rtol=1e-6)


def test_image_resize_follows_the_net(tmp_path: Path) -> None:
    """A left-dark, right-light image keeps its halves after resizing to 28x28."""
    from PIL import Image

    pixels = np.zeros((50, 100, 3), np.uint8)
    pixels[:, 50:] = 200
    Image.fromarray(pixels).save(tmp_path / "x.png")
    sess = ort.session(to_onnx(netdsl.parse(MNIST), mode="inference"))
    x = ort.load_input(tmp_path / "x.png", sess)
    assert x.shape == (1, 28, 28)
    assert x[0, :, :10].max() == 0 and x[0, :, -10:].min() == pytest.approx(200 / 255)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.png", b"not an image", "cannot read '.*x.png' as an image"),
        ("x.npy", b"not numpy", "cannot read '.*x.npy' as a .npy array"),
        ("none.npy", None, "no such file: '.*none.npy'"),
    ],
)
def test_unreadable_input(
    name: str, content: bytes | None, message: str, tmp_path: Path, model: onnx.ModelProto
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(netdsl.NetError, match=message):
        ort.load_input(tmp_path / name, ort.session(model))


def test_top_k_by_hand() -> None:
    scores = np.array([[0.1, 0.5, 0.2, 0.5], [4, 3, 2, 1]], np.float32)
    assert ort.top_k(scores, 3) == [
        [(1, 0.5), (3, 0.5), (2, pytest.approx(0.2))],
        [(0, 4.0), (1, 3.0), (2, 2.0)],
    ]


# ---- models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xffgarbage" * 10, "is not an ONNX model"),
        (
            foreign([("a", TensorProto.FLOAT), ("b", TensorProto.FLOAT)]).SerializeToString(),
            "the model takes 2 inputs \\(a, b\\)",
        ),
        (
            foreign([("ids", TensorProto.INT64)]).SerializeToString(),
            "the model's input 'ids' is tensor\\(int64\\); netdsl feeds tensor\\(float\\)",
        ),
    ],
)
def test_bad_models(content: bytes, message: str, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(content)
    with pytest.raises(netdsl.NetError, match=message) as error:
        ort.run(tmp_path / "m.onnx", np.zeros((1, 3), np.float32))
    assert "\n" not in error.value.message


def test_model_onnxruntime_refuses(tmp_path: Path) -> None:
    bad = foreign([("x", TensorProto.FLOAT)])
    bad.graph.node[0].op_type = "NoSuchOp"
    onnx.save_model(bad, str(tmp_path / "m.onnx"))
    with pytest.raises(netdsl.NetError, match=r"onnxruntime cannot load '.*m\.onnx': .*NoSuchOp"):
        ort.session(tmp_path / "m.onnx")


def test_unavailable_provider(model: onnx.ModelProto) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(netdsl.NetError, match="provider 'cuda' is not available"):
        ort.session(model, provider="cuda")


@pytest.mark.xfail(
    strict=True,
    reason="onnxruntime's CPU BatchNormalization (1.19 to 1.30 at "
    "least) in training mode blends the running statistics into its output "
    "(microsoft/onnxruntime#29790); netdsl runs nets in inference form",
)
def test_onnxruntime_training_mode_batch_norm() -> None:
    model = to_onnx(netdsl.parse("input 3x4x4\nbn"))
    x = ort.random_input((2, 3, 4, 4), seed=1)
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(ort.run(model, x), (x - mean) / np.sqrt(var + 1e-5), atol=1e-4)


# ---- benchmarks ------------------------------------------------------------------------------


def test_bench(model: onnx.ModelProto) -> None:
    timings = ort.bench(model, [1, 4], repeats=3, warmup=1)
    assert [t.batch for t in timings] == [1, 4]
    for t in timings:
        assert 0 < t.min_ms <= t.median_ms
        assert t.images_per_s == pytest.approx(t.batch / (t.median_ms / 1e3))


def test_bench_fixed_batch(tmp_path: Path) -> None:
    onnx.save_model(to_onnx(netdsl.parse(MNIST), batch=1), str(tmp_path / "m.onnx"))
    assert len(ort.bench(tmp_path / "m.onnx", [1], repeats=1)) == 1
    with pytest.raises(FixedBatch, match="fixed batch size of 1; it cannot be timed at batch 8"):
        ort.bench(tmp_path / "m.onnx", [1, 8])  # the CLI adds the flag advice from the facts


# ---- the CLI ---------------------------------------------------------------------------------


def test_cli_compile_run_bench(
    mnist_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    assert main(["compile", str(mnist_file), "-o", str(out), "--inference", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    onnx.checker.check_model(str(out), full_check=True)
    np.save(tmp_path / "x.npy", ort.random_input((2, 1, 28, 28)))
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "output 2x10" in text and "image 1: top 2 (class, probability)" in text
    assert main(["bench", str(mnist_file), "--batch", "1,2", "--repeats", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [r["batch"] for r in rows] == [1, 2]


def test_cli_run_without_input_says_so(
    mnist_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(mnist_file)]) == 0
    text = capsys.readouterr().out
    assert "running a random input, uniform in [0, 1) (seed 0)" in text
    assert "fresh random weights" in text


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    """Through a real process: a wrong-shape .npy and a corrupt .onnx, exit status 1."""
    net = tmp_path / "m.net"
    net.write_text(f"net mnist:\n    {MNIST.replace(chr(10), chr(10) + '    ')}\n")
    np.save(tmp_path / "x.npy", np.zeros((3, 32, 32), np.float32))
    (tmp_path / "bad.onnx").write_bytes(b"\x00\xff" * 40)
    for args, message in [
        (
            ["run", str(net), "--input", str(tmp_path / "x.npy")],
            "expected an array of shape Nx1x28x28 (or 1x28x28 for one image), got 3x32x32",
        ),
        (["bench", str(tmp_path / "bad.onnx")], "is not an ONNX model"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "netdsl", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: ") and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
