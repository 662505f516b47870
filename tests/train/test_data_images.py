"""The one rule for image files (backends/data/images.py): range, channels, alpha.

Each row writes an image with PIL, reads it with netdsl, and compares with values worked out by
hand from the documented rule: 8-bit / 255, 16-bit / 65,535, float kept in [0, 1] or scaled
from its own range; colour to grey by ITU-R 601-2 luma (as PIL, rounded to 8 bits for 8-bit
images), grey to colour by repetition; alpha composited on black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.backends.data import images
from netdsl.backends.data import sources as data
from netdsl.backends.runtime import ort
from netdsl.source import NetError

Image = pytest.importorskip("PIL.Image")

U16 = np.array([[0, 1000, 65535]], np.uint16)
CASES = [
    # (label, array, mode, file suffix, channels asked, expected C×1×3 values of the row)
    ("16-bit grey", U16, None, ".png", None, [[0, 1000 / 65535, 1.0]]),
    ("16-bit grey to colour", U16, None, ".png", 3, [[0, 1000 / 65535, 1.0]] * 3),
    ("32-bit integer, 16-bit values", U16.astype(np.int32), "I", ".tif", 1, [[0, 1000 / 65535, 1]]),
    ("float in [0, 1] kept", np.array([[0, 0.25, 1]], np.float32), "F", ".tif", 1, [[0, 0.25, 1]]),
    (
        "float scaled from its range",
        np.array([[-2, 0, 6]], np.float32),
        "F",
        ".tif",
        1,
        [[0, 0.25, 1]],
    ),
    ("8-bit grey", np.array([[0, 51, 255]], np.uint8), "L", ".png", None, [[0, 0.2, 1]]),
    (
        "grey to colour repeats",
        np.array([[0, 51, 255]], np.uint8),
        "L",
        ".png",
        3,
        [[0, 0.2, 1]] * 3,
    ),
    (
        "colour to grey by luma",
        np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8),
        "RGB",
        ".png",
        1,
        [[76 / 255, 150 / 255, 29 / 255]],  # round(255 * .299), round(255 * .587), 255 * .114
    ),
    (
        "alpha composited on black",
        np.array([[[255, 255, 255, 0], [255, 255, 255, 255], [200, 100, 0, 51]]], np.uint8),
        "RGBA",
        ".png",
        None,
        [[0, 1, 200 / 255 * 0.2], [0, 1, 100 / 255 * 0.2], [0, 1, 0]],
    ),
    (
        "grey with alpha",
        np.array([[[255, 0], [255, 255], [100, 51]]], np.uint8),
        "LA",
        ".png",
        None,
        [[0, 1, 100 / 255 * 0.2]],
    ),
]


@pytest.mark.parametrize(
    ("array", "mode", "suffix", "channels", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_image_rule(
    tmp_path: Path,
    array: np.ndarray,
    mode: str | None,
    suffix: str,
    channels: int | None,
    expected: list[list[float]],
) -> None:
    path = tmp_path / f"x{suffix}"
    Image.fromarray(array, mode).save(path)  # mode None: PIL's own (I;16 for uint16)
    x = images.read(path, channels)
    assert x.dtype == np.float32 and x.shape == (len(expected), 1, 3)
    np.testing.assert_allclose(x[:, 0], expected, rtol=1e-6, atol=1e-7)


def test_palette_with_transparency_is_composited(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "p.png", transparency=1)  # palette entry 1 (blue) fully transparent
    x = images.read(tmp_path / "p.png")
    np.testing.assert_allclose(x[:, 0], [[1, 0], [0, 0], [0, 0]])


@pytest.mark.parametrize(
    ("array", "mode", "fragment"),
    [
        (np.array([[-1, 70000]], np.int32), "I", "values -1..70000"),
        (np.array([[0, np.nan]], np.float32), "F", "NaN or infinite"),
    ],
)
def test_images_outside_the_rule_are_refused(
    tmp_path: Path, array: np.ndarray, mode: str, fragment: str
) -> None:
    Image.fromarray(array, mode).save(tmp_path / "x.tif")
    with pytest.raises(NetError, match=fragment):
        images.read(tmp_path / "x.tif")


def test_run_scales_a_16_bit_image_from_its_real_range(tmp_path: Path) -> None:
    """Before, 16-bit images were clipped at 255: a mid-grey 16-bit image read as white."""
    Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(tmp_path / "x.png")  # mode I;16
    x = ort.load_image(tmp_path / "x.png", (1, 3, 3))
    np.testing.assert_allclose(x, 32768 / 65535, rtol=1e-6)


def test_a_folder_of_grey_and_colour_images_is_colour(tmp_path: Path) -> None:
    for name, mode, value in (("a", "L", 60), ("b", "RGB", (10, 20, 30))):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new(mode, (4, 4), value).save(tmp_path / name / f"{i}.png")
    d = data.load(f"folder:{tmp_path}")
    assert d.shape == (3, 4, 4)
    both = np.concatenate([d.x_train, d.x_test])
    labels = np.concatenate([d.y_train, d.y_test])
    np.testing.assert_allclose(both[labels == 0][:, :, 0, 0], 60 / 255, rtol=1e-6)
    np.testing.assert_allclose(both[labels == 1][0, :, 0, 0], [10 / 255, 20 / 255, 30 / 255])
