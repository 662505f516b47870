"""The arrays of `maps.py` -> PNG pictures that read at a glance.

The explain room's last step, called by `netdsl explain`. Drawn with matplotlib (the train
extra) on its Agg canvas, written atomically (a temporary file renamed). Each picture puts the
image beside what was computed from it: filters as a grid of small squares (grey, or colour for
three input channels, each filter scaled to its own range so its pattern shows); saliency and
occlusion maps as a row of images above a row of maps; the top images of a channel as one row
per channel, each image labelled with its class and activation.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = 8  # images per row in the saliency and occlusion pictures


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: Path) -> None:
    from matplotlib import pyplot as plt

    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(temp, format="png", bbox_inches="tight")
        os.replace(temp, path)
    finally:
        plt.close(fig)
        if os.path.exists(temp):
            os.unlink(temp)


def _show(ax: Any, image: np.ndarray, **options: Any) -> None:
    """An image C x H x W in [0, 1] (grey for one channel, colour for three)."""
    if image.ndim == 3 and image.shape[0] == 3:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    else:
        picture = image if image.ndim == 2 else image.mean(axis=0)
        ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest", **options)
    ax.set_xticks([])
    ax.set_yticks([])


def filter_grid(weights: np.ndarray, path: Path, title: str) -> None:
    """One square per filter (out x in x kh x kw), each scaled to its own range."""
    n = weights.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _figure(1.1 * cols, 1.1 * rows + 0.5)
    fig.suptitle(title, fontsize=10)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i >= n:
            continue
        w = weights[i].astype(np.float64)
        low, high = w.min(), w.max()
        scaled = (w - low) / (high - low) if high > low else np.full_like(w, 0.5)
        _show(ax, scaled if scaled.shape[0] == 3 else scaled.mean(axis=0))
        ax.axis("on")
        ax.set_title(str(i), fontsize=7)
    _save(fig, path)


def image_maps(
    images: np.ndarray,
    maps: np.ndarray,
    labels: Sequence[str],
    path: Path,
    title: str,
    signed: bool = False,
) -> None:
    """Each image above its map; `signed` maps (occlusion: a rise of the score is negative)
    are drawn red for a drop and blue for a rise around zero, the others black to yellow."""
    n = len(images)
    cols = min(n, COLUMNS)
    bands = math.ceil(n / cols)
    fig = _figure(1.35 * cols, 2.7 * bands + 0.5)
    fig.suptitle(title, fontsize=10)
    for i in range(n):
        band, col = divmod(i, cols)
        top = fig.add_subplot(2 * bands, cols, 2 * band * cols + col + 1)
        _show(top, images[i])
        top.set_title(labels[i], fontsize=7)
        bottom = fig.add_subplot(2 * bands, cols, (2 * band + 1) * cols + col + 1)
        m = maps[i]
        if signed:
            limit = float(np.abs(m).max()) or 1.0
            bottom.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        else:
            bottom.imshow(m, cmap="inferno", vmin=0, vmax=float(m.max()) or 1.0)
        bottom.set_xticks([])
        bottom.set_yticks([])
    _save(fig, path)


def top_grid(
    images: np.ndarray,
    order: np.ndarray,
    values: np.ndarray,
    channels: Sequence[int],
    labels: np.ndarray | None,
    path: Path,
    title: str,
) -> None:
    """One row per channel: its top images, best first, with class and activation."""
    k = order.shape[1]
    fig = _figure(1.05 * k + 0.8, 1.25 * len(channels) + 0.5)
    fig.suptitle(title, fontsize=10)
    for row, channel in enumerate(channels):
        for col in range(k):
            ax = fig.add_subplot(len(channels), k, row * k + col + 1)
            index = int(order[row, col])
            _show(ax, images[index])
            label = f"{int(labels[index])}: " if labels is not None else ""
            ax.set_title(f"{label}{values[row, col]:.2g}", fontsize=6)
            if col == 0:
                ax.set_ylabel(f"ch {channel}", fontsize=8)
    _save(fig, path)
