"""backends/train/native.py: the native engine against plain onnxruntime runs and against the
onnxruntime-training engine.

The engine keeps tensors on the device and swaps two buffer sets between steps; five steps must
give exactly what feeding each step's outputs back by hand gives. Then whole runs of
`netdsl train` (10 steps, the same data, seed and start) on both engines must end with the same
parameters, running statistics and optimizer state (within 1e-5), for SGD with momentum and for
AdamW, and a run resumed from a checkpoint must end where an uninterrupted one does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backends.data.sources import Dataset
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import files
from netdsl.backends.train.loop import Config, train
from netdsl.backends.train.native import NativeEngine
from netdsl.backends.train.step import to_training_step
from netdsl.backends.train.update import Optimizer
from netdsl.source import NetError

ort = pytest.importorskip("onnxruntime")

# no bias before a batch norm: its gradient is zero but for rounding, which AdamW would amplify
# into different steps on the two engines
NET = (
    "input 2x8x8\nconv3x3(4) -> bn -> relu -> maxpool -> dropout(p=0.2) -> flatten -> fc(6, bias=false) "
    "-> bn -> tanh -> fc(3) -> softmax"
)


def _data(n: int = 80) -> Dataset:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.random((n, 2, 8, 8)).astype(np.float32) * 0.5
    for i, label in enumerate(y):
        x[i, :, 2 * label : 2 * label + 3, 1:4] += 0.5
    return Dataset("blobs", x, y.astype(np.int64), x[:24].copy(), y[:24].astype(np.int64))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_engine_swaps_buffers_as_feeding_outputs_back_does(optimizer: str) -> None:
    net = netdsl.parse(NET)
    params = wt.initialise(net, "auto", 0)
    step = to_training_step(net, Optimizer(optimizer), params=params)
    state = step.initial_state(params)
    engine = NativeEngine(step, state, threads=1)
    sess = ort.InferenceSession(step.model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in step.model.graph.output]
    rng = np.random.default_rng(1)
    by_hand = dict(state)
    for k in range(5):
        x = rng.random((6, 2, 8, 8), dtype=np.float32)
        y = rng.integers(0, 3, 6)
        mask = (rng.random((6, *step.masks[0].shape)) > 0.2).astype(np.float32) / 0.8
        loss, correct = engine.run(x, y, 0.05, [mask])
        feeds = by_hand | {"input": x, "labels": y, "lr": np.array(0.05, np.float32)}
        feeds |= {"step": np.array(k), step.masks[0].input: mask}
        out = dict(zip(names, sess.run(None, feeds), strict=True))
        assert loss == float(out["loss"]) and correct == int(out["correct"])
        by_hand |= {old: out[new] for old, new in step.updates.items()}
    got = engine.tensors()
    for name, value in by_hand.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert engine.count == 5


# the merges (mean, sub) and abs: onnxruntime-training has no gradient for Mean, so its
# training graph writes the mean as adds and a product (backends/train/graph.py)
MERGES = (
    "input 2x8x8\nconv3x3(4) -> relu -> [conv3x3(4), conv1x1(4) -> abs, identity] -> mean "
    "-> maxpool -> [conv1x1(4), identity] -> sub -> flatten -> fc(3)"
)


def _run(
    tmp: Path, engine: str, optimizer: str, epochs: int = 1, text: str = NET, **kw: object
) -> Path:
    net = netdsl.parse(text)
    config = Config(
        epochs=epochs,
        batch=8,
        optimizer=optimizer,
        lr=0.05,
        schedule="constant",
        shift=1,
        threads=1,
        checkpoint_every=0,
        engine=engine,
        **kw,  # type: ignore[arg-type]
    )
    out = tmp / f"{engine}-{optimizer}-{epochs}"
    train(net, _data(), config, out)
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_native_and_ort_training_reach_the_same_tensors(tmp_path: Path, optimizer: str) -> None:
    pytest.importorskip("onnxruntime.training")
    net = netdsl.parse(NET)
    native = files.load_checkpoint(_run(tmp_path, "onnx", optimizer, weight_decay=5e-3), net)
    reference = files.load_checkpoint(
        _run(tmp_path, "ort-training", optimizer, weight_decay=5e-3), net
    )
    assert native.progress.global_step == reference.progress.global_step == 10
    for name, value in reference.params.items():
        error = np.abs(native.params[name] - value).max() / max(np.abs(value).max(), 1e-6)
        assert error <= 1e-5, f"{name}: {error:.2e}"
    assert set(native.optimizer) == set(reference.optimizer)
    for name, value in reference.optimizer.items():
        scale = max(float(np.abs(value).max()), 1e-6)
        assert np.abs(native.optimizer[name] - value).max() / scale <= 1e-4, name


def test_both_engines_train_the_merges_alike(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime.training")
    net = netdsl.parse(MERGES)
    native = files.load_checkpoint(_run(tmp_path, "onnx", "sgd", text=MERGES), net)
    reference = files.load_checkpoint(_run(tmp_path, "ort-training", "sgd", text=MERGES), net)
    for name, value in reference.params.items():
        error = np.abs(native.params[name] - value).max() / max(np.abs(value).max(), 1e-6)
        assert error <= 1e-5, f"{name}: {error:.2e}"


def test_resumed_adamw_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    whole = _run(tmp_path, "onnx", "adamw", epochs=2)
    part = _run(tmp_path, "onnx", "adamw", epochs=1)
    net = netdsl.parse(NET)
    config = files.load_checkpoint(part, net).meta["config"]
    resumed = Config(**{**config, "epochs": 2, "freeze": tuple(config["freeze"])})
    train(net, _data(), resumed, part, resume=True)
    a, b = files.load_checkpoint(whole, net), files.load_checkpoint(part, net)
    for name, value in a.params.items():
        np.testing.assert_array_equal(b.params[name], value, err_msg=name)
    assert a.progress.history == b.progress.history or all(
        abs(x["test_loss"] - y["test_loss"]) < 1e-9
        for x, y in zip(a.progress.history, b.progress.history, strict=True)
    )


def test_cuda_without_a_cuda_onnxruntime_is_one_error() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    net = netdsl.parse(NET)
    params = wt.initialise(net, "auto", 0)
    step = to_training_step(net, params=params)
    with pytest.raises(NetError, match="onnxruntime-gpu"):
        NativeEngine(step, step.initial_state(params), device="cuda")


def test_a_net_onnxruntime_training_refuses_trains_natively(tmp_path: Path) -> None:
    """deconv has no CPU gradient in onnxruntime-training; the native step differentiates it."""
    net = netdsl.parse(
        "input 2x8x8\nconv3x3/2(4, p=1) -> relu -> deconv(4, k=2) -> relu -> gap -> fc(3) -> softmax"
    )
    config = Config(epochs=3, batch=8, lr=0.1, schedule="constant", shift=0, threads=1)
    history = train(net, _data(), config, tmp_path / "deconv")
    assert history[-1]["train_loss"] < history[0]["train_loss"]
