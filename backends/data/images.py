"""Image files as C×H×W float32 in [0, 1]: one rule for every image netdsl reads.

Used by `folder:` datasets (here) and by `netdsl run` on an image (`backends/runtime/ort.py`).
The rule, documented in docs/training.md and docs/onnx.md:
- size: at most `limits.MAX_IMAGE_PIXELS` pixels, checked from the header before decoding, so a
  decompression bomb (a small PNG declaring 50,000 x 50,000 pixels) is refused unread;
- range: 8-bit images are divided by 255, 16-bit ones by 65,535 (their real range, not clipped
  at 255); 32-bit integer images must hold values in 0..65,535 (how PIL keeps 16-bit files) and
  are divided by 65,535; float images in [0, 1] are kept, other float images are scaled from
  their own minimum and maximum to [0, 1];
- channels: colour to grey by ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B, as PIL),
  grey to colour by repeating the plane three times; palette, CMYK and other colour modes go
  through RGB first;
- alpha: composited on black (each channel multiplied by alpha), then dropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data import limits
from netdsl.source import NetError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GREY = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def read(path: Path, channels: int | None = None) -> np.ndarray:
    """The image at `path` as C×H×W float32 in [0, 1]; `channels` 1 or 3, or None for the
    image's own (1 for grey images, 3 for colour)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (None, 1, 3):
        raise NetError(f"an image gives 1 or 3 channels, not {channels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                w, h = image.size
                if w * h > limits.MAX_IMAGE_PIXELS:
                    raise _too_big(path, w, h)
                return _pixels(image, channels, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_big(path, None, None) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NetError(f"cannot read '{path}' as an image: {text}") from None


def _too_big(path: Path, w: int | None, h: int | None) -> NetError:
    size = f"{w:,} x {h:,} = {w * h:,} pixels" if w and h else "more pixels than PIL allows"
    return NetError(
        f"'{path}' is {size}; netdsl reads images of at most {limits.MAX_IMAGE_PIXELS:,} "
        "pixels (a decompression bomb, or a picture to shrink first)"
    )


def _pixels(image: Any, channels: int | None, path: Path) -> np.ndarray:
    if image.mode in GREY and image.mode not in ("1", "L", "LA", "La"):
        plane = _deep(np.asarray(image), image.mode, path)  # 16-bit, 32-bit or float
        return np.repeat(plane[None], channels or 1, axis=0)
    alpha = "A" in image.getbands() or "transparency" in image.info
    grey = channels == 1 or (channels is None and image.mode in GREY)
    mode = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
    if image.mode not in ("1", "L", "LA", "La", "RGB", "RGBA"):
        image = image.convert("RGBA" if alpha else "RGB")  # palette, CMYK, YCbCr, LAB, HSV
    x = np.asarray(image.convert(mode), dtype=np.float32) / np.float32(255.0)
    x = x[..., None] if x.ndim == 2 else x
    if alpha:
        x = x[..., :-1] * x[..., -1:]  # composite on black
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def _deep(x: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float plane, scaled from its real range to [0, 1]."""
    if mode == "F":
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise NetError(f"'{path}' holds NaN or infinite pixel values")
        low, high = float(x.min()), float(x.max())
        if low >= 0.0 and high <= 1.0:
            return x
        return (x - np.float32(low)) / np.float32(high - low) if high > low else np.zeros_like(x)
    if mode == "I" and (int(x.min()) < 0 or int(x.max()) > 65535):
        raise NetError(
            f"'{path}' is a 32-bit integer image with values {int(x.min())}..{int(x.max())}; "
            "netdsl reads integer images of up to 16 bits (save it as 16-bit or float)"
        )
    return x.astype(np.float32) / np.float32(65535.0)


def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """C×H×W or N×C×H×W float planes resized to height x width: bilinear, pixel centres
    aligned (as PIL and torch's default), the filter widening when shrinking so that
    downscaling averages instead of aliasing. The one resize of netdsl: training data
    (`sources.fit`, mixed-size folders) and `netdsl run`'s images both come through here."""
    if x.shape[-2:] == (height, width):
        return np.asarray(x, dtype=np.float32)
    rows, cols = _weights(x.shape[-2], height), _weights(x.shape[-1], width)
    out = np.einsum("ih,...hw,jw->...ij", rows, x.astype(np.float32), cols, optimize=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def _weights(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    taps = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None] + 0.5 - centres[:, None]) / support)
    weights: np.ndarray = (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)
    return weights


# ---- folder: datasets -------------------------------------------------------------------------


def classes(path: Path) -> list[str]:
    """The class names of a folder dataset: its sub-folders, sorted."""
    if not path.is_dir():
        raise NetError(f"folder:{path}: '{path}' is not a folder")
    found = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(found) < 2:
        raise NetError(
            f"folder:{path}: needs one sub-folder of images per class, found {len(found)}"
        )
    return found


def folder_images(
    path: Path, names: list[str], size: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of `path/<class>/`, with its class id, and notes for the user. Images of
    mixed sizes are resized on load (`resize`) to `size` (H, W), or without one to the
    commonest size among them; grey images among colour ones are repeated to three channels."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(names):
        if not (path / name).is_dir():
            raise NetError(f"folder:{path}: '{path / name}' is not a folder")
        found = sorted(p for p in (path / name).iterdir() if p.suffix.lower() in SUFFIXES)
        if not found:
            raise NetError(f"folder:{path}: class folder '{name}' holds no images")
        files += [(f, label) for f in found]
    xs: list[np.ndarray] = []
    for file, _ in files:
        pixels = read(file)
        if not xs:  # check the whole dataset's size (at this image's size) before reading on
            limits.check(
                f"folder:{path} ({len(files):,} images like '{file.name}')",
                len(files) * 3 * pixels[0].size * 4,
                limits.MAX_DATASET_BYTES,
            )
        xs.append(pixels)
    sizes = [x.shape[1:] for x in xs]
    target = tuple(size) if size else max(set(sizes), key=sizes.count)
    notes = []
    if len(set(sizes)) > 1:
        h, w = target
        limits.check(f"folder:{path} at {h}x{w}", len(xs) * 3 * h * w * 4, limits.MAX_DATASET_BYTES)
        moved = sum(s != target for s in sizes)
        xs = [resize(x, h, w) for x in xs]
        notes.append(f"{moved:,} images of other sizes resized to {h}x{w} on load")
    c = max(x.shape[0] for x in xs)
    x = np.stack([np.repeat(p, c, axis=0) if p.shape[0] < c else p for p in xs])
    return x, np.asarray([label for _, label in files], dtype=np.int64), notes
