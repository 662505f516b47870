"""Datasets for `netdsl train`: a `--data` spec in, checked float32 N×C×H×W arrays out.

The first step of training, beside the compiler rather than after it: `load(spec)` reads one of
`digits` (scikit-learn's bundled 8x8 digits, a fixed seeded split, no download), `mnist:DIR`
(IDX files, gzipped or not, and a downloader that checks sha256 sums: `data_mnist.py`),
`cifar10:DIR` (the
python pickle batches, read without running pickled code), `folder:DIR` (one sub-folder of
images per class, or train/ and test/ trees of them) and `npz:FILE` (x_train, y_train, x_test,
y_test). `fit(data, net)` then checks the arrays against
the net's input and classes, resizing or padding only where asked. Every problem with the data is
one `NetError`, raised before training starts. Pixels end up in [0, 1]: the exported model
expects the same.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.source import NetError

KINDS = ("digits", "mnist", "cifar10", "folder", "npz")
FITS = ("auto", "strict", "resize", "pad")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class Dataset:
    """Train and test splits: x float32 N×C×H×W in [0, 1], y int64 class ids."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    notes: tuple[str, ...] = ()
    resizable: bool = False  # the digits: always brought to the net's size

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        size = "x".join(map(str, self.shape))
        return f"{self.name}: {len(self.x_train):,} train / {len(self.x_test):,} test, {size}"


def load(spec: str, *, download: bool = False, mirror: str | None = None) -> Dataset:
    """Read the dataset a `--data` spec names (see the module's docstring)."""
    kind, _, where = spec.partition(":")
    if kind not in KINDS or (kind == "digits") != (not where):
        raise NetError(
            f"--data '{spec}' is not a dataset spec",
            None,
            ["use digits, mnist:DIR, cifar10:DIR, folder:DIR or npz:FILE"],
        )
    if kind == "digits":
        return digits()
    path = Path(where).expanduser()
    if kind == "mnist":
        from netdsl.backends.data import mnist as data_mnist

        if download:
            data_mnist.download(path, mirror or data_mnist.MIRROR)
        loaded: Dataset = data_mnist.mnist(path)
        return loaded
    if not path.exists():
        raise NetError(f"--data {spec}: '{path}' does not exist")
    return {"cifar10": cifar10, "folder": folder, "npz": npz}[kind](path)


def fit(
    data: Dataset, input_shape: tuple[int, ...], classes: int, net: str, how: str = "auto"
) -> Dataset:
    """Check `data` against a net that takes `input_shape` and scores `classes` classes;
    bring the images to its size where `how` (or, for the digits, `auto`) says so."""
    if how not in FITS:
        raise NetError(f"--fit must be one of {', '.join(FITS)}, got '{how}'")
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        if len(y) and int(y.max()) >= classes:
            raise NetError(
                f"{data.name}: {split} labels go up to {int(y.max())}, but {net} scores "
                f"only {classes} classes",
                None,
                [f"set the number of classes, e.g. --set classes={int(y.max()) + 1}"],
            )
    c, h, w = data.shape
    want = tuple(input_shape)
    if len(want) != 3:
        raise NetError(f"{net} takes input {'x'.join(map(str, want))}; images need C×H×W")
    if c != want[0]:
        raise NetError(
            f"{data.name} has {c}-channel images, but {net} takes {want[0]} channels "
            f"(input {'x'.join(map(str, want))})",
            None,
            ["change the net's `input` line, or convert the images"],
        )
    if (h, w) == want[1:]:
        return data
    how = "resize" if how == "auto" and data.resizable else how
    if how in ("auto", "strict"):
        raise NetError(
            f"{data.name} images are {h}x{w}, but {net} takes {want[1]}x{want[2]}",
            None,
            [
                "pass --fit resize (bilinear) or --fit pad (centre in zeros, as "
                "LeNet-5 did with 28x28 MNIST in 32x32)"
            ],
        )
    if how == "pad" and (h > want[1] or w > want[2]):
        raise NetError(
            f"--fit pad cannot fit {h}x{w} images into {want[1]}x{want[2]}",
            None,
            ["use --fit resize"],
        )
    change = resize if how == "resize" else pad
    verb = {"resize": "resized", "pad": "padded"}[how]
    note = f"images {verb} from {h}x{w} to {want[1]}x{want[2]}"
    return replace(
        data,
        x_train=change(data.x_train, want[1:]),
        x_test=change(data.x_test, want[1:]),
        notes=(*data.notes, note),
    )


# ---- bringing images to a size ----------------------------------------------------------------


