"""The files of a training run: checkpoint.npz, metrics.jsonl, model.onnx, curves.png, .lock.

Beside `loop.py`, which decides when to write; this module decides how. Every file is written
atomically by the data room's one helper (`backends/data/atomic.py`: a temporary file of its own
name, fsync, rename), so a run killed at any instant leaves the previous version or the new one.
One run owns an output folder at a time: `hold` takes `.lock` with `fcntl.flock` (released by the
kernel when the process dies, so a lock left by `kill -9` is taken over, with a note) and writes
the holder's pid, host and start time into it for the error a second run gets. Holding it, a run
removes what killed runs left (`.work/`, `.*.tmp`). The checkpoint is one `.npz`: the weights
(`param/NAME`, running statistics included), the optimizer's state (`opt/KEY`) and a JSON `meta`
entry (settings, the data's fingerprint, position in the run, the epoch's running sums, the
metrics so far); no pickle, so loading it runs no code, and its arrays' headers are checked
against the net before any is read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data import atomic, limits, npy
from netdsl.errors import NoCheckpoint
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

CHECKPOINT, MODEL, METRICS, CURVES = "checkpoint.npz", "model.onnx", "metrics.jsonl", "curves.png"
BEST, CONFIG = "best.onnx", "config.json"
LOCK, WORK = ".lock", ".work"
FORMAT = "netdsl-train-checkpoint/1"


@dataclass
class Progress:
    """Where a run is: the next (epoch, step), and the running sums of the epoch so far."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # of training in this epoch so far
    history: list[dict[str, float]] = field(default_factory=list)
    reference_loss: float | None = None  # what the loss started from (loop.py's watch)
    recent_losses: list[float] = field(default_factory=list)  # its latest steps
    saved_step: int | None = None  # the global step of the checkpoint on disk

    def next_epoch(self) -> None:
        self.epoch, self.step = self.epoch + 1, 0
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    progress: Progress
    meta: dict[str, Any]  # "config" (the run's settings), "data" (its spec), "data_fingerprint"


def prepare(out: Path) -> None:
    """Create the run's folder (and its parents), or say why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise NetError(f"the output folder '{out}' is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NetError(f"cannot create the output folder '{out}': {error.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise NetError(f"cannot write in the output folder '{out}'")


@contextlib.contextmanager
def hold(out: Path) -> Iterator[list[str]]:
    """Own `out` for one run: its lock taken (or a clear error naming the holder, with nothing
    changed), what killed runs left removed. Yields notes for the user (a lock taken over)."""
    import fcntl

    prepare(out)
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise NetError(f"cannot create the lock '{path}': {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise NetError(
                f"'{out}' is in use by another training run ({_holder(fd)}); one run per "
                "output folder at a time"
            ) from None
        notes = _take_over(fd) + _clean(out)
        os.ftruncate(fd, 0)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield notes
        finally:
            os.ftruncate(fd, 0)  # released; the empty file marks a clean end
    finally:
        os.close(fd)  # closing releases the flock


def _holder(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    try:
        who = json.loads(text)
        return f"pid {who['pid']} on {who['host']}, started {who['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def _take_over(fd: int) -> list[str]:
    """A lock file that names a holder although nobody holds it: a run that was killed."""
    if not os.pread(fd, 4096, 0).strip():
        return []
    return [f"took over the lock of a run that ended without releasing it ({_holder(fd)})"]


def _clean(out: Path) -> list[str]:
    removed = [p.name for p in atomic.clean(out)]
    if (out / WORK).is_dir():
        shutil.rmtree(out / WORK, ignore_errors=True)
        removed.append(WORK)
    return [f"removed what an interrupted run left: {', '.join(removed)}"] if removed else []


def work_folder(out: Path) -> Path:
    """The run's scratch folder, inside `out` so that the lock covers it and the next run
    removes it if this one is killed."""
    work = out / WORK
    work.mkdir(exist_ok=True)
    return work


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())


def write_metrics(out: Path, history: list[dict[str, float]]) -> None:
    atomic.write(out / METRICS, "".join(json.dumps(r) + "\n" for r in history).encode())


def write_config(out: Path, settings: dict[str, Any], data: str, classes: tuple[str, ...]) -> None:
    """config.json: the run's full settings (`netdsl train --config` reuses them), its data
    and the class names."""
    record = {
        "format": "netdsl-train-config/1",
        "data": data,
        "classes": list(classes),
        "settings": settings,
    }
    atomic.write(out / CONFIG, (json.dumps(record, indent=2) + "\n").encode())


def read_config(path: Path) -> dict[str, Any]:
    """The settings a config.json holds (and its "data"), checked to be one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NetError(f"no such configuration file: '{path}'") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise NetError(f"cannot read the configuration '{path}': {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise NetError(f"'{path}' is not a netdsl training configuration (no settings)")
    return record


def read_metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line]


def fingerprint(net: ShapedNet) -> dict[str, list[int]]:
    return {f"{n.name}.{w.name}": list(w.shape) for n in net.nodes for w in n.weights}


