"""Writing artefacts atomically: the one way netdsl writes a file a user keeps.

Used by every room that writes something (compiled models, engines, checkpoints, metrics,
curves, downloaded datasets). A file is written under a temporary name of its own in the same
folder (`.NAME.RANDOM.tmp`: two writers never share one), flushed and fsynced, renamed over the
target with `os.replace`, and the folder is fsynced: a crash, a full disk or `kill -9` at any
instant leaves the old file or the new one, never half of one. A writer killed before the rename
leaves only its `.tmp` file, which `clean` removes on the next start of whoever owns the folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from netdsl.source import NetError

SUFFIX = ".tmp"


def write(path: str | Path, blob: bytes) -> None:
    """Write `blob` to `path` atomically."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(blob)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that needs a file name (onnx.save_model,
    matplotlib); when the block ends without an error, it is fsynced and renamed to `path`.
    On an error the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise NetError(f"cannot write '{path}': '{folder}' is a file, not a folder")
    if path.is_dir():
        raise NetError(f"cannot write '{path}': it is a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=folder)
    except OSError as error:
        raise NetError(f"cannot write '{path}': {error.strerror or error}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise NetError(f"cannot write '{path}': {error.strerror or error}") from None
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a successful replace
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform or file system without directory handles
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean(folder: Path) -> list[Path]:
    """Remove the temporary files that writers killed before their rename left in `folder`.
    Only for a folder its caller owns (a training run holds its lock), since a live writer's
    temporary file looks the same."""
    removed = []
    for stale in folder.glob(f".*{SUFFIX}"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed
