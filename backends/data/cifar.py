"""CIFAR-10 for `cifar10:DIR`: the python version's pickled batches, read without running code.

Part of the data step (`sources.py` calls it). The batches are pickles, which anyone may have
written, so each is read by an unpickler that builds only dicts, lists, bytes, ints and plain
numpy arrays, after three checks that keep a small file from allocating much: the file is at
most `limits.MAX_PICKLE_BYTES`, an array the pickle asks numpy to make is no larger than the
file (a real pickle carries its data), and the batch's `data` must already be a uint8 array of
N×3072 and its `labels` N small ints before numpy converts anything (a list that holds itself
a million times over is small in a pickle and huge as an array).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data import limits
from netdsl.source import NetError

PIXELS = 3 * 32 * 32


class _Batch(pickle.Unpickler):
    """Unpickles CIFAR's dicts of bytes, lists and numpy arrays, and nothing that runs code."""

    SAFE = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("copyreg", "_reconstructor"),
            ("_codecs", "encode"),
        }
    )
    RECONSTRUCT = frozenset(
        {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
    )

    def __init__(self, blob: bytes) -> None:
        super().__init__(io.BytesIO(blob), encoding="bytes")
        self.budget = len(blob)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.RECONSTRUCT:
            return self._reconstruct
        if (module, name) not in self.SAFE:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """numpy's `_reconstruct`, refusing to allocate more than the file could fill."""
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError("refusing an ndarray subclass")
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise pickle.UnpicklingError(f"an array of shape {shape!r}")
        try:
            itemsize = np.dtype(dtype).itemsize
        except TypeError:
            raise pickle.UnpicklingError(f"an array of dtype {dtype!r}") from None
        if limits.nbytes(dims, itemsize) > self.budget:
            raise pickle.UnpicklingError(
                f"an array of {limits.size(limits.nbytes(dims, itemsize))} from a file of "
                f"{limits.size(self.budget)}"
            )
        array: np.ndarray = np.ndarray.__new__(subtype, dims, dtype)
        return array


def batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: N×3×32×32 uint8 images and N int64 labels."""
    try:
        length = path.stat().st_size
        limits.check(f"the CIFAR-10 batch '{path}'", length, limits.MAX_PICKLE_BYTES)
        raw = _Batch(path.read_bytes()).load()
        if not isinstance(raw, dict):
            raise TypeError(f"it holds a {type(raw).__name__}, not a dict")
        data, labels = raw[b"data"], raw[b"labels"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise TypeError(
                f"data is {type(data).__name__} {getattr(data, 'dtype', '')}, not a uint8 array"
            )
        if data.ndim != 2 or data.shape[1] != PIXELS:
            raise ValueError(f"data is {data.shape}, not N×{PIXELS}")
        if not isinstance(labels, list) or len(labels) != len(data):
            raise ValueError(f"{len(data)} images need a list of as many labels")
        if not all(type(v) is int and 0 <= v < 2**31 for v in labels):
            raise ValueError("labels must be ints from 0")
        return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
    except NetError:
        raise
    except (
        OSError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        pickle.UnpicklingError,
        AttributeError,
        IndexError,
    ) as error:
        raise NetError(
            f"'{path}' is not a CIFAR-10 python batch: {type(error).__name__}: {error}"
        ) from None


def cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """data_batch_1..5 and test_batch of the python version (cifar-10-batches-py)."""
    if not path.is_dir():
        raise NetError(f"cifar10:{path}: '{path}' is not a folder")
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    train = sorted(path.glob("data_batch_*"))
    if not train or not (path / "test_batch").is_file():
        raise NetError(
            f"cifar10:{path}: needs data_batch_1 ... and test_batch (the python "
            "version of CIFAR-10)"
        )
    parts = [batch(p) for p in train]
    x_test, y_test = batch(path / "test_batch")
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return x_train, y_train, x_test, y_test
