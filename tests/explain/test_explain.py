"""The lectures' visualisations on LeNet-5 trained on MNIST: checks that mean something.

The fixture trains LeNet-5 with the native engine on the first 2,000 images of the shared MNIST
(its t10k split; 3 epochs, a few seconds) and tests on images 8,000 on. Saliency and occlusion
must put their mass on the digit's strokes rather than the background; the top images of a
channel of the last convolution must share a class far more often than chance; the saliency
gradient must equal PyTorch's autograd on the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import netdsl
from netdsl.backends.data.mnist import read_idx
from netdsl.backends.data.sources import Dataset, pad
from netdsl.backends.explain import maps
from netdsl.cli import main

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
TRAIN, TEST = 2000, 8000  # the first 2,000 images train; the test images start at 8,000

if not (MNIST / "t10k-images-idx3-ubyte.gz").exists():
    pytest.skip(f"the shared MNIST is not at {MNIST}", allow_module_level=True)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(MNIST / "t10k-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255
    y = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return pad(x, (32, 32)), y


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, digits: Any) -> onnx.ModelProto:
    from netdsl.backends.train.loop import train
    from netdsl.backends.train.settings import Config

    x, y = digits
    data = Dataset("mnist 2k", x[:TRAIN], y[:TRAIN], x[TEST : TEST + 500], y[TEST : TEST + 500])
    out = tmp_path_factory.mktemp("lenet")
    config = Config(
        epochs=3, batch=32, optimizer="sgd", lr=0.1, shift=0, engine="onnx", checkpoint_every=0
    )
    history = train(netdsl.load("lenet5"), data, config, out)
    assert history[-1]["test_accuracy"] > 0.85
    return onnx.load(out / "model.onnx")


def _strokes_over_background(found: np.ndarray, x: np.ndarray) -> float:
    strokes = x[:, 0] > 0.5
    on = np.array([np.abs(m[s]).mean() for m, s in zip(found, strokes, strict=True)])
    off = np.array([np.abs(m[~s]).mean() for m, s in zip(found, strokes, strict=True)])
    return float(on.mean() / off.mean())


def _near_strokes(x: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within `radius` (a square) of a stroke pixel."""
    from numpy.lib.stride_tricks import sliding_window_view

    ink = np.pad(x[:, 0] > 0.5, ((0, 0), (radius, radius), (radius, radius)))
    window = (2 * radius + 1, 2 * radius + 1)
    return np.asarray(sliding_window_view(ink, window, axis=(1, 2)).any(axis=(3, 4)))


def test_saliency_falls_around_the_strokes(trained: onnx.ModelProto, digits: Any) -> None:
    # The raw gradient of this tanh LeNet, trained on normalised inputs as `netdsl train` does,
    # is largest where ink would change the score: on and just beside the strokes, less on the
    # strokes themselves (measured: strokes 0.8x the rest of the image; the digit's 3 px
    # surroundings 1.85x the far background). So the check is on the surroundings.
    x, y = digits
    images = x[TEST : TEST + 20]
    found, chosen = maps.saliency(trained, images, y[TEST : TEST + 20])
    assert found.shape == (20, 32, 32) and list(chosen) == list(y[TEST : TEST + 20])
    near = _near_strokes(images, 3)
    inside = np.mean([m[n].mean() for m, n in zip(found, near, strict=True)])
    outside = np.mean([m[~n].mean() for m, n in zip(found, near, strict=True)])
    assert inside > 1.4 * outside
    assert all(m[n].mean() > m[~n].mean() for m, n in zip(found, near, strict=True))


def test_occlusion_falls_on_the_strokes(trained: onnx.ModelProto, digits: Any) -> None:
    x, y = digits
    images = x[TEST : TEST + 20]
    found, _ = maps.occlusion(trained, images, y[TEST : TEST + 20], patch=6, stride=2)
    assert found.shape == (20, 32, 32)
    assert _strokes_over_background(np.maximum(found, 0), images) > 2.0


