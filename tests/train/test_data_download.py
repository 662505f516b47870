"""The MNIST downloader against a local HTTP server on 127.0.0.1 (no network needed).

The server serves files made here: the real t10k files of ../shared/data/mnist (recompressed,
so only the official checksum of their content can pass), synthetic train files with a checksum
table of their own, a corrupted file, a missing one. Nothing unverified may land in the folder.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from netdsl.backends.data import mnist as data_mnist
from netdsl.backends.data import sources as data
from netdsl.source import NetError

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
T10K = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves)."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"the MNIST test files are not in {MNIST}",
)
def test_real_t10k_files_pass_the_official_checksums(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    for stem in T10K:  # recompressed: the .gz differs from the official one, its content not
        content = gzip.decompress((MNIST / f"{stem}.gz").read_bytes())
        (root / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=1))
    target = tmp_path / "mnist"
    data_mnist.download(target, url, {k: data_mnist.FILES[k] for k in T10K})
    d = data.load(f"mnist:{target}")
    assert (len(d.x_train), len(d.x_test)) == (8000, 2000)


def test_download_all_four_and_skip_present_ones(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    rng = np.random.default_rng(0)
    table = {}
    for stem, n in (("train", 20), ("t10k", 10)):
        for kind, array in (
            ("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1-ubyte", np.arange(n) % 10),
        ):
            blob = gzip.compress(_idx(array))
            (root / f"{stem}-{kind}.gz").write_bytes(blob)
            table[f"{stem}-{kind}"] = (hashlib.sha256(blob).hexdigest(), "0" * 64)
    target = tmp_path / "mnist"
    data_mnist.download(target, url, table)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{k}.gz" for k in table)
    (root / "train-images-idx3-ubyte.gz").unlink()  # present files are not fetched again
    data_mnist.download(target, url, table)
    d = data.load(f"mnist:{target}")
    assert (len(d.x_train), len(d.x_test)) == (20, 10)


def test_checksum_mismatch_writes_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(10) % 10)))
    target = tmp_path / "mnist"
    table = {"t10k-labels-idx1-ubyte": data_mnist.FILES["t10k-labels-idx1-ubyte"]}
    with pytest.raises(NetError, match=r"checksum mismatch .* nothing was written"):
        data_mnist.download(target, url, table)
    assert list(target.iterdir()) == []


def test_missing_file_on_the_mirror(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    with pytest.raises(NetError, match=r"cannot download .*t10k-images-idx3-ubyte\.gz: HTTP 404"):
        data_mnist.download(tmp_path / "m", url, {k: data_mnist.FILES[k] for k in T10K})


def test_offline(tmp_path: Path) -> None:
    with pytest.raises(NetError, match="cannot download") as error:
        data.load(f"mnist:{tmp_path / 'm'}", download=True, mirror="http://127.0.0.1:9/")
    assert "offline? put the four MNIST IDX files in" in str(error.value)
