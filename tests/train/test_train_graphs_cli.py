"""`netdsl train` on nets that are graphs: an npz of one array per input, `--loss-output`.

End to end through the command line: a two-input net with a shared tower trains one epoch on
an npz written here (`a_train`, `b_train`, `y_train`, `a_test`, `b_test`, `y_test`), and the
model it writes takes both inputs and scores the test split as the run reported. Wrong files
(a missing key, a wrong shape) and a net of several outputs without `--loss-output` are one
clear error each, naming the key or listing the outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netdsl.cli import main

ort = pytest.importorskip("onnxruntime")

NET = """
net pair:
    input a: 1x8x8, b: 1x8x8
    tower = [conv3x3(4) -> bn -> relu -> maxpool2x2]
    ya = a -> tower
    yb = b -> tower
    output same: [ya, yb] -> concat -> flatten -> fc(2)
    output aux: ya -> gap -> fc(3) -> softmax
"""


def _pairs(path: Path, n: int = 48, **changes: np.ndarray) -> Path:
    """Pairs of 8x8 images, each with a blob: in the top halves (class 1) or the bottom ones."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, size in (("train", n), ("test", n // 2)):
        a = rng.random((size, 1, 8, 8), dtype=np.float32) * 0.3
        b = rng.random((size, 1, 8, 8), dtype=np.float32) * 0.3
        y = np.arange(size) % 2
        for i in range(size):
            ra, rb = (rng.integers(0, 3) + (0 if y[i] else 4) for _ in "ab")
            a[i, 0, ra : ra + 2, 2:5] += 0.7
            b[i, 0, rb : rb + 2, 2:5] += 0.7
        arrays |= {f"a_{split}": a, f"b_{split}": b, f"y_{split}": y}
    arrays |= changes
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})  # type: ignore[arg-type]
    return path


def _net(tmp_path: Path) -> Path:
    path = tmp_path / "pair.net"
    path.write_text(NET)
    return path


def test_two_inputs_train_one_epoch_and_the_model_takes_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = _pairs(tmp_path / "pairs.npz"), tmp_path / "run"
    args = ["train", str(_net(tmp_path)), "--data", f"npz:{data}", "--epochs", "1"]
    args += ["--batch", "8", "--loss-output", "same", "--out", str(out), "--json", "-q"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["epochs"] == 1 and "model.onnx" in report["files"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["a", "b"]
    with np.load(data) as z:
        scores = sess.run(["same"], {"a": z["a_test"], "b": z["b_test"]})[0]
        accuracy = float((scores.argmax(1) == z["y_test"]).mean())
    assert accuracy == pytest.approx(report["test_accuracy"])
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert settings["loss_output"] == "same"  # a setting of the run: a resumed run keeps it
    resumed = ["train", str(_net(tmp_path)), "--data", f"npz:{data}", "--resume"]
    assert main([*resumed, "--epochs", "2", "--out", str(out), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"b_train": None}, "lacks b_train"),
        ({"b_test": np.zeros((24, 1, 8, 7), np.float32)}, "b_test is 24x1x8x7, but input b takes"),
        ({"a_train": np.zeros((47, 1, 8, 8), np.float32)}, "a_train holds 47 samples but y_train"),
        ({"y_test": np.zeros(24, np.float32)}, "y_test holds float32 values"),
    ],
    ids=["missing", "shape", "count", "labels"],
)
def test_wrong_npz_is_one_error_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, np.ndarray],
    fragment: str,
) -> None:
    data = _pairs(tmp_path / "bad.npz", **changes)
    args = ["train", str(_net(tmp_path)), "--data", f"npz:{data}", "--epochs", "1"]
    assert main([*args, "--loss-output", "same", "--out", str(tmp_path / "run"), "-q"]) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ([], "pair has 2 outputs (same, aux); training needs the one its loss is on"),
        (["--loss-output", "other"], "pair has no output 'other' to train on (its outputs: same"),
        (["--data", "digits", "--loss-output", "same"], "reads its data from an npz, not digits"),
    ],
    ids=["no-flag", "unknown", "not-npz"],
)
def test_outputs_and_data_are_chosen_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    data = ["--data", f"npz:{_pairs(tmp_path / 'pairs.npz')}"] if "--data" not in flags else []
    args = ["train", str(_net(tmp_path)), *data, *flags, "--out", str(tmp_path / "run"), "-q"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    if not flags:
        assert "--loss-output same" in err


def test_one_named_input_keeps_the_x_keys_and_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`input img: ...` with `output cls: ...`: the npz keeps x_train ..., and the model
    evaluated and written takes `img` (normalised inside) and answers `cls` (this run used to
    feed `input` to that model and stop with an internal error)."""
    net = tmp_path / "one.net"
    net.write_text(
        "net one:\n    input img: 1x8x8\n    output cls: img -> conv3x3(4) -> gap -> fc(3)\n"
    )
    rng = np.random.default_rng(1)
    x = rng.random((45, 1, 8, 8), dtype=np.float32)
    y = np.arange(45) % 3
    np.savez(tmp_path / "one.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    out = tmp_path / "run"
    args = ["train", str(net), "--data", f"npz:{tmp_path / 'one.npz'}", "--epochs", "1"]
    assert main([*args, "--out", str(out), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["img"]
    (scores,) = sess.run(["cls"], {"img": x[30:]})
    assert float((scores.argmax(1) == y[30:]).mean()) == pytest.approx(report["test_accuracy"])
