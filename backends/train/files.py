"""The files of a training run: checkpoint.npz, metrics.jsonl, model.onnx, curves.png.

Beside `backends/train.py`, which decides when to write; this module decides how. Every file is
written atomically (a temporary file in the same folder, fsync, rename, fsync of the folder), so
a run killed at any instant leaves the previous version or the new one, never half of one. The
checkpoint is one `.npz`: the weights (`param/NAME`, running statistics included), the
optimizer's state (`opt/KEY`) and a JSON `meta` entry (settings, data spec, position in the run,
the epoch's running sums, the metrics so far); no pickle, so loading it runs no code.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.shapes import ShapedNet
from netdsl.source import NetError

CHECKPOINT, MODEL, METRICS, CURVES = "checkpoint.npz", "model.onnx", "metrics.jsonl", "curves.png"
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

    def next_epoch(self) -> None:
        self.epoch, self.step = self.epoch + 1, 0
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    progress: Progress
    meta: dict[str, Any]  # "config" (the run's settings) and "data" (its --data spec)


def atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise NetError(f"cannot write '{path}': {error.strerror or error}") from None
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_metrics(out: Path, history: list[dict[str, float]]) -> None:
    atomic_write(out / METRICS, "".join(json.dumps(r) + "\n" for r in history).encode())


def read_metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line]


def fingerprint(net: ShapedNet) -> dict[str, list[int]]:
    return {f"{n.name}.{w.name}": list(w.shape) for n in net.nodes for w in n.weights}


def save_checkpoint(out: Path, net: ShapedNet, state: Checkpoint) -> None:
    meta = {
        "format": FORMAT,
        "net": net.name,
        "tensors": fingerprint(net),
        **state.meta,
        "progress": asdict(state.progress),
    }
    arrays = {f"param/{k}": v for k, v in state.params.items()}
    arrays.update({f"opt/{k}": v for k, v in state.optimizer.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    atomic_write(out / CHECKPOINT, buffer.getvalue())


def load_checkpoint(out: Path, net: ShapedNet | None = None) -> Checkpoint:
    """The state a run saved in `out`; with `net`, checked to be a checkpoint of that net."""
    path = out / CHECKPOINT
    if not path.is_file():
        raise NetError(
            f"--resume: no checkpoint at '{path}'",
            None,
            ["pass the --out folder of the run to continue"],
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise NetError(f"cannot read checkpoint '{path}': {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NetError(f"'{path}' is not a netdsl training checkpoint")
    if net is not None and meta["tensors"] != fingerprint(net):
        raise NetError(
            f"'{path}' is a checkpoint of {meta['net']}, whose tensors differ from "
            f"those of {net.name}"
        )
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
    return Checkpoint(params, opt, Progress(**meta.pop("progress")), meta)


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
    left.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{title}: loss")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}: accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
