"""Datasets for `netdsl train`: a dataset spec in, checked float32 N×C×H×W arrays out.

The first step of training, beside the compiler rather than after it: `load(spec)` reads one of
`digits` (scikit-learn's bundled 8x8 digits, a fixed seeded split, no download), `mnist:DIR`
(IDX files, gzipped or not, and a downloader that checks sha256 sums: `mnist.py`), `cifar10:DIR`
(the python pickle batches, read without running pickled code: `cifar.py`), `folder:DIR` (one
sub-folder of images per class, or train/ and test/ trees of them: `images.py`) and `npz:FILE`
(x_train, y_train, x_test, y_test, read header-first: `npy.py`; for a net of several inputs
`<input>_train`, `<input>_test` per input instead of x: `npz_inputs`). Sizes are checked against
`limits.py` before arrays are allocated. `fit(data, net)` then checks the arrays against the
net's input and classes, resizing or padding only where asked; `fingerprint` names the data a
checkpoint was trained on. Every problem with the data is one `NetError`, raised before training
starts. Pixels end up in [0, 1]: the exported model expects the same.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data import images, limits, npy
from netdsl.errors import ClassCount, ImageSizeMismatch
from netdsl.source import NetError

KINDS = ("digits", "mnist", "cifar10", "folder", "npz")
FITS = ("auto", "strict", "resize", "pad")
SAMPLE = 64  # images per split that a fingerprint hashes, evenly spaced
DIGITS = tuple(str(d) for d in range(10))
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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
    classes: tuple[str, ...] = ()  # class names by id, where the data has them
    # a net of several inputs: their names (x_train, x_test hold the first's samples) and the
    # other inputs' (train, test) arrays by name
    names: tuple[str, ...] = ()
    more: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        shapes = [self.x_train.shape[1:], *(train.shape[1:] for train, _ in self.more.values())]
        sizes = ["x".join(map(str, s)) for s in shapes]
        if self.names:  # several inputs, each by name
            sizes = [f"{n} {z}" for n, z in zip(self.names, sizes, strict=True)]
        size = ", ".join(sizes)
        return f"{self.name}: {len(self.x_train):,} train / {len(self.x_test):,} test, {size}"


def load(
    spec: str,
    *,
    download: bool = False,
    mirror: str | None = None,
    size: tuple[int, int] | None = None,
    inputs: Mapping[str, tuple[int, ...]] | None = None,
) -> Dataset:
    """Read the dataset a spec names (see the module's docstring). A folder dataset of images
    of mixed sizes is resized on load, to `size` (H, W) if given, else to its commonest size.
    `inputs` (name -> sample shape) is given for a net of several inputs: only an npz file
    holds their arrays (`npz_inputs`)."""
    kind, _, where = spec.partition(":")
    if kind not in KINDS or (kind == "digits") != (not where):
        raise NetError(
            f"'{spec}' is not a dataset spec",
            None,
            ["use digits, mnist:DIR, cifar10:DIR, folder:DIR or npz:FILE"],
        )
    if inputs is not None and len(inputs) > 1:
        if kind != "npz":
            raise NetError(
                f"a net of several inputs ({', '.join(inputs)}) reads its data from an npz, "
                f"not {kind}",
                None,
                [f"an npz of {', '.join(input_keys(tuple(inputs)))}"],
            )
        path = Path(where).expanduser()
        if not path.exists():
            raise NetError(f"{spec}: '{path}' does not exist")
        return npz_inputs(path, inputs)
    if kind == "digits":
        return replace(digits(), classes=DIGITS)
    path = Path(where).expanduser()
    if kind == "mnist":
        from netdsl.backends.data import mnist as data_mnist

        if download:
            data_mnist.download(path, mirror or data_mnist.MIRROR)
        loaded: Dataset = data_mnist.mnist(path)
        return replace(loaded, classes=DIGITS)
    if not path.exists():
        raise NetError(f"{spec}: '{path}' does not exist")
    if kind == "cifar10":
        from netdsl.backends.data.cifar import cifar10

        return replace(checked(f"cifar10:{path}", *cifar10(path)), classes=CIFAR10)
    return folder(path, size) if kind == "folder" else npz(path)


def fit(
    data: Dataset, input_shape: tuple[int, ...], classes: int, net: str, how: str = "auto"
) -> Dataset:
    """Check `data` against a net that takes `input_shape` and scores `classes` classes;
    bring the images to its size where `how` (or, for the digits, `auto`) says so."""
    if how not in FITS:
        raise NetError(f"fit must be one of {', '.join(FITS)}, got '{how}'")
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        if len(y) and int(y.max()) >= classes:
            raise ClassCount(
                f"{data.name}: {split} labels go up to {int(y.max())}, but {net} scores "
                f"only {classes} classes",
                classes=int(y.max()) + 1,
            )
    if data.names:  # several inputs: their shapes were checked against the net's on load
        return data
    want = tuple(input_shape)
    if len(want) != 3 or len(data.shape) != 3:  # signals and volumes: as they are
        if data.shape != want:
            raise NetError(
                f"{data.name} holds samples of {'x'.join(map(str, data.shape))}, but {net} takes "
                f"{'x'.join(map(str, want))} (only images are resized or padded)"
            )
        return data
    c, h, w = data.shape
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
    fits = ("resize", "pad") if h <= want[1] and w <= want[2] else ("resize",)
    if how in ("auto", "strict"):
        raise ImageSizeMismatch(
            f"{data.name} images are {h}x{w}, but {net} takes {want[1]}x{want[2]}",
            fits=fits,
        )
    if how == "pad" and how not in fits:
        raise ImageSizeMismatch(
            f"{h}x{w} images cannot be padded to {want[1]}x{want[2]}, which is smaller",
            fits=fits,
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
    """N×C×H×W brought to `size` (H, W) by the one resize rule, `images.resize`."""
    return images.resize(x, size[0], size[1])


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
    """A dataset whose arrays agree: samples of one size (signals N×C×L, images N×C×H×W or
    volumes N×C×D×H×W), one integer label each, >= 0."""
    for split_name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4, 5):
            raise NetError(
                f"{name}: x_{split_name} must be N×C×H×W (N×C×L signals, N×C×D×H×W volumes), "
                f"got shape {x.shape}"
            )
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
    floats = 4 * (x_train.size + x_test.size)
    limits.check(f"the dataset {name} as float32", floats, limits.MAX_DATASET_BYTES)
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
    """x_train, y_train, x_test, y_test of an .npz, their headers checked before reading."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    declared = _members(path, keys, f"an npz dataset holds {', '.join(keys)}")
    for key in keys[::2]:
        m = declared[key]
        if m.dtype != np.uint8 and m.dtype.kind != "f":
            raise NetError(f"'{path}': {key} holds {m.dtype}; use uint8 (0-255) or floats")
    floats = sum(4 * math.prod(declared[k].shape) for k in keys[::2])
    limits.check(f"the dataset npz:{path} as float32", floats, limits.MAX_DATASET_BYTES)
    a = npy.load(path, keys)
    return checked(f"npz:{path}", a["x_train"], a["y_train"], a["x_test"], a["y_test"])


def _members(path: Path, keys: Sequence[str], holds: str) -> dict[str, npy.Member]:
    """The headers of an npz's members (nothing else read), every one of `keys` among them."""
    if not path.is_file():
        raise NetError(f"npz:{path}: '{path}' is not a file")
    declared = npy.members(path)
    missing = [k for k in keys if k not in declared]
    if missing:
        raise NetError(
            f"'{path}' lacks {', '.join(missing)} (it has {', '.join(declared) or 'nothing'})",
            None,
            [holds],
        )
    return declared


def input_keys(names: tuple[str, ...]) -> list[str]:
    """The members of an npz dataset for a net with the inputs `names`."""
    return [f"{n}_{split}" for split in ("train", "test") for n in (*names, "y")]


def npz_inputs(path: Path, inputs: Mapping[str, tuple[int, ...]]) -> Dataset:
    """The dataset of a net of several inputs: `<input>_train` and `<input>_test` for each
    input (N × the input's shape, uint8 scaled to [0, 1] or floats used as they are), and
    `y_train`, `y_test`; each member's header is checked against the net before reading."""
    names = tuple(inputs)
    keys = input_keys(names)
    if "y" in names:
        raise NetError(
            f"an input named 'y' cannot be told from the labels y_train, y_test of '{path}'",
            None,
            ["rename the input"],
        )
    holds = f"for a net with the inputs {', '.join(names)}, an npz holds {', '.join(keys)}"
    declared = _members(path, keys, holds)
    for split in ("train", "test"):
        for name, want in inputs.items():
            key, m = f"{name}_{split}", declared[f"{name}_{split}"]
            if m.dtype != np.uint8 and m.dtype.kind != "f":
                raise NetError(f"'{path}': {key} holds {m.dtype}; use uint8 (0-255) or floats")
            if not m.shape or m.shape[1:] != tuple(want):
                have = "x".join(map(str, m.shape))
                raise NetError(
                    f"'{path}': {key} is {have or 'a scalar'}, but input {name} takes N x "
                    f"{'x'.join(map(str, want))}"
                )
            y = declared[f"y_{split}"]
            if y.shape != m.shape[:1]:
                raise NetError(
                    f"'{path}': {key} holds {m.shape[0]} samples but y_{split} is "
                    f"{'x'.join(map(str, y.shape)) or 'a scalar'}; need one label per sample"
                )
    floats = sum(4 * math.prod(declared[k].shape) for k in keys if not k.startswith("y_"))
    limits.check(f"the dataset npz:{path} as float32", floats, limits.MAX_DATASET_BYTES)
    a = npy.load(path, keys)
    for key in keys:
        x = a[key]
        if key.startswith("y_"):
            if not np.issubdtype(x.dtype, np.integer):
                raise NetError(f"'{path}': {key} holds {x.dtype} values, not integer class ids")
            if len(x) and x.min() < 0:
                raise NetError(f"'{path}': {key} has a negative label ({int(x.min())})")
            if not len(x):
                raise NetError(f"'{path}': the {key[2:]} split is empty")
        elif np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise NetError(f"'{path}': {key} holds NaN or infinite values")
    first, *others = names
    return Dataset(
        f"npz:{path}",
        _floats(a[f"{first}_train"]),
        a["y_train"].astype(np.int64),
        _floats(a[f"{first}_test"]),
        a["y_test"].astype(np.int64),
        names=names,
        more={n: (_floats(a[f"{n}_train"]), _floats(a[f"{n}_test"])) for n in others},
    )


def folder(path: Path, size: tuple[int, int] | None = None) -> Dataset:
    """DIR/<class>/<image> (split 80/20, fixed), or DIR/train/<class>/... and DIR/test/<class>/...
    Classes are the sub-folders in sorted order, ids from 0; images follow `images.py`'s rule."""
    if not path.is_dir():
        raise NetError(f"folder:{path}: '{path}' is not a folder")
    if (path / "train").is_dir() and (path / "test").is_dir():
        names = images.classes(path / "train")
        x_train, y_train, notes = images.folder_images(path / "train", names, size)
        x_test, y_test, more = images.folder_images(path / "test", names, size or x_train.shape[2:])
        if x_train.shape[1] != x_test.shape[1]:  # grey test images beside colour training ones
            c = max(x_train.shape[1], x_test.shape[1])
            x_train, x_test = (np.repeat(x, c // x.shape[1], axis=1) for x in (x_train, x_test))
        said = (f"classes: {', '.join(names)}", *notes, *more)
        data = checked(f"folder:{path}", x_train, y_train, x_test, y_test, said)
        return replace(data, classes=tuple(names))
    names = images.classes(path)
    x, y, notes = images.folder_images(path, names, size)
    train, test = split(y, 0.2, seed=0)
    said = (f"classes: {', '.join(names)}; 80/20 split fixed by seed 0", *notes)
    data = checked(f"folder:{path}", x[train], y[train], x[test], y[test], said)
    return replace(data, classes=tuple(names))


def fingerprint(data: Dataset) -> dict[str, Any]:
    """What names a dataset in a checkpoint: its name, sizes, and a sha256 of every label and
    of SAMPLE evenly spaced images of each split (cheap, and any real change shows)."""
    digest = hashlib.sha256()
    for k, (x, y) in enumerate(((data.x_train, data.y_train), (data.x_test, data.y_test))):
        picks = np.unique(np.linspace(0, len(x) - 1, num=min(SAMPLE, len(x))).astype(np.int64))
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        for array in (x, *(pair[k] for pair in data.more.values())):  # every input's
            digest.update(np.ascontiguousarray(array[picks], dtype=np.float32).tobytes())
    return {
        "name": data.name,
        "train": len(data.x_train),
        "test": len(data.x_test),
        "shape": list(data.shape),
        "sha256": digest.hexdigest(),
    }


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How the data `now` differs from the `saved` fingerprint, in words; [] if it does not."""
    said = []
    for key, label in (("train", "training images"), ("test", "test images")):
        if saved.get(key) != now[key]:
            said.append(f"{label} {saved.get(key)} -> {now[key]}")
    if saved.get("shape") != now["shape"]:
        shape = "x".join(map(str, saved.get("shape") or ["?"]))
        said.append(f"image size {shape} -> {'x'.join(map(str, now['shape']))}")
    if not said and saved.get("sha256") != now["sha256"]:
        said.append("the same sizes but other images or labels")
    return said
