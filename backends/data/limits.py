"""How much netdsl agrees to read or allocate for one input, checked before anything is read.

The first module of the data room, imported by every reader of files that may come from anyone
(datasets, images, npz and .npy arrays, checkpoints, ONNX models and their external data) and by
the emitter before it allocates a net's weights. A file declares sizes (an IDX header, an .npy
header, a zip directory, an image's width and height, an ONNX tensor's dims); each reader
compares what is declared with the file's real length and with the limits here *before*
allocating, so a small file cannot make netdsl allocate gigabytes. The limits are documented in
docs/training.md and docs/onnx.md; a file over one is refused with its size and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from netdsl.source import NetError

GIB = 2**30
MIB = 2**20

MAX_IMAGE_PIXELS = 2**26  # one image (8192 x 8192); PIL's own bomb check starts at 89 Mpx
MAX_ARRAY_BYTES = 8 * GIB  # one array decoded from a file (npz member, IDX body, CIFAR batch)
MAX_DATASET_BYTES = 8 * GIB  # a whole dataset as float32, train and test together
MAX_PICKLE_BYTES = 512 * MIB  # one CIFAR-10 python batch file (the real ones are 30 MiB)
MAX_WEIGHT_BYTES = 16 * GIB  # a net's float32 weights (4 billion parameters)
MAX_META_BYTES = 16 * MIB  # a checkpoint's JSON metadata


def nbytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of an array of `shape`; exact integers, so a lying header cannot overflow."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def size(n: int) -> str:
    """A byte count as people read it: 1.5 GiB, 300 MiB, 12 KiB (and 7.2e+16 TiB for a lie)."""
    if n >= 2**50:
        return f"{n / 2**40:.2g} TiB"
    for unit, scale in (("TiB", 2**40), ("GiB", GIB), ("MiB", MIB), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def check(what: str, n: int, limit: int) -> None:
    """Refuse `what`, which would take `n` bytes, if that is over `limit`."""
    if n > limit:
        raise NetError(f"{what} would take {size(n)}, over netdsl's limit of {size(limit)}")
