"""MNIST for `netdsl train --data mnist:DIR`: IDX files in, a checked `Dataset` out.

Part of the data step (`sources.py` calls it): reads the four IDX files, gzipped or not and
under either common spelling, checking each header against the file's size (and the size limit
of `limits.py`) before the body is read, so neither a lying header nor a gzip bomb allocates
more than the file really holds; with only the
t10k pair present it trains on the first 8,000 images and tests on the last 2,000, and says so.
`download` fetches missing files from a mirror and writes nothing that fails its sha256: the
official .gz's, or that of the decompressed content (so a mirror that recompresses still passes).
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np

from netdsl.backends.data import atomic, limits
from netdsl.backends.data.sources import Dataset, checked
from netdsl.errors import DataMissing
from netdsl.source import NetError

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# name -> (sha256 of the official .gz, sha256 of its decompressed IDX file). A mirror that
# recompresses the files still passes on the second.
FILES: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
T10K_SPLIT = 8000
CHUNK = 16 * 2**20  # bytes decompressed at a time


def mnist(path: Path) -> Dataset:
    """train-* and t10k-* IDX files; with only t10k-*, its first 8,000 train, last 2,000 test."""
    if path.exists() and not path.is_dir():
        raise NetError(f"mnist:{path}: '{path}' is a file, not a folder")
    if not path.is_dir():
        raise DataMissing(
            f"mnist:{path}: no such directory",
            None,
            ["download=True fetches the four IDX files (checksummed)"],
        )
    found = {stem: _find_idx(path, stem) for stem in FILES}
    if found["t10k-images-idx3-ubyte"] is None or found["t10k-labels-idx1-ubyte"] is None:
        raise DataMissing(
            f"mnist:{path}: no t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) there",
            None,
            ["download=True fetches the four IDX files (checksummed)"],
        )
    images, labels = _pair(found["t10k-images-idx3-ubyte"], found["t10k-labels-idx1-ubyte"])
    train_images, train_labels = found["train-images-idx3-ubyte"], found["train-labels-idx1-ubyte"]
    if train_images is not None and train_labels is not None:
        x_train, y_train = _pair(train_images, train_labels)
        return checked(f"mnist:{path}", x_train, y_train, images, labels)
    if len(images) <= T10K_SPLIT:
        raise NetError(f"mnist:{path}: only a t10k split of {len(images)} images and no train-*")
    note = (
        f"mnist:{path} has only the t10k split: its first {T10K_SPLIT:,} images train, "
        f"the last {len(images) - T10K_SPLIT:,} test"
    )
    return checked(
        f"mnist:{path}",
        images[:T10K_SPLIT],
        labels[:T10K_SPLIT],
        images[T10K_SPLIT:],
        labels[T10K_SPLIT:],
        (note,),
    )


def _find_idx(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # the spelling of some redistributions
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise NetError(
            f"'{images_path}' and '{labels_path}' must hold N×H×W images and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise NetError(
            f"'{images_path}' has {len(images)} images but '{labels_path}' {len(labels)} labels"
        )
    if labels.max() > 9:
        raise NetError(f"'{labels_path}': label {int(labels.max())} is not a digit")
    return images[:, None], labels.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not), its header checked against its size
    before the body is read."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            return _idx(path, stream, None if gz else path.stat().st_size)
    except NetError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise NetError(f"cannot read '{path}': {error}") from None


class _Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _idx(path: Path, stream: _Stream, length: int | None) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08 or not 1 <= head[3] <= 4:
        raise NetError(
            f"'{path}' is not an IDX file of unsigned bytes (header "
            f"{head.hex() or 'empty'}; expected 0000080N)"
        )
    ndim = head[3]
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise NetError(f"'{path}': IDX header cut short")
    dims = [int.from_bytes(raw_dims[4 * k : 4 * k + 4], "big") for k in range(ndim)]
    declared = limits.nbytes(dims, 1)
    promise = f"the header promises {'x'.join(map(str, dims))} = {declared:,} bytes"
    if length is not None and length - 4 - 4 * ndim != declared:
        raise NetError(f"'{path}': {promise}, the file holds {length - 4 - 4 * ndim:,}")
    limits.check(f"'{path}' ({promise})", declared, limits.MAX_ARRAY_BYTES)
    body, chunks = 0, []
    while body <= declared:  # a gzip body: read what it really holds, one past the promise
        chunk = stream.read(min(CHUNK, declared + 1 - body))
        if not chunk:
            break
        chunks.append(chunk)
        body += len(chunk)
    if body != declared:
        held = f"{body:,}" if body <= declared else "more"
        raise NetError(f"'{path}': {promise}, the file holds {held}")
    return np.frombuffer(b"".join(chunks), np.uint8).reshape(dims)


def download(
    folder: Path, mirror: str = MIRROR, files: dict[str, tuple[str, str]] | None = None
) -> None:
    """Fetch the IDX files missing from `folder`, each checked against its sha256 before it is
    written (atomically): the official .gz's, or that of its decompressed content."""
    files = FILES if files is None else files
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NetError(f"cannot create '{folder}': {error.strerror or error}") from None
    for stem, (gz_sha, raw_sha) in files.items():
        if _find_idx(folder, stem) is not None:
            continue
        url = mirror.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                blob = response.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(error, urllib.error.HTTPError):
                reason = f"HTTP {error.code} {reason}"
            raise NetError(
                f"cannot download {url}: {reason}",
                None,
                [f"offline? put the four MNIST IDX files in {folder}"],
            ) from None
        try:
            content = gzip.decompress(blob)
        except (OSError, EOFError):
            content = b""
        if hashlib.sha256(blob).hexdigest() != gz_sha and (
            hashlib.sha256(content).hexdigest() != raw_sha
        ):
            raise NetError(
                f"{url}: checksum mismatch (sha256 {hashlib.sha256(blob).hexdigest()})"
                "; nothing was written",
                None,
                [f"expected {gz_sha} for the .gz or {raw_sha} for its content"],
            )
        atomic.write(folder / f"{stem}.gz", blob)