def test_saliency_is_the_gradient_pytorch_computes(trained: onnx.ModelProto, digits: Any) -> None:
    torch = pytest.importorskip("torch")
    from bench import peers

    peer = peers.LeNet5(softmax=False)
    weights = {t.name: numpy_helper.to_array(t).copy() for t in trained.graph.initializer}
    peers.from_netdsl(peer, weights)
    x, _ = digits
    images = torch.tensor(x[TEST : TEST + 4], requires_grad=True)
    classes = [3, 1, 4, 1]
    # train writes the per-channel normalisation into the model, in front of the net
    mean, std = (torch.tensor(weights[f"preprocess.{k}"]) for k in ("mean", "std"))
    peer((images - mean) / std)[range(4), classes].sum().backward()
    expected = images.grad.abs().amax(dim=1).numpy()
    found, _ = maps.saliency(trained, x[TEST : TEST + 4], classes)
    # relative to the map's largest value: elementwise, fp32 sums in another order differ
    assert np.abs(found - expected).max() <= 1e-4 * np.abs(expected).max()


def test_the_top_images_of_a_channel_share_a_class(trained: onnx.ModelProto, digits: Any) -> None:
    x, y = digits
    images, labels = x[TEST : TEST + 2000], y[TEST : TEST + 2000]
    layer = maps.default_layer(trained)
    order, values = maps.top_images(trained, layer, images, k=16)
    assert layer == "conv3" and order.shape == values.shape == (120, 16)
    assert np.all(np.diff(values, axis=1) <= 0)  # best first
    share = np.array([np.bincount(labels[row], minlength=10).max() / 16 for row in order])
    # chance is about 0.1 (and the largest of 16 draws from 10 classes about 0.25)
    assert np.median(share) > 0.5 and np.mean(share > 0.35) > 0.75


def test_the_filters_are_the_first_conv_weights(trained: onnx.ModelProto) -> None:
    w = maps.filters(trained)
    expected = {t.name: t for t in trained.graph.initializer}["conv1.weight"]
    assert w.shape == (6, 1, 5, 5) and np.array_equal(w, numpy_helper.to_array(expected))


@pytest.mark.parametrize(
    ("kind", "flags", "shape"),
    [
        ("filters", [], [6, 1, 5, 5]),
        ("saliency", ["--images", "4"], [4, 32, 32]),
        ("occlusion", ["--images", "4", "--patch", "8", "--stride", "4"], [4, 32, 32]),
        ("top", ["--images", "200", "-k", "5", "--channel", "3"], [120, 5]),
    ],
)
def test_the_commands_write_a_png_and_the_arrays(
    kind: str,
    flags: list[str],
    shape: list[int],
    trained: onnx.ModelProto,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(trained, model)
    png = tmp_path / f"{kind}.png"
    data = ["--data", f"mnist:{MNIST}", "--fit", "pad"] if kind != "filters" else []
    capsys.readouterr()
    argv = ["explain", kind, str(model), "-o", str(png), *data, *flags, "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == shape and np.load(tmp_path / f"{kind}.npy").shape == tuple(shape)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["explain", "filters", "lenet5"], "has no trained weights"),
        (["explain", "top", "{m}", "--layer", "nope"], "has no image-shaped tensor 'nope'"),
        (["explain", "top", "{m}", "--channel", "120"], "conv3 has 120 channels"),
        (["explain", "saliency", "{m}", "--class", "10"], "one class from 0 to 9"),
        (["explain", "occlusion", "{m}", "--patch", "40"], "the patch must be 1 to 32"),
        (["explain", "filters", "{m}", "-o", "{d}/f.jpg"], "explain writes a PNG"),
    ],
)
def test_mistakes_are_one_clear_error(
    argv: list[str],
    fragment: str,
    trained: onnx.ModelProto,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = tmp_path / "model.onnx"
    onnx.save(trained, model)
    capsys.readouterr()
    given = [a.format(m=model, d=tmp_path) for a in argv]
    assert main([*given, "--images", "20"] if "top" in argv else given) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
