"""`.npz` and `.npy` files read header-first, without pickle: arrays from anyone's files.

Used wherever netdsl reads arrays it did not just write: weights (`backends/onnx/weights.py`),
`npz:` datasets (`sources.py`), training checkpoints (`backends/train/files.py`) and `.npy`
inputs of `netdsl run`. `members` reads only the zip directory and each member's `.npy` header
(shape and dtype), so a caller can check what a file declares against the net, and `limits.py`,
before one array byte is allocated; `load` then reads the members it was asked for. A member
that is not `.npy`, holds Python objects, or whose header disagrees with the zip's sizes, a
truncated archive or an unreadable one: each is one `NetError` naming the file and the member.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from netdsl.backends.data import limits
from netdsl.source import NetError

# The exceptions a damaged or foreign file raises while being read.
BROKEN = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError)


@dataclass(frozen=True, slots=True)
class Member:
    """One array of an archive as its header declares it."""

    name: str  # the key numpy uses: the member's file name without .npy
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # bytes of the .npy header, before the data
    fortran: bool = False

    @property
    def nbytes(self) -> int:
        return limits.nbytes(self.shape, self.dtype.itemsize)


def _header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(f)  # raises ValueError on a header that does not parse
    if dtype.hasobject:
        raise NetError(f"{where} holds Python objects ({dtype}); netdsl reads numeric arrays only")
    if any(d < 0 for d in shape):
        raise NetError(f"{where} declares a negative dimension {shape}")
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def members(path: Path, label: str = "") -> dict[str, Member]:
    """The arrays an .npz archive declares, from its directory and .npy headers only; `label`
    names the file in messages (default: its path, quoted)."""
    label = label or f"'{path}'"
    found: dict[str, Member] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if not info.filename.endswith(".npy"):
                    raise NetError(
                        f"{label}: member '{info.filename}' is not a .npy array; an .npz "
                        "holds only arrays (numpy.savez)"
                    )
                where = f"{label}: member '{info.filename}'"
                with archive.open(info) as f:
                    shape, dtype, fortran = _header(f, where)
                    offset = f.tell()
                name = info.filename[: -len(".npy")]
                member = Member(name, shape, dtype, offset, fortran)
                if info.file_size != offset + member.nbytes:
                    raise NetError(
                        f"{where} declares {limits.size(member.nbytes)} of data "
                        f"({'x'.join(map(str, shape)) or 'a scalar'} {dtype}), but the archive "
                        f"holds {limits.size(max(info.file_size - offset, 0))}"
                    )
                found[name] = member
    except NetError:
        raise
    except BROKEN as error:
        raise NetError(f"cannot read {label} as an .npz archive: {_reason(error)}") from None
    return found


def load(
    path: Path,
    wanted: Collection[str] | Callable[[Member], bool] | None = None,
    *,
    limit: int = limits.MAX_ARRAY_BYTES,
    label: str = "",
) -> dict[str, np.ndarray]:
    """The members of an .npz that `wanted` names (or accepts; None: all), after checking that
    together they stay within `limit` bytes."""
    label = label or f"'{path}'"
    declared = members(path, label)
    if wanted is None:
        chosen = list(declared.values())
    elif callable(wanted):
        chosen = [m for m in declared.values() if wanted(m)]
    else:
        chosen = [declared[k] for k in wanted if k in declared]
    limits.check(f"reading {label}", sum(m.nbytes for m in chosen), limit)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for m in chosen:
                with archive.open(f"{m.name}.npy") as f:
                    arrays[m.name] = _body(f, m, f"{label}: member '{m.name}.npy'")
    except NetError:
        raise
    except BROKEN as error:
        raise NetError(f"cannot read {label} as an .npz archive: {_reason(error)}") from None
    return arrays


def _body(f: IO[bytes], m: Member, where: str) -> np.ndarray:
    """The data after a header already checked, read straight into the array it fills (the
    sizes were checked against the file, so this is the file's real data)."""
    f.seek(m.offset)
    flat = np.empty(m.nbytes // max(m.dtype.itemsize, 1), dtype=m.dtype)
    view, done = flat.data.cast("B"), 0
    while done < m.nbytes:
        got = f.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise NetError(f"{where} is cut short: {done:,} of {m.nbytes:,} bytes")
        done += got
    if m.fortran:
        return flat.reshape(m.shape[::-1]).transpose()
    return flat.reshape(m.shape)


def load_npy(path: Path, *, limit: int = limits.MAX_ARRAY_BYTES) -> np.ndarray:
    """An .npy file, its header checked against the file's length and `limit` first."""
    where = f"'{path}'"
    try:
        with open(path, "rb") as f:
            shape, dtype, fortran = _header(f, where)
            m = Member(path.stem, shape, dtype, f.tell(), fortran)
            length = path.stat().st_size
            if length != m.offset + m.nbytes:
                raise NetError(
                    f"{where} declares {limits.size(m.nbytes)} of data "
                    f"({'x'.join(map(str, shape)) or 'a scalar'} {dtype}), but the file holds "
                    f"{limits.size(max(length - m.offset, 0))}"
                )
            limits.check(f"reading {where}", m.nbytes, limit)
            return _body(f, m, where)
    except NetError:
        raise
    except BROKEN as error:
        raise NetError(f"cannot read {where} as a .npy array: {_reason(error)}") from None


def save(arrays: dict[str, np.ndarray], path: Path) -> None:
    """An .npz of `arrays`, written atomically (backends/data/atomic.py)."""
    from netdsl.backends.data import atomic

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    atomic.write(path, buffer.getvalue())


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error).strip().splitlines()
    if isinstance(text, list):
        text = text[0] if text else type(error).__name__
    return str(text)
