"""Runs worth keeping: best and last model, config.json reused by --config, class names, the
confusion matrix, early stopping, the chance warning, warm-up, ETA, per-layer learning rates,
and defaults that learn (the 3-conv net of the TensorFlow tutorial leaves chance in one epoch).

Small nets on a synthetic dataset (a second or two a run); the MNIST check uses the shared
MNIST test split and skips without it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backends.data import sources
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import files, report
from netdsl.backends.train import preprocess as pre
from netdsl.backends.train.loop import train
from netdsl.backends.train.settings import Config, from_dict
from netdsl.cli import main as netdsl_main
from netdsl.cli.train import eta
from netdsl.source import NetError

ort = pytest.importorskip("onnxruntime")
MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
NET = """net small(classes=3):
    input 1x8x8
    conv3x3(4) -> relu -> maxpool -> fc(classes) -> softmax
"""
ENGINES = ["onnx"] + (
    ["ort-training"] if __import__("importlib").util.find_spec("onnxruntime.training") else []
)


def _blobs(path: Path) -> Path:
    """Three classes: a bright 3x3 square at one of three places, plus noise."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        x = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.5
        for i, label in enumerate(y):
            r, c = [(0, 0), (2, 5), (5, 2)][label]
            x[i, :, r : r + 3, c : c + 3] += 0.5
        return x, y

    (xa, ya), (xb, yb) = make(96), make(48)
    np.savez(path, x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    return path


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    net = tmp_path / "small.net"
    net.write_text(NET)
    return net, _blobs(tmp_path / "blobs.npz")


def _cli(argv: list[str]) -> int:
    return netdsl_main(["train", *argv])


def test_the_folder_keeps_best_last_config_and_confusion(
    tmp_path: Path, setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    net, blobs = setup
    out = tmp_path / "run"
    argv = [str(net), "--data", f"npz:{blobs}", "--epochs", "3", "--batch", "8", "--out", str(out)]
    assert _cli([*argv, "-q"]) == 0
    text = capsys.readouterr().out
    assert "best.onnx" in text and "confusion.json" in text and "config.json" in text
    history = files.read_metrics(out)
    best = max(range(3), key=lambda i: (history[i]["test_accuracy"], -i))
    x, y = np.load(blobs)["x_test"], np.load(blobs)["y_test"]
    for name, record in (("model.onnx", history[-1]), ("best.onnx", history[best])):
        sess = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        guess = sess.run(["output"], {"input": x})[0].argmax(axis=1)  # raw [0, 1] pixels in
        assert float((guess == y).mean()) == record["test_accuracy"]
    matrix = json.loads((out / "confusion.json").read_text())
    counts = np.array(matrix["counts"])
    assert counts.sum() == len(y) and matrix["accuracy"] == history[best]["test_accuracy"]
    assert np.trace(counts) / counts.sum() == pytest.approx(history[best]["test_accuracy"])
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    saved = files.read_config(out / "config.json")
    assert saved["data"] == f"npz:{blobs}"
    assert from_dict(saved["settings"]) == from_dict({"epochs": 3, "batch": 8})
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    record = pre.read_metadata(meta)
    assert record["mean"] == pytest.approx([float(np.load(blobs)["x_train"].mean())], abs=1e-5)
    assert [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node[:2]] == [
        "Sub",
        "Div",
    ]
    # --config reuses the settings and the data; flags given override them
    again = tmp_path / "again"
    assert _cli([str(net), "--config", str(out / "config.json"), "--epochs", "1",
                 "--out", str(again), "-q"]) == 0  # fmt: skip
    reused = files.read_config(again / "config.json")
    assert reused["data"] == saved["data"]
    assert {**saved["settings"], "epochs": 1} == reused["settings"]


@pytest.mark.parametrize(
    ("accuracies", "patience", "stop"),
    [
        ([0.5, 0.6, 0.6], 1, True),  # no better in the last epoch
        ([0.5, 0.6, 0.6], 2, False),
        ([0.5, 0.4, 0.3], 2, True),
        ([0.5, 0.6, 0.7], 1, False),
        ([0.5, 0.4, 0.3], 0, False),  # 0: never
        ([], 1, False),
    ],
)
def test_stop_early(accuracies: list[float], patience: int, stop: bool) -> None:
    history = [{"test_accuracy": a} for a in accuracies]
    assert report.stop_early(history, patience) == stop


def test_patience_stops_a_run_and_says_so(
    tmp_path: Path, setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    net, blobs = setup
    out = tmp_path / "run"
    argv = [str(net), "--data", f"npz:{blobs}", "--epochs", "6", "--lr", "1e-9", "--out", str(out)]
    assert _cli([*argv, "--patience", "2", "--warmup", "0"]) == 0
    err = capsys.readouterr().err
    assert len(files.read_metrics(out)) == 3  # epoch 1, then two without a better accuracy
    assert "stopped early after epoch 3" in err
    assert "warning: the training loss after the first epoch is" in err  # a rate of 1e-9


@pytest.mark.parametrize(
    ("loss", "classes", "warned"),
    [(2.30, 10, True), (2.10, 10, False), (1.10, 3, True), (0.5, 3, False), (0.7, 2, True)],
)
def test_the_chance_warning(loss: float, classes: int, warned: bool) -> None:
    said = report.at_chance(loss, classes, Config())
    assert (said is not None) == warned
    if said:
        assert f"ln({classes})" in said and "lr=0.0003" in said and "--" not in said


@pytest.mark.parametrize(
    ("step", "steps", "factor"), [(0, 100, 0.01), (49, 100, 0.5), (100, 100, 1.0), (5, 0, 1.0)]
)
def test_warmup(step: int, steps: int, factor: float) -> None:
    assert report.warmup(step, steps) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("v", "text"),
    [
        ({"step": 10, "steps": 100, "epoch": 1, "epochs": 1, "seconds": 1.0}, "0:09"),
        ({"step": 50, "steps": 100, "epoch": 1, "epochs": 3, "seconds": 60.0}, "5:00"),
        ({"step": 1, "steps": 10, "epoch": 1, "epochs": 400, "seconds": 1.0}, "1:06:39"),
        ({"step": 0, "steps": 10, "epoch": 1, "epochs": 1, "seconds": 0.0}, "?"),
    ],
)
def test_eta(v: dict[str, float], text: str) -> None:
    assert eta(v) == text


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"lr_mult": ("conv*",)}, "is not PATTERN=MULT"),
        ({"lr_mult": ("conv*=-1",)}, "is not PATTERN=MULT"),
        ({"lr_mult": ("conv*=nan",)}, "is not PATTERN=MULT"),
        ({"mean": ()}, "mean must be one or more finite numbers"),
        ({"std": (0.0,)}, "std must be above 0"),
        ({"flip": 1}, "flip must be true or false"),
        ({"nonsense": 1}, "unknown setting"),
    ],
)
def test_new_settings_are_checked(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(NetError, match=fragment):
        from_dict(settings)


@pytest.mark.parametrize(
    ("engine", "optimizer"),
    [("onnx", "sgd"), ("onnx", "adamw")]
    + [("ort-training", "adamw")] * ("ort-training" in ENGINES),
)
def test_a_learning_rate_multiplier_scales_those_tensors_updates(
    tmp_path: Path, setup: tuple[Path, Path], engine: str, optimizer: str
) -> None:
    """mult 0.5 on every tensor is the run at half the rate; mult 0 keeps a tensor still."""
    net = netdsl.load(str(setup[0]))
    data = sources.load(f"npz:{setup[1]}")
    base = from_dict({"epochs": 1, "optimizer": optimizer, "engine": engine, "warmup": 3})

    def weights(config: Config, name: str) -> dict[str, np.ndarray]:
        train(net, data, config, tmp_path / name)
        return files.load_checkpoint(tmp_path / name).params

    half = weights(replace(base, lr=base.lr / 2), "half")
    scaled = weights(replace(base, lr_mult=("*=0.5",)), "scaled")
    for name, value in half.items():
        np.testing.assert_allclose(scaled[name], value, rtol=1e-4, atol=1e-6)
    start = wt.initialise(net, base.init, base.seed)  # what every run starts from
    still = weights(replace(base, lr_mult=("fc*=0",)), "still")
    fc = [n for n in still if n.startswith("fc")]
    assert fc and all(np.array_equal(still[n], start[n]) for n in fc)
    assert not all(np.array_equal(still[n], start[n]) for n in still if n not in fc)


def test_a_pattern_that_matches_nothing(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    net = netdsl.load(str(setup[0]))
    data = sources.load(f"npz:{setup[1]}")
    with pytest.raises(NetError, match=r"'features\.\*' matches no trainable tensor"):
        train(net, data, from_dict({"lr_mult": ("features.*=0.1",)}), tmp_path / "r")


def test_run_prints_the_class_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = netdsl.load(str(Path(__file__).resolve().parents[2] / "nets" / "mnist.net:mnist_softmax"))
    data = sources.fit(sources.load("digits"), net.input_shape, 10, net.name)
    train(net, data, from_dict({"epochs": 1}), tmp_path / "r")
    image = data.x_test[:1]
    np.save(tmp_path / "x.npy", image)
    assert netdsl_main(["run", str(tmp_path / "r" / "model.onnx"), "--input",
                        str(tmp_path / "x.npy"), "--top", "10"]) == 0  # fmt: skip
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if ". " in line]
    assert sorted(line[2] for line in lines) == [str(d) for d in range(10)]
    assert all(line[1] == line[2] for line in lines)  # digit ids are their own names


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"no shared MNIST at {MNIST}")
def test_the_three_conv_net_leaves_chance_in_one_epoch_with_the_defaults(tmp_path: Path) -> None:
    net = netdsl.load(str(Path(__file__).resolve().parents[2] / "nets" / "mnist.net:mnist_conv"))
    data = sources.load(f"mnist:{MNIST}")
    data = replace(data, x_train=data.x_train[:2000], y_train=data.y_train[:2000])
    history = train(net, data, from_dict({"epochs": 1}), tmp_path / "r")
    assert history[0]["train_loss"] < 0.8 * math.log(10)
    assert history[0]["test_accuracy"] > 0.6  # chance is 0.1


