"""backends/data.py: every `--data` source, and every kind of bad data, before any training.

Real MNIST (the t10k files in ../shared/data/mnist) is checked against the facts its README
states; the other formats against small files written here in their formats (CIFAR-10's python
pickles, folders of PNGs, npz). Each bad input is one NetError with a message that names it.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from netdsl.backends.data import sources as data
from netdsl.errors import ClassCount, DataMissing, ImageSizeMismatch
from netdsl.source import NetError

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"the MNIST test files are not in {MNIST}",
)


def test_digits_split_is_fixed_and_stratified() -> None:
    a, b = data.load("digits"), data.load("digits")
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert (len(a.x_train), len(a.x_test)) == (1438, 359)
    assert a.shape == (1, 8, 8) and a.x_train.dtype == np.float32
    assert a.x_train.min() == 0.0 and a.x_train.max() == 1.0
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20 % of each class


def test_digits_are_resized_to_the_net() -> None:
    fitted = data.fit(data.load("digits"), (1, 32, 32), 10, "lenet5")
    assert fitted.x_train.shape[1:] == (1, 32, 32)
    assert "images resized from 8x8 to 32x32" in fitted.notes


@needs_mnist
def test_mnist_t10k_only_matches_its_readme() -> None:
    d = data.load(f"mnist:{MNIST}")
    assert (len(d.x_train), len(d.x_test), d.shape) == (8000, 2000, (1, 28, 28))
    assert any("first 8,000 images train, the last 2,000 test" in n for n in d.notes)
    images = np.concatenate([d.x_train, d.x_test]) * 255
    assert images.mean() == pytest.approx(33.79, abs=0.01)
    counts = np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_dir(tmp_path: Path, n_train: int = 30, n_test: int = 12, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (
            ("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1-ubyte", np.arange(n) % 10),
        ):
            blob = _idx(array)
            name = f"{stem}-{kind}" + (".gz" if gz else "")
            (tmp_path / name).write_bytes(gzip.compress(blob) if gz else blob)
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_full_split(tmp_path: Path, gz: bool) -> None:
    d = data.load(f"mnist:{_mnist_dir(tmp_path, gz=gz)}")
    assert (len(d.x_train), len(d.x_test)) == (30, 12)
    assert d.notes == () and d.y_train[:3].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (b"", "header empty"),
        (b"\x00\x00\x09\x03" + bytes(12), "not an IDX file of unsigned bytes"),
        (bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big"), "IDX header cut short"),
        (
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28)) + bytes(100),
            "promises 2x28x28 = 1,568 bytes, the file holds 100",
        ),
        (gzip.compress(b"abc")[:-4], "cannot read"),
    ],
)
def test_corrupt_idx_headers(tmp_path: Path, blob: bytes, fragment: str) -> None:
    folder = _mnist_dir(tmp_path)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(blob)
    with pytest.raises(NetError, match=fragment):
        data.load(f"mnist:{folder}")


def test_mnist_mismatched_counts(tmp_path: Path) -> None:
    folder = _mnist_dir(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(5))))
    with pytest.raises(NetError, match=r"has 12 images but .* 5 labels"):
        data.load(f"mnist:{folder}")


def test_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataMissing, match="download=True"):
        data.load(f"mnist:{tmp_path}")


def _cifar(folder: Path, batches: int = 2, n: int = 6, labels_up_to: int = 10) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"labels": [int(v) for v in np.arange(n) % labels_up_to],
            b"batch_label": name.encode(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_cifar10_python_batches(tmp_path: Path) -> None:
    folder = _cifar(tmp_path / "cifar-10-batches-py")
    d = data.load(f"cifar10:{tmp_path}")  # the parent folder is found too
    assert (len(d.x_train), len(d.x_test), d.shape) == (12, 6, (3, 32, 32))
    raw = pickle.loads((folder / "data_batch_1").read_bytes())[b"data"]
    np.testing.assert_allclose(d.x_train[0, 1], raw[0, 1024:2048].reshape(32, 32) / 255)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (pickle.dumps({b"data": _Evil(), b"labels": []}), "refusing to load builtins.print"),
        (pickle.dumps({b"labels": [1]}), "not a CIFAR-10 python batch: KeyError"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "not N×3072"),
        (b"garbage", "not a CIFAR-10 python batch"),
    ],
)
def test_cifar10_bad_batches(tmp_path: Path, content: bytes, fragment: str) -> None:
    _cifar(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(content)
    with pytest.raises(NetError, match=fragment):
        data.load(f"cifar10:{tmp_path}")


def _folder(
    root: Path, classes: dict[str, int], size: tuple[int, int] = (12, 10), mode: str = "RGB"
) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 256, shape).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


def test_folder_of_classes(tmp_path: Path) -> None:
    d = data.load(f"folder:{_folder(tmp_path, {'cat': 5, 'dog': 10})}")
    assert (len(d.x_train), len(d.x_test), d.shape) == (12, 3, (3, 10, 12))
    assert "classes: cat, dog" in d.notes[0]


def test_folder_with_train_and_test(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 3, "b": 2}, mode="L")
    _folder(tmp_path / "test", {"a": 1, "b": 1}, mode="L")
    d = data.load(f"folder:{tmp_path}")
    assert (len(d.x_train), len(d.x_test), d.shape) == (5, 2, (1, 10, 12))
    assert d.y_test.tolist() == [0, 1]


def test_folder_errors(tmp_path: Path) -> None:
    _folder(tmp_path / "one", {"only": 2})
    with pytest.raises(NetError, match="one sub-folder of images per class, found 1"):
        data.load(f"folder:{tmp_path / 'one'}")
    _folder(tmp_path / "empty", {"a": 2})
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(NetError, match="class folder 'b' holds no images"):
        data.load(f"folder:{tmp_path / 'empty'}")
    _folder(tmp_path / "broken", {"a": 2, "b": 2})
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(NetError, match=r"cannot read .*bad\.png. as an image"):
        data.load(f"folder:{tmp_path / 'broken'}")


def _npz(path: Path, **changes: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (8, 1, 6, 6)).astype(np.uint8),
        "y_train": np.arange(8) % 3,
        "x_test": rng.random((4, 1, 6, 6)).astype(np.float32),
        "y_test": np.arange(4) % 3,
        **changes,
    }
    np.savez(path, **arrays)
    return path


def test_npz_scales_uint8_and_keeps_floats(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz")
    d = data.load(f"npz:{path}")
    raw = np.load(path)
    np.testing.assert_allclose(d.x_train, raw["x_train"] / 255, rtol=1e-6)
    np.testing.assert_array_equal(d.x_test, raw["x_test"])
    assert d.y_train.dtype == np.int64


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"x_train": np.zeros((8, 36), np.uint8)}, "x_train must be N×C×H×W"),
        ({"y_train": np.arange(7)}, "train has 8 images but labels of shape \\(7,\\)"),
        ({"y_test": np.array([0.0, 1, 2, 0])}, "y_test holds float64 values, not integer"),
        ({"y_train": np.array([0, 1, -1, 0, 1, 2, 0, 1])}, "negative label"),
        ({"x_test": np.full((4, 1, 6, 6), np.nan, np.float32)}, "NaN or infinite"),
        ({"x_test": np.zeros((4, 1, 5, 6), np.float32)}, "are 1x6x6 but test images 1x5x6"),
        (
            {"x_train": np.zeros((0, 1, 6, 6), np.uint8), "y_train": np.zeros(0, np.int64)},
            "the train split is empty",
        ),
        ({"x_train": np.zeros((8, 1, 6, 6), np.int32)}, "x_train holds int32"),
    ],
)
def test_npz_errors(tmp_path: Path, changes: dict[str, np.ndarray], fragment: str) -> None:
    with pytest.raises(NetError, match=fragment):
        data.load(f"npz:{_npz(tmp_path / 'd.npz', **changes)}")


def test_npz_missing_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 1, 2, 2)))
    with pytest.raises(NetError, match="lacks y_train, x_test, y_test"):
        data.load(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("imagenet:/x", "not a dataset spec"),
        ("digits:/x", "not a dataset spec"),
        ("npz", "not a dataset spec"),
        ("npz:/no/such.npz", "does not exist"),
    ],
)
def test_bad_specs(spec: str, fragment: str) -> None:
    with pytest.raises(NetError, match=fragment):
        data.load(spec)


@pytest.mark.parametrize(
    ("shape", "classes", "how", "fragment"),
    [
        ((3, 6, 6), 3, "auto", "1-channel images, but net takes 3 channels"),
        ((1, 8, 8), 3, "strict", "images are 6x6, but net takes 8x8"),
        ((1, 8, 8), 3, "auto", "images are 6x6, but net takes 8x8"),
        ((1, 4, 4), 3, "pad", "6x6 images cannot be padded to 4x4"),
        ((1, 6, 6), 2, "auto", "train labels go up to 2, but net scores only 2 classes"),
    ],
)
def test_fit_errors(
    tmp_path: Path, shape: tuple[int, ...], classes: int, how: str, fragment: str
) -> None:
    d = data.load(f"npz:{_npz(tmp_path / 'd.npz')}")
    with pytest.raises(NetError, match=fragment):
        data.fit(d, shape, classes, "net", how)


@pytest.mark.parametrize(
    ("shape", "classes", "how", "error", "facts"),
    [
        ((1, 8, 8), 3, "auto", ImageSizeMismatch, {"fits": ("resize", "pad")}),
        ((1, 4, 4), 3, "pad", ImageSizeMismatch, {"fits": ("resize",)}),
        ((1, 6, 6), 2, "auto", ClassCount, {"classes": 3}),
    ],
)
def test_fit_errors_carry_the_facts_for_advice(
    tmp_path: Path,
    shape: tuple[int, ...],
    classes: int,
    how: str,
    error: type[ClassCount | ImageSizeMismatch],
    facts: dict[str, object],
) -> None:
    """The library names no flag; the CLI builds its advice from the error's class and facts."""
    d = data.load(f"npz:{_npz(tmp_path / 'd.npz')}")
    with pytest.raises(error) as raised:
        data.fit(d, shape, classes, "net", how)
    assert raised.value.facts == facts and "--" not in str(raised.value)


def test_fit_pad_and_resize(tmp_path: Path) -> None:
    d = data.load(f"npz:{_npz(tmp_path / 'd.npz')}")
    padded = data.fit(d, (1, 10, 10), 3, "net", "pad")
    np.testing.assert_array_equal(padded.x_train[:, :, 2:8, 2:8], d.x_train)
    assert padded.x_train[:, :, :2].sum() == 0
    resized = data.fit(d, (1, 12, 12), 3, "net", "resize")
    assert resized.x_train.shape == (8, 1, 12, 12)


@pytest.mark.parametrize(("size", "out"), [(8, 32), (28, 32), (32, 16), (9, 9)])
def test_resize_keeps_constant_images_and_about_the_mean(size: int, out: int) -> None:
    flat = np.full((1, 1, size, size), 0.25, np.float32)
    np.testing.assert_allclose(data.resize(flat, (out, out)), 0.25, rtol=1e-6)
    x = np.random.default_rng(0).random((2, 3, size, size)).astype(np.float32)
    got = data.resize(x, (out, out))
    np.testing.assert_allclose(got.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=3e-3)
    if size == out:
        np.testing.assert_allclose(got, x, rtol=1e-6)
