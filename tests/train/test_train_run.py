"""`netdsl train` end to end, on small nets and a small synthetic dataset (a few seconds each).

What a run promises: its files (model.onnx scoring exactly the accuracy last reported,
metrics.jsonl, checkpoint.npz, curves.png); batch-norm running statistics as PyTorch keeps them;
dropout only while training; frozen tensors fixed; weights from another model; a clear stop on
divergence that keeps the last good checkpoint; and a killed run resumed to the very metrics of
an uninterrupted one (in process, and with SIGKILL in a subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backends.data.sources import load as load_data
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import files
from netdsl.backends.train.loop import Config, train
from netdsl.cli import main as netdsl_main


def main(argv: list[str]) -> int:
    return netdsl_main(["train", *argv])


ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.training")

SMALL = """net small(classes=3):
    input 1x8x8
    conv3x3(4) -> relu -> maxpool -> fc(classes) -> softmax
"""
BN = "input 2x4x4\nbn -> flatten -> fc(3) -> softmax\n"
KEYS = {
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
    "lr",
    "images_per_second",
}


def _blobs(path: Path, n_train: int = 96, n_test: int = 48, channels: int = 1) -> Path:
    """Three classes: a bright 3x3 square at one of three places, plus noise."""
    rng = np.random.default_rng(0)
    where = [(0, 0), (2, 5), (5, 2)]

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        x = rng.random((n, channels, 8, 8)).astype(np.float32) * 0.5
        for i, label in enumerate(y):
            r, c = where[label]
            x[i, :, r : r + 3, c : c + 3] += 0.5
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    return _blobs(tmp_path / "blobs.npz")


def _net(tmp_path: Path, text: str, name: str = "net.net") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _train(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> int:
    return main([*args, "-q"])


def _accuracy_of(model: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    p = sess.run(["output"], {"input": x})[0]
    return float((p.argmax(axis=1) == y).mean()), float(-np.log(p[np.arange(len(y)), y]).mean())


def test_a_run_writes_its_files_and_the_model_scores_what_was_reported(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert (
        _train(
            [
                str(_net(tmp_path, SMALL)),
                "--data",
                f"npz:{blobs}",
                "--epochs",
                "3",
                "--batch",
                "8",
                "--lr",  # 36 steps in all: AdamW's default 0.003 moves too little in so few
                "0.01",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "small: test accuracy" in capsys.readouterr().out
    history = files.read_metrics(out)
    assert [r["epoch"] for r in history] == [1, 2, 3] and all(set(r) == KEYS for r in history)
    assert history[-1]["test_accuracy"] > 0.6  # chance is 1/3
    d = load_data(f"npz:{blobs}")
    accuracy, loss = _accuracy_of(out / "model.onnx", d.x_test, d.y_test)
    assert accuracy == history[-1]["test_accuracy"]
    assert loss == pytest.approx(history[-1]["test_loss"], rel=1e-4)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = files.load_checkpoint(out)
    assert (state.progress.epoch, state.progress.step) == (3, 0)
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta["mode"] == "inference" and "3 epochs" in meta["trained"]


def test_batch_norm_running_statistics_follow_pytorch(tmp_path: Path) -> None:
    """One step on the whole train set: the running mean and variance are PyTorch's after one
    forward in training mode (momentum 0.1, unbiased variance), in the checkpoint and in
    model.onnx, which evaluates with them."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = (2 + 3 * rng.random((10, 2, 4, 4))).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=np.arange(10) % 3, x_test=x[:4], y_test=np.arange(4) % 3)
    out = tmp_path / "run"
    net = netdsl.parse(BN)
    config = Config(epochs=1, batch=10, shift=0, checkpoint_every=0, normalise=False)
    train(net, load_data(f"npz:{path}"), config, out)
    reference = torch.nn.BatchNorm2d(2, momentum=0.1).train()
    reference(torch.from_numpy(x))
    saved = files.load_checkpoint(out).params
    model = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load(str(out / "model.onnx")).graph.initializer
    }
    for ours, theirs in (("mean", reference.running_mean), ("var", reference.running_var)):
        np.testing.assert_allclose(saved[f"bn1.{ours}"], theirs.numpy(), rtol=1e-5)
        np.testing.assert_array_equal(model[f"bn1.{ours}"], saved[f"bn1.{ours}"])
    assert not np.allclose(saved["bn1.mean"], 0) and not np.allclose(saved["bn1.var"], 1)