def layers(net: ShapedNet) -> list[str]:
    """The net's layers as `name:op`: two nets with the same tensors but other ops differ."""
    return [f"{n.name}:{n.op}" for n in net.nodes]


def save_checkpoint(out: Path, net: ShapedNet, state: Checkpoint) -> None:
    meta = {
        "format": FORMAT,
        "net": net.name,
        "tensors": fingerprint(net),
        "layers": layers(net),
        **state.meta,
        "progress": asdict(state.progress),
    }
    arrays = {f"param/{k}": v for k, v in state.params.items()}
    arrays.update({f"opt/{k}": v for k, v in state.optimizer.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    npy.save(arrays, out / CHECKPOINT)


def load_checkpoint(out: Path, net: ShapedNet | None = None) -> Checkpoint:
    """The state a run saved in `out`; with `net`, checked to be a checkpoint of that net. Every
    array's header is checked against the tensors the checkpoint declares before any is read."""
    path = out / CHECKPOINT
    if not path.is_file():
        raise NoCheckpoint(f"no checkpoint at '{path}'", path=str(path))
    label = f"checkpoint '{path}'"
    declared = npy.members(path, label)
    if "meta" not in declared or declared["meta"].dtype.kind != "U" or declared["meta"].shape:
        raise NetError(f"{label} lacks its meta entry; it is not a netdsl training checkpoint")
    meta = _meta(npy.load(path, ["meta"], limit=limits.MAX_META_BYTES, label=label)["meta"], label)
    if net is not None:
        _same_net(meta, net, label)
    expected = _expected(meta, declared, label)
    arrays = npy.load(path, list(expected), limit=limits.MAX_WEIGHT_BYTES * 3, label=label)
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
    try:
        progress = Progress(**meta.pop("progress"))
    except TypeError as error:
        raise NetError(f"{label}: its progress record is damaged ({error})") from None
    return Checkpoint(params, opt, progress, meta)


def _meta(entry: np.ndarray, label: str) -> dict[str, Any]:
    try:
        meta = json.loads(str(entry))
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NetError(f"{label} is not a netdsl training checkpoint ({FORMAT})")
    kinds = {"net": str, "tensors": dict, "progress": dict, "config": dict}
    wrong = [k for k, kind in kinds.items() if not isinstance(meta.get(k), kind)]
    if wrong or not all(isinstance(v, list) for v in meta["tensors"].values()):
        raise NetError(f"{label}: its meta entry lacks or garbles {', '.join(wrong) or 'tensors'}")
    progress = {f.name for f in fields(Progress)}
    if not set(meta["progress"]) <= progress:
        extra = ", ".join(sorted(set(meta["progress"]) - progress))
        raise NetError(f"{label}: its progress record has unknown entries ({extra})")
    return meta


def _same_net(meta: dict[str, Any], net: ShapedNet, label: str) -> None:
    if meta["tensors"] != fingerprint(net):
        raise NetError(
            f"{label} is a checkpoint of {meta['net']}, whose tensors differ from those of "
            f"{net.name}"
        )
    saved, now = meta.get("layers", layers(net)), layers(net)
    if saved != now:
        first = next((f"{a} -> {b}" for a, b in zip(saved, now, strict=False) if a != b), "")
        raise NetError(
            f"{label} is a checkpoint of {meta['net']}, whose layers differ from those of "
            f"{net.name}: {first or f'{len(saved)} layers -> {len(now)}'}"
        )


def _expected(
    meta: dict[str, Any], declared: dict[str, npy.Member], label: str
) -> dict[str, tuple[int, ...]]:
    """The arrays a checkpoint of these tensors must hold: each parameter, and optimizer state
    of a parameter's shape (or a scalar step count); anything else is refused unread."""
    tensors = {k: tuple(v) for k, v in meta["tensors"].items()}
    expected = {f"param/{k}": shape for k, shape in tensors.items()}
    missing = [k for k in expected if k not in declared]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise NetError(f"{label} lacks {', '.join(missing[:3])}{more}")
    for key, m in declared.items():
        if key.startswith("opt/"):
            _, _, name = key[4:].partition("/")
            expected[key] = tensors.get(name, (-1,)) if name else ()
        if key != "meta" and (key not in expected or expected[key] != m.shape):
            want = expected.get(key)
            why = f"has shape {m.shape}, the net's is {want}" if want else "is not a tensor of it"
            raise NetError(f"{label}: array '{key}' {why}")
        if key != "meta" and m.dtype.kind not in "fiu":
            raise NetError(f"{label}: array '{key}' holds {m.dtype}, not numbers")
    return expected


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train and test, side by side (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        left.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", label=split)
        right.plot(epochs, [100 * r[f"{split}_accuracy"] for r in history], marker="o", label=split)
    from matplotlib.ticker import MaxNLocator

    left.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{title}: loss")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}: accuracy")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic.write(path, buffer.getvalue())
