"""Preprocessing that travels with a trained model: normalisation, augmentation, metadata.

Between the data room (`backends/data`: images as N×C×H×W float32 in [0, 1]) and the training
loop (`loop.py`). Before a run, `normalisation` picks the per-channel mean and standard deviation
(measured on the training split, or given) and the loop trains on normalised images. The model
the run exports starts with that normalisation as ONNX nodes (`with_normalisation`: Sub, Div on
the input), so any runtime that feeds it [0, 1] pixels gets what the net was trained on, and
its metadata (`metadata`) says how images become those pixels (size, channels, scale, the
resize rule of `backends/data/images.py`, mean, std, class names): `netdsl run` and `compare`
read it back (`read_metadata`). Per step, `Augmenter` draws the random shifts (a zero-padded
random crop: the same thing) and horizontal flips of a batch; a shift moves an axis only by up to
an eighth of its size (none on an axis of one pixel: a 1-D signal written C×1×T stays whole).
Both, and the statistics, take samples of any rank (signals N×C×L, volumes N×C×D×H×W: each
spatial axis shifted, the last one flipped); images are drawn exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from netdsl.backends.passes.normalise import (
    KEY,
    Normalisation,
    metadata,
    read_metadata,
    with_normalisation,
)
from netdsl.source import NetError

AUTO_SHIFT = 14  # the automatic shift is an axis's size / 14: 2 px on MNIST's 28, 0 below 7
MIN_STD = 1e-6  # a channel that never varies is divided by 1, not by ~0

# what the exported model carries: in the passes room, so compilation can carry it too
__all__ = ["KEY", "Normalisation", "metadata", "read_metadata", "with_normalisation"]


def normalisation(
    x: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None, normalise: bool
) -> Normalisation:
    """The run's per-channel normalisation: the given mean/std, else (with `normalise`) those
    of the training images `x`, else the identity. One value given for C channels is repeated."""
    c = x.shape[1]
    if not normalise:
        return Normalisation((0.0,) * c, (1.0,) * c)
    if mean is None:
        m = tuple(float(v) for v in x.mean(axis=_spread(x), dtype=np.float64))
    else:
        m = _per_channel(mean, c, "mean")
    if std is None:
        s = tuple(float(v) for v in x.std(axis=_spread(x), dtype=np.float64))
    else:
        s = _per_channel(std, c, "std")
    if any(v <= 0 for v in s):
        raise NetError(f"the standard deviations must be above 0, got {', '.join(map(str, s))}")
    return Normalisation(tuple(round(v, 6) for v in m), tuple(max(round(v, 6), MIN_STD) for v in s))


def _spread(x: np.ndarray) -> tuple[int, ...]:
    """Every axis of N×C×... but the channels'."""
    return (0, *range(2, x.ndim))


def _per_channel(values: Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    if len(values) == 1:
        return (float(values[0]),) * channels
    if len(values) != channels:
        raise NetError(
            f"{len(values)} {what} values for images of {channels} channels (give 1 or {channels})"
        )
    return tuple(float(v) for v in values)


def shifts(size: Sequence[int], shift: int | None) -> tuple[int, ...]:
    """The largest shift along each spatial axis: `shift` pixels (None: the axis's size /
    AUTO_SHIFT), never more than an eighth of the axis, so an axis of a few pixels keeps still."""
    return tuple(min(n // AUTO_SHIFT if shift is None else shift, n // 8) for n in size)


class Augmenter:
    """A batch's random shifts (zero-filled in pixel space) and horizontal flips."""

    def __init__(
        self, image: Sequence[int], shift: int | None, flip: bool, fill: np.ndarray
    ) -> None:
        self.most = shifts(image[1:], shift)
        self.flip = flip
        spatial = [1] * (len(image) - 1)
        self.fill = fill.reshape(1, -1, *spatial).astype(np.float32)  # black, normalised

    @property
    def active(self) -> bool:
        return self.flip or any(self.most)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.active:
            return x
        n, size, most = len(x), x.shape[2:], self.most
        moved = any(most)
        if moved:  # each sample moved along every spatial axis (a signal's, an image's two ...)
            grown = tuple(s + 2 * m for s, m in zip(size, most, strict=True))
            padded = np.empty((n, x.shape[1], *grown), np.float32)
            padded[...] = self.fill
            inner = (slice(m, m + s) for m, s in zip(most, size, strict=True))
            padded[(slice(None), slice(None), *inner)] = x
            moves = rng.integers(0, [2 * m + 1 for m in most], size=(n, len(most))).tolist()
            x = np.empty_like(x)
            for i, move in enumerate(moves):
                window = (slice(None), *(slice(d, d + s) for d, s in zip(move, size, strict=True)))
                x[i] = padded[i][window]
        if self.flip:  # mirrored along the last axis (left to right; a signal in time)
            turn = rng.random(n) < 0.5
            x = x.copy() if not moved else x
            x[turn] = x[turn][..., ::-1]
        return x


class Drawn:
    """The training images as the engine draws them: `images[batch]` gives the batch augmented
    by a generator seeded by (seed, epoch, step), the position the loop sets with `at`, so a
    resumed run draws what an uninterrupted one does. Engines index it like an array."""

    def __init__(self, x: np.ndarray, augment: Augmenter, seed: int) -> None:
        self.x, self.augment, self.seed = x, augment, seed
        self.shape, self.dtype, self.ndim = x.shape, x.dtype, x.ndim
        self.position = (0, 0)

    def at(self, epoch: int, step: int) -> None:
        self.position = (epoch, step)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: Any) -> np.ndarray:
        rng = np.random.default_rng([self.seed, *self.position, 2])
        return self.augment(self.x[index], rng)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.x if dtype is None else self.x.astype(dtype)