def resize(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of N×C×H×W, pixel centres aligned (as PIL and torch's default); the
    filter widens when shrinking, so downscaling averages instead of aliasing."""
    rows, cols = _weights(x.shape[2], size[0]), _weights(x.shape[3], size[1])
    out = np.einsum("ih,nchw,jw->ncij", rows, x, cols, optimize=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def _weights(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    taps = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None] + 0.5 - centres[:, None]) / support)
    weights: np.ndarray = taps / taps.sum(axis=1, keepdims=True)
    return weights


def pad(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    top, left = (size[0] - x.shape[2]) // 2, (size[1] - x.shape[3]) // 2
    out = np.zeros((*x.shape[:2], *size), dtype=np.float32)
    out[:, :, top : top + x.shape[2], left : left + x.shape[3]] = x
    return out


def split(y: np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split, fixed by `seed`: indices of train and test, each sorted."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        cut = round(len(members) * test_fraction)
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def checked(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    notes: tuple[str, ...] = (),
) -> Dataset:
    """A dataset whose arrays agree: 4-D images of one size, one integer label each, >= 0."""
    for split_name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4:
            raise NetError(f"{name}: x_{split_name} must be N×C×H×W, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise NetError(
                f"{name}: {split_name} has {len(x)} images but labels of shape "
                f"{y.shape}; need one label per image"
            )
        if len(x) == 0:
            raise NetError(f"{name}: the {split_name} split is empty")
        if not np.issubdtype(y.dtype, np.integer):
            raise NetError(f"{name}: y_{split_name} holds {y.dtype} values, not integer class ids")
        if y.min() < 0:
            raise NetError(f"{name}: y_{split_name} has a negative label ({int(y.min())})")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise NetError(f"{name}: x_{split_name} holds NaN or infinite values")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise NetError(
            f"{name}: train images are {'x'.join(map(str, x_train.shape[1:]))} but "
            f"test images {'x'.join(map(str, x_test.shape[1:]))}"
        )
    return Dataset(
        name,
        _floats(x_train),
        y_train.astype(np.int64),
        _floats(x_test),
        y_test.astype(np.int64),
        notes,
    )


def _floats(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


# ---- the datasets -----------------------------------------------------------------------------


def digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits (16 grey levels), 80/20 split fixed by seed 0."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    train, test = split(y, 0.2, seed=0)
    data = checked(
        "digits",
        x[train],
        y[train],
        x[test],
        y[test],
        ("scikit-learn's digits, 80/20 stratified split fixed by seed 0",),
    )
    return replace(data, resizable=True)


def npz(path: Path) -> Dataset:
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise NetError(
                    f"'{path}' lacks {', '.join(missing)} (it has "
                    f"{', '.join(archive.files) or 'nothing'})",
                    None,
                    [f"an npz dataset holds {', '.join(keys)}"],
                )
            arrays = [archive[k] for k in keys]
    except (OSError, ValueError) as error:
        raise NetError(f"cannot read '{path}' as an .npz archive: {error}") from None
    for key, x in zip(keys[::2], arrays[::2], strict=True):
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise NetError(f"'{path}': {key} holds {x.dtype}; use uint8 (0-255) or floats")
    return checked(f"npz:{path}", *arrays)


# ---- CIFAR-10 (python batches) and folders of images -------------------------------------------


class _Batches(pickle.Unpickler):
    """Unpickles CIFAR's dicts of bytes, lists and numpy arrays, and nothing that runs code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("copyreg", "_reconstructor"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = _Batches(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data, labels = raw[b"data"], raw[b"labels"]
        x = np.asarray(data, dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise ValueError(f"data is {x.shape}, not N×3072")
        return x.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        raise NetError(
            f"'{path}' is not a CIFAR-10 python batch: {type(error).__name__}: {error}"
        ) from None


def cifar10(path: Path) -> Dataset:
    """data_batch_1..5 and test_batch of the python version (cifar-10-batches-py)."""
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    train = sorted(path.glob("data_batch_*"))
    if not train or not (path / "test_batch").is_file():
        raise NetError(
            f"cifar10:{path}: needs data_batch_1 ... and test_batch (the python "
            "version of CIFAR-10)"
        )
    parts = [_batch(p) for p in train]
    x_test, y_test = _batch(path / "test_batch")
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return checked(f"cifar10:{path}", x_train, y_train, x_test, y_test)


def folder(path: Path) -> Dataset:
    """DIR/<class>/<image> (split 80/20, fixed), or DIR/train/<class>/... and DIR/test/<class>/...
    Classes are the sub-folders in sorted order, ids from 0."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        classes = _classes(path / "train")
        x_train, y_train = _images(path / "train", classes)
        x_test, y_test = _images(path / "test", classes)
        return checked(
            f"folder:{path}", x_train, y_train, x_test, y_test, (f"classes: {', '.join(classes)}",)
        )
    classes = _classes(path)
    x, y = _images(path, classes)
    train, test = split(y, 0.2, seed=0)
    return checked(
        f"folder:{path}",
        x[train],
        y[train],
        x[test],
        y[test],
        (f"classes: {', '.join(classes)}; 80/20 split fixed by seed 0",),
    )


def _classes(path: Path) -> list[str]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise NetError(
            f"folder:{path}: needs one sub-folder of images per class, found {len(classes)}"
        )
    return classes


def _images(path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    xs, ys, first = [], [], None
    for label, name in enumerate(classes):
        files = sorted(p for p in (path / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NetError(f"folder:{path}: class folder '{name}' holds no images")
        for file in files:
            try:
                with Image.open(file) as image:
                    mode = "L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                    pixels = np.asarray(image.convert(mode), dtype=np.uint8)
            except (OSError, UnidentifiedImageError) as error:
                raise NetError(f"cannot read image '{file}': {error}") from None
            pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
            if first is not None and pixels.shape != first[1]:
                raise NetError(
                    f"'{file}' is {'x'.join(map(str, pixels.shape))}, but "
                    f"'{first[0]}' is {'x'.join(map(str, first[1]))}; images of a "
                    "folder dataset must share one size and mode"
                )
            first = first or (file, pixels.shape)
            xs.append(pixels)
            ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)
