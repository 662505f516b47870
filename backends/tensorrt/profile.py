"""The sizes a TensorRT build is given: the batch's optimisation profile and the workspace.

Light on purpose (no onnx, no tensorrt): the command line parses `MIN:OPT:MAX` and `1G` with
these while building its parser, and `engine.py` takes the results. Messages state the expected
form; the command line adds which flag it was.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from netdsl.source import NetError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$", re.IGNORECASE)
MAX_BATCH = 2**31 - 1  # TensorRT's dimensions are int32
MAX_WORKSPACE = 2**50  # a petabyte: anything larger is a typo


@dataclass(frozen=True, slots=True)
class Profile:
    """The dynamic batch's optimisation profile: the smallest, the tuned-for and the largest."""

    min: int
    opt: int
    max: int


def parse_profile(text: str) -> Profile:
    """`8` (fixed) or `MIN:OPT:MAX` -> Profile, checking 1 <= MIN <= OPT <= MAX."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise NetError(f"a batch profile takes N or MIN:OPT:MAX, got '{text}'") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2] <= MAX_BATCH:
        raise NetError(
            f"a batch profile takes N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX <= "
            f"{MAX_BATCH:,}, got '{text}'"
        )
    return Profile(*parts)


def parse_size(text: str) -> int:
    """`1G`, `512M`, `1.5GiB`, `65536` -> bytes (at least 1, at most 1 PiB)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise NetError(f"a size takes a number with K, M, G or T, like 1G or 512M, got '{text}'")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]
    if not math.isfinite(size) or not 1 <= size <= MAX_WORKSPACE:
        raise NetError(f"a size must be from 1 byte to 1 PiB, got '{text}'")
    return int(size)