def test_dropout_is_only_in_training_and_runs_repeat(tmp_path: Path, blobs: Path) -> None:
    net = _net(tmp_path, "input 1x8x8\nconv3x3(4) -> relu -> flatten -> dropout(p=0.5) -> fc(3)")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        _train([str(net), "--data", f"npz:{blobs}", "--epochs", "2", "--out", str(out)])
        runs.append(files.read_metrics(out))
    strip = [
        [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in h]
        for h in runs
    ]
    assert strip[0] == strip[1]
    model = onnx.load(str(tmp_path / "a" / "model.onnx"))
    assert "Dropout" not in {n.op_type for n in model.graph.node}
    assert [i.name for i in model.graph.input] == ["input"]


@pytest.mark.parametrize(
    ("every", "kept"),
    [
        ("2", "the last checkpoint (step 4) is kept"),
        ("0", "no checkpoint was written before it"),
    ],
)
def test_divergence_stops_and_says_truly_what_is_kept(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str], every: str, kept: str
) -> None:
    """lr 1000 blows the loss up by step 2; the rule (mean of the last steps above 10 times
    the starting loss, from step 5) stops the run there, before a fifth update."""
    out = tmp_path / "run"
    net = str(_net(tmp_path, SMALL))
    args = [net, "--data", f"npz:{blobs}", "--lr", "1000", "--schedule", "constant"]
    code = _train([*args, "--batch", "8", "--out", str(out), "--checkpoint-every", every])
    err = capsys.readouterr().err
    assert code == 1
    assert "training diverged: the loss ran away at epoch 1 step 5" in err
    assert kept in err and "--lr" in err  # the CLI's advice, from the error's facts
    if every == "0":
        assert not (out / files.CHECKPOINT).exists()
    else:
        state = files.load_checkpoint(out)
        assert state.progress.global_step == 4 and state.progress.saved_step == 4
        assert all(np.isfinite(v).all() for v in state.params.values())