def test_config_json_round_trips() -> None:
    config = from_dict({"mean": (0.5,), "std": (0.25,), "lr_mult": ("a*=0.1",), "flip": True})
    text = json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    )
    assert from_dict(json.loads(text)) == config


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--mean", "0.1,0.2"], 1, "2 mean values for images of 1 channels"),
        (["--std", "0"], 1, "std must be above 0"),
        (["--mean", "a,b"], 2, "is not a comma-separated list of numbers"),
        (["--shift", "sideways"], 2, "--shift"),
        (["--lr-mult", "conv*"], 1, "is not PATTERN=MULT"),
        (["--lr-mult", "trunk.*=0.1"], 1, "'trunk.*' matches no trainable tensor"),
        (["--config", "/nonexistent/config.json"], 1, "no such configuration file"),
    ],
)
def test_command_line_mistakes(
    tmp_path: Path,
    setup: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    fragment: str,
) -> None:
    net, blobs = setup
    argv = [str(net), "--data", f"npz:{blobs}", "--epochs", "1", "--out", str(tmp_path / "r")]
    try:
        got = _cli([*argv, *extra, "-q"])
    except SystemExit as stop:  # argparse's own refusals
        got = int(stop.code or 0)
    assert got == code
    assert fragment in capsys.readouterr().err
