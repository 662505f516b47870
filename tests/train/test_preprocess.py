"""Preprocessing that travels with the model, and augmentation that respects the image's axes.

Checked against independent oracles: numpy's own mean/std, onnxruntime running the original
model on inputs normalised by hand, PyTorch's antialiased bilinear interpolation for the one
resize; and against the facts of the issue (a C×1×T signal is never blanked by a shift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backends.data import images
from netdsl.backends.data import sources as data
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import preprocess as pre
from netdsl.backends.train.graph import inference_model
from netdsl.source import NetError

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    ("size", "shift", "expected"),
    [
        ((28, 28), None, (2, 2)),  # MNIST: 28 / 14
        ((32, 32), None, (2, 2)),
        ((224, 224), None, (16, 16)),
        ((1, 64), None, (0, 4)),  # a 1-D signal written 1xT: the height axis stays
        ((1, 64), 2, (0, 2)),  # even when a shift is asked for
        ((8, 8), 2, (1, 1)),  # never more than an eighth of a side
        ((5, 100), 3, (0, 3)),
        ((28, 28), 0, (0, 0)),
    ],
)
def test_shifts_follow_each_axis(
    size: tuple[int, int], shift: int | None, expected: tuple[int, int]
) -> None:
    assert pre.shifts(size, shift) == expected


@pytest.mark.parametrize("shift", [None, 2, 5])
def test_a_signal_one_pixel_high_is_never_blanked(shift: int | None) -> None:
    x = np.ones((64, 2, 1, 40), np.float32)
    augment = pre.Augmenter((2, 1, 40), shift, False, np.zeros(2, np.float32))
    y = augment(x, np.random.default_rng(0))
    assert y.shape == x.shape
    assert (y.sum(axis=(1, 2, 3)) > 0).all()  # every signal keeps most of itself
    assert (y[:, :, 0, 5:-5] == 1).all()  # the middle never moves out


def test_shift_and_flip_keep_the_pixels_and_fill_with_black() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((50, 3, 16, 16)).astype(np.float32)
    fill = np.array([-1.0, -2.0, -3.0], np.float32)
    y = pre.Augmenter((3, 16, 16), 2, True, fill)(x, np.random.default_rng(0))
    for i in range(len(x)):
        found = False
        for flipped in (x[i], x[i, :, :, ::-1]):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    want = np.empty_like(flipped)
                    want[...] = fill.reshape(3, 1, 1)
                    src = flipped[:, max(0, dy) : 16 + min(0, dy), max(0, dx) : 16 + min(0, dx)]
                    want[:, max(0, -dy) : 16 - max(0, dy), max(0, -dx) : 16 - max(0, dx)] = src
                    found = found or np.array_equal(want, y[i])
        assert found, f"image {i} is not a shifted (and maybe flipped) copy"


@pytest.mark.parametrize(
    ("mean", "std", "normalise", "expected"),
    [
        (None, None, True, "measured"),
        ((0.5,), (0.25,), True, ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))),
        ((0.1, 0.2, 0.3), None, True, "mean given"),
        (None, None, False, ((0.0,) * 3, (1.0,) * 3)),
    ],
)
def test_normalisation_values(mean: object, std: object, normalise: bool, expected: object) -> None:
    x = np.random.default_rng(0).random((20, 3, 4, 4)).astype(np.float32)
    norm = pre.normalisation(x, mean, std, normalise)  # type: ignore[arg-type]
    measured_mean = x.mean(axis=(0, 2, 3)).tolist()
    measured_std = x.std(axis=(0, 2, 3)).tolist()
    if expected == "measured":
        assert norm.mean == pytest.approx(measured_mean, abs=1e-6)
        assert norm.std == pytest.approx(measured_std, abs=1e-6)
    elif expected == "mean given":
        assert norm.mean == (0.1, 0.2, 0.3)
        assert norm.std == pytest.approx(measured_std, abs=1e-6)
    else:
        assert (norm.mean, norm.std) == expected


@pytest.mark.parametrize(
    ("mean", "std", "fragment"),
    [((0.1, 0.2), None, "2 mean values for images of 3 channels"), (None, (0.0,), "above 0")],
)
def test_normalisation_refusals(mean: object, std: object, fragment: str) -> None:
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(NetError, match=fragment):
        pre.normalisation(x, mean, std, True)  # type: ignore[arg-type]


def test_the_model_normalises_its_own_input_and_records_it() -> None:
    net = netdsl.load("lenet5")
    params = wt.initialise(net, "auto", 0)
    norm = pre.Normalisation((0.1307,), (0.3081,))
    plain = inference_model(net, params)
    meta = pre.metadata((1, 32, 32), norm, [str(d) for d in range(10)])
    model = pre.with_normalisation(inference_model(net, params, meta), norm)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).random((4, 1, 32, 32)).astype(np.float32)

    def run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        out: np.ndarray = s.run(["output"], {"input": x})[0]
        return out

    np.testing.assert_allclose(run(model, x), run(plain, (x - 0.1307) / 0.3081), rtol=1e-5)
    record = pre.read_metadata({p.key: p.value for p in model.metadata_props})
    assert record["mean"] == [0.1307] and record["std"] == [0.3081]
    assert record["classes"][3] == "3" and record["input"] == [1, 32, 32]


@pytest.mark.parametrize(
    ("shape", "size"),
    [((1, 3, 28, 28), (32, 32)), ((2, 1, 40, 30), (13, 17)), ((3, 9, 9), (27, 27))],
)
def test_the_one_resize_is_pytorchs_antialiased_bilinear(
    shape: tuple[int, ...], size: tuple[int, int]
) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    ours = images.resize(x, *size)
    batch = torch.from_numpy(x if x.ndim == 4 else x[None])
    theirs = torch.nn.functional.interpolate(
        batch, size=size, mode="bilinear", align_corners=False, antialias=True
    ).numpy()
    np.testing.assert_allclose(ours, theirs if x.ndim == 4 else theirs[0], atol=1e-5)


def test_a_folder_of_mixed_sizes_is_resized_on_load(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, sizes in {"a": [(12, 10)] * 4, "b": [(12, 10), (20, 16), (8, 8), (12, 10)]}.items():
        (tmp_path / name).mkdir()
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w)).astype(np.uint8)
            Image.fromarray(pixels, "L").save(tmp_path / name / f"{i}.png")
    d = data.load(f"folder:{tmp_path}")
    assert d.shape == (1, 10, 12)  # the commonest size
    assert d.classes == ("a", "b")
    assert any("2 images of other sizes resized to 10x12 on load" in n for n in d.notes)
    sized = data.load(f"folder:{tmp_path}", size=(16, 16))
    assert sized.shape == (1, 16, 16)
