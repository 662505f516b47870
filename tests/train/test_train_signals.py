"""`netdsl train` on signals (N×C×L) and volumes (N×C×D×H×W) read from an npz, end to end.

One epoch from the command line: the run's files, a model that takes the samples as the npz
holds them (normalisation inside, its first nodes) and scores on the test split exactly the
accuracy the run reports (onnxruntime as the oracle); and a sample of another size refused,
saying both sizes (only images are resized or padded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from netdsl.cli import main

ort = pytest.importorskip("onnxruntime")

# WaveNet's causal pad -> conv(k=2, d), and C3D's 3x3x3 convolutions and 1x2x2 pools
NETS = {
    "signal": (
        (2, 48),
        "net signal:\n    input 2x48\n    pad(pads=(1, 0)) -> conv(4, k=2, p=valid) -> bn -> relu\n"
        "    -> pad(pads=(2, 0)) -> conv(4, k=2, d=2, p=valid) -> relu -> maxpool2 -> gap -> fc(2)\n",
    ),
    "volume": (
        (1, 4, 8, 8),
        "net volume:\n    input 1x4x8x8\n    conv3(4, p=1) -> bn -> relu -> maxpool1x2x2\n"
        "    -> conv3(4, p=1) -> relu -> avgpool2 -> flatten -> fc(2)\n",
    ),
}


def _npz(path: Path, shape: tuple[int, ...], n_train: int = 64, n_test: int = 32) -> Path:
    """Two classes: a bump in the first half of the last axis (class 1) or the second (0)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 2
        x = 0.1 * rng.standard_normal((n, *shape)).astype(np.float32)
        half = shape[-1] // 2
        for i, label in enumerate(y):
            start = 0 if label else half
            x[i, ..., start : start + half // 2] += 1.0
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("kind", "engine"), [("signal", "onnx"), ("volume", "onnx"), ("signal", "ort-training")]
)
def test_a_signal_or_volume_net_trains_an_epoch(tmp_path: Path, kind: str, engine: str) -> None:
    if engine == "ort-training":
        pytest.importorskip("onnxruntime.training")
    shape, text = NETS[kind]
    net = tmp_path / f"{kind}.net"
    net.write_text(text)
    data = _npz(tmp_path / "d.npz", shape)
    out = tmp_path / "run"
    args = ["train", str(net), "--data", f"npz:{data}", "--epochs", "1", "--batch", "16"]
    assert main([*args, "--engine", engine, "--out", str(out), "-q"]) == 0
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(record["train_loss"]) and record["epoch"] == 1
    model = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert tuple(dims) == shape
    assert [n.op_type for n in model.graph.node[:2]] == ["Sub", "Div"]  # normalises itself
    arrays = np.load(data)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores = sess.run(None, {model.graph.input[0].name: arrays["x_test"]})[0]
    accuracy = float((scores.argmax(1) == arrays["y_test"]).mean())
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-9)


def test_a_signal_of_another_length_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = tmp_path / "signal.net"
    net.write_text(NETS["signal"][1])
    data = _npz(tmp_path / "d.npz", (2, 40))
    args = ["train", str(net), "--data", f"npz:{data}", "--out", str(tmp_path / "run"), "-q"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "holds samples of 2x40, but signal takes 2x48" in err
    assert not (tmp_path / "run").exists()