def test_frozen_tensors_stay_fixed(tmp_path: Path, blobs: Path) -> None:
    out, net = tmp_path / "run", _net(tmp_path, SMALL)
    assert (
        _train(
            [
                str(net),
                "--data",
                f"npz:{blobs}",
                "--epochs",
                "1",
                "--freeze",
                "conv1.*",
                "--out",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    fresh = wt.initialise(netdsl.load(str(net)), "auto", 3)
    trained = files.load_checkpoint(out).params
    np.testing.assert_array_equal(trained["conv1.weight"], fresh["conv1.weight"])
    np.testing.assert_array_equal(trained["conv1.bias"], fresh["conv1.bias"])
    assert not np.array_equal(trained["fc1.weight"], fresh["fc1.weight"])


def test_init_from_a_trained_model(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = _net(tmp_path, SMALL)
    _train([str(net), "--data", f"npz:{blobs}", "--epochs", "2", "--out", str(tmp_path / "a")])
    first = tmp_path / "a" / "model.onnx"
    _train(
        [
            str(net),
            "--data",
            f"npz:{blobs}",
            "--epochs",
            "1",
            "--lr",
            "1e-12",
            "--init-from",
            str(first),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    a, b = (files.load_checkpoint(tmp_path / k).params for k in "ab")
    for name in ("conv1.weight", "fc1.weight", "fc1.bias"):
        np.testing.assert_allclose(b[name], a[name], atol=1e-9)
    capsys.readouterr()
    args = [
        f"{net}:small",
        "--data",
        f"npz:{_blobs(tmp_path / 'four.npz')}",
        "--set",
        "classes=4",
        "--epochs",
        "1",
        "--init-from",
        str(first),
    ]
    assert _train([*args, "--out", str(tmp_path / "c")]) == 1
    assert "--skip-mismatched" in capsys.readouterr().err
    assert _train([*args, "--out", str(tmp_path / "d"), "--skip-mismatched"]) == 0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--resume", "--lr", "0.5"], "cannot change --lr 0.5 (the run has 0.003)"),
        ([], "already holds a run"),
        (["--freeze", "nothing*", "--out", "{tmp}/new"], "freeze pattern 'nothing*' matches no"),
        (["--resume", "--out", "{tmp}/empty"], "no checkpoint at"),
    ],
)
def test_refusals(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    base = [str(_net(tmp_path, SMALL)), "--data", f"npz:{blobs}", "--epochs", "1"]
    assert _train([*base, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "run")]
    assert _train([*base, *out, *extra]) == 1
    assert fragment in capsys.readouterr().err


def test_untrainable_net_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _net(tmp_path, "input 2x16\nrelu\n  -> upsample(2) -> gap -> fc(3)\n")  # a signal
    assert _train([str(net), "--out", str(tmp_path / "run")]) == 1
    assert f"{net}:3:6: error: a training step cannot train upsample1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "variant",
    [
        ["--optimizer", "adamw"],
        ["--weight-decay", "1e-3", "--schedule", "step", "--step-size", "1"],
    ],
)
def test_options_train(tmp_path: Path, blobs: Path, variant: list[str]) -> None:
    text = "input 1x8x8\nconv3x3(8) -> lrn(size=3) -> relu -> avgpool3x3(p=1) -> gmp -> fc(3)\n"
    out = tmp_path / "run"
    assert (
        _train(
            [
                str(_net(tmp_path, text)),
                "--data",
                f"npz:{blobs}",
                "--epochs",
                "3",
                "--out",
                str(out),
                *variant,
            ]
        )
        == 0
    )
    history = files.read_metrics(out)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def _same_end(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert len(a) == len(b)
    assert a[-1]["test_accuracy"] == b[-1]["test_accuracy"]
    for key in ("test_loss", "train_loss", "train_accuracy"):
        assert a[-1][key] == pytest.approx(b[-1][key], abs=1e-6)


def test_resume_in_process_ends_where_an_uninterrupted_run_does(tmp_path: Path) -> None:
    """Interrupted (an exception from the progress report) after a mid-epoch checkpoint."""
    path = _blobs(tmp_path / "d.npz")
    net = netdsl.parse(SMALL.replace("relu", "relu -> bn"))
    config = Config(epochs=2, batch=8, checkpoint_every=5, threads=1)
    whole = train(net, load_data(f"npz:{path}"), config, tmp_path / "whole")

    def stop(kind: str, values: dict[str, object]) -> None:
        if kind == "step" and values["epoch"] == 2 and values["step"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(net, load_data(f"npz:{path}"), config, tmp_path / "cut", report=stop)
    state = files.load_checkpoint(tmp_path / "cut")
    assert (state.progress.epoch, state.progress.step) == (1, 3)  # global step 15 of 12 + 12
    resumed = train(net, load_data(f"npz:{path}"), config, tmp_path / "cut", resume=True)
    _same_end(whole, resumed)


def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    data = _blobs(tmp_path / "d.npz", n_train=600, n_test=60)
    net = _net(tmp_path, SMALL)
    args = [
        str(net),
        "--data",
        f"npz:{data}",
        "--epochs",
        "2",
        "--batch",
        "4",
        "--threads",
        "1",
        "--checkpoint-every",
        "10",
        "-q",
    ]
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "netdsl", "train", *args, "--out", str(cut)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline, killed_at = time.monotonic() + 120, None
    while time.monotonic() < deadline and child.poll() is None:
        try:
            step = files.load_checkpoint(cut).progress.global_step
        except Exception:  # not written yet
            step = 0
        if step >= 200:  # in the second epoch (150 steps each)
            child.send_signal(signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.01)
    child.wait(30)
    assert killed_at is not None and child.returncode == -signal.SIGKILL, child.stderr.read()
    assert len(files.read_metrics(cut)) == 1  # it died inside epoch 2
    assert main([*args, "--out", str(cut), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    _same_end(files.read_metrics(tmp_path / "whole"), files.read_metrics(cut))


def test_lenet5_on_digits_reaches_97_percent(tmp_path: Path) -> None:
    """The headline: no flags, no download, under a minute on two cores."""
    lenet = Path(netdsl.__file__).resolve().parent.parent / "nets" / "lenet5.net"
    start = time.monotonic()
    assert _train([str(lenet), "--out", str(tmp_path / "run")]) == 0
    seconds = time.monotonic() - start
    last = files.read_metrics(tmp_path / "run")[-1]
    assert last["test_accuracy"] >= 0.97, last
    assert seconds < 600  # a hang guard; the README's 15 s is measured, not asserted
    json.dumps(last)
