"""backends/train/preprocess.py at every rank: signals (N×C×L), images, volumes (N×C×D×H×W).

The statistics against numpy over every axis but the channels; a shifted sample against the
sample itself, found again at the offset the shift drew (the rest the fill); images against the
2-D algorithm as it was written before the rank-generic one (same draws, same output: a resumed
image run draws what it drew before).
"""

from __future__ import annotations

import numpy as np
import pytest

from netdsl.backends.train import preprocess as pre


@pytest.mark.parametrize("shape", [(40, 3, 50), (30, 2, 4, 6, 7), (20, 3, 5, 5)])
def test_normalisation_measures_each_channel_over_every_other_axis(
    shape: tuple[int, ...],
) -> None:
    x = np.random.default_rng(0).random(shape, dtype=np.float32) * np.arange(1, shape[1] + 1)[
        (slice(None), *[None] * (len(shape) - 2))
    ].astype(np.float32)
    norm = pre.normalisation(x, None, None, True)
    moved = np.moveaxis(x, 1, 0).reshape(shape[1], -1).astype(np.float64)
    np.testing.assert_allclose(norm.mean, moved.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(norm.std, moved.std(axis=1), atol=1e-6)


def _old_augment(
    x: np.ndarray, most: tuple[int, int], flip: bool, fill: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The image augmentation as written for N×C×H×W only (before it took any rank)."""
    n, _, h, w = x.shape
    my, mx = most
    fill = fill.reshape(1, -1, 1, 1)
    if my or mx:
        padded = np.empty((n, x.shape[1], h + 2 * my, w + 2 * mx), np.float32)
        padded[...] = fill
        padded[:, :, my : my + h, mx : mx + w] = x
        moves = rng.integers(0, [2 * my + 1, 2 * mx + 1], size=(n, 2)).tolist()
        x = np.empty_like(x)
        for i, (dy, dx) in enumerate(moves):
            x[i] = padded[i, :, dy : dy + h, dx : dx + w]
    if flip:
        turn = rng.random(n) < 0.5
        x = x.copy() if not (my or mx) else x
        x[turn] = x[turn, :, :, ::-1]
    return x


@pytest.mark.parametrize(("shift", "flip"), [(2, True), (3, False), (0, True), (None, True)])
def test_images_are_augmented_as_before(shift: int | None, flip: bool) -> None:
    x = np.random.default_rng(2).random((30, 3, 24, 20), dtype=np.float32)
    fill = np.array([-1.0, -2.0, -3.0], np.float32)
    augment = pre.Augmenter((3, 24, 20), shift, flip, fill)
    got = augment(x, np.random.default_rng(7))
    want = _old_augment(x, augment.most, flip, fill, np.random.default_rng(7))  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("shape", "shift", "most"),
    [
        ((2, 64), 4, (4,)),
        ((2, 64), None, (4,)),
        ((1, 16, 16, 24), 2, (2, 2, 2)),
        ((1, 4, 16, 16), 1, (0, 1, 1)),
    ],
)
def test_signals_and_volumes_move_along_each_axis(
    shape: tuple[int, ...], shift: int | None, most: tuple[int, ...]
) -> None:
    """Each output sample is its input moved by at most `most` along each spatial axis (an
    axis under 8 long keeps still), the uncovered positions the fill; the moves vary."""
    n, rank = 40, len(shape) - 1
    x = np.random.default_rng(3).random((n, *shape), dtype=np.float32) + 1.0  # never the fill
    fill = np.full(shape[0], -5.0, np.float32)
    augment = pre.Augmenter(shape, shift, False, fill)
    assert augment.most == most
    y = augment(x, np.random.default_rng(4))
    assert y.shape == x.shape
    seen = set()
    for i in range(n):
        found = []
        for move in np.ndindex(*(2 * m + 1 for m in most)):
            offset = [d - m for d, m in zip(move, most, strict=True)]
            want = np.full_like(x[i], -5.0)
            src = tuple(
                slice(max(o, 0), s + min(o, 0)) for o, s in zip(offset, shape[1:], strict=True)
            )
            dst = tuple(
                slice(max(-o, 0), s - max(o, 0)) for o, s in zip(offset, shape[1:], strict=True)
            )
            want[(slice(None), *dst)] = x[i][(slice(None), *src)]
            if np.array_equal(y[i], want):
                found.append(tuple(offset))
        assert len(found) == 1, f"sample {i}: {found}"
        seen.add(found[0])
    assert len(seen) > 1 and rank == len(most)


def test_a_signal_flips_in_time() -> None:
    x = np.random.default_rng(5).random((64, 2, 30), dtype=np.float32)
    y = pre.Augmenter((2, 30), 0, True, np.zeros(2, np.float32))(x, np.random.default_rng(6))
    flipped = np.array([np.array_equal(b, a[:, ::-1]) for a, b in zip(x, y, strict=True)])
    kept = np.array([np.array_equal(b, a) for a, b in zip(x, y, strict=True)])
    assert (flipped | kept).all() and 10 < flipped.sum() < 54
