"""How much memory a request would take, checked before anything is allocated.

Beside `source.py` at the bottom of the stack, used by the backends before they allocate weights
or inputs whose size a user chose (a batch of 10^8 images, a net of 10^12 parameters): the
bytes are computed from the shape first and a request larger than the memory this machine has
is refused with the size, rather than ending in MemoryError or the kernel's OOM killer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from netdsl.source import NetError


def available() -> int:
    """Bytes of memory available now (Linux: MemAvailable); the physical total elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 2**63 - 1  # unknown: let the allocation decide


def size(nbytes: int) -> str:
    """`1.5 GiB`, `12.0 MiB`, `512 bytes`."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def check_fits(shape: Iterable[int], what: str, itemsize: int = 4) -> int:
    """The bytes of an array of `shape`; a NetError if they exceed the memory available."""
    nbytes = math.prod(shape) * itemsize
    have = available()
    if nbytes > have:
        raise NetError(f"{what} would take {size(nbytes)}; this machine has {size(have)} free")
    return nbytes
