"""What the training loop decides between epochs, and the run's report files.

Beside `loop.py`, which calls these after each step or epoch: the warm-up factor of the learning
rate, whether an epoch's model is the best yet (best.onnx) and whether to stop early (patience),
the warning for a run whose loss is still a uniform guess's after its first epoch, and the
confusion matrix of a classifier (confusion.json and confusion.png, written atomically).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data import atomic

CONFUSION_JSON, CONFUSION_PNG = "confusion.json", "confusion.png"
CHANCE = 0.95  # a first epoch's mean loss above this share of ln(classes) is still at chance


def warmup(step: int, steps: int) -> float:
    """The learning rate's factor at a global step: rising linearly to 1 over `steps`."""
    return 1.0 if steps <= 0 or step >= steps else (step + 1) / steps


def is_best(history: Sequence[dict[str, float]], record: dict[str, float]) -> bool:
    """Whether this epoch's test accuracy beats every earlier epoch's (the first one does)."""
    return all(record["test_accuracy"] > r["test_accuracy"] for r in history)


def best_epoch(history: Sequence[dict[str, float]]) -> int:
    """The epoch (from 1) with the best test accuracy, the earliest of equals."""
    scores = [r["test_accuracy"] for r in history]
    return scores.index(max(scores)) + 1


def stop_early(history: Sequence[dict[str, float]], patience: int) -> bool:
    """Whether `patience` epochs have passed without a better test accuracy (0: never)."""
    return bool(patience and history and len(history) - best_epoch(history) >= patience)


def stopped(history: Sequence[dict[str, float]], patience: int) -> str:
    best = best_epoch(history)
    return (
        f"stopped early after epoch {len(history)}: no better test accuracy in {patience} "
        f"epoch{'s' if patience != 1 else ''} since epoch {best} "
        f"({100 * history[best - 1]['test_accuracy']:.2f} %, kept as best.onnx)"
    )


def at_chance(loss: float, classes: int, config: Any) -> str | None:
    """A warning with advice when the first epoch's mean training loss is still about
    ln(classes), what a uniform guess scores: the net has not started to learn."""
    if classes < 2 or loss < CHANCE * math.log(classes):
        return None
    lower = config.lr / 10
    return (
        f"the training loss after the first epoch is {loss:.3f}, about ln({classes}) = "
        f"{math.log(classes):.3f}, a uniform guess's: the net is not learning. Try a learning "
        f"rate 10x lower (lr={lower:g}), optimizer='adamw' if it is {config.optimizer!r}, "
        "another seed, or a warm-up; and check that the labels match the images"
    )


def confusion(y: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted] over the test set."""
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (y, predicted), 1)
    return counts


def write_confusion(out: Path, y: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> None:
    """confusion.json (counts[true][predicted], class names, accuracy per class); the PNG is
    drawn from it once, when the run ends (`draw_confusion`: drawing costs about a second)."""
    if len(predicted) != len(y) or not len(y):
        return
    k = max(int(y.max()), int(predicted.max())) + 1
    k = max(k, len(names))
    counts = confusion(y, predicted, k)
    labels = [names[i] if i < len(names) else str(i) for i in range(k)]
    totals = counts.sum(axis=1)
    record = {
        "classes": labels,
        "counts": counts.tolist(),
        "rows": "true class",
        "columns": "predicted class",
        "per_class_accuracy": [
            float(counts[i, i] / totals[i]) if totals[i] else None for i in range(k)
        ],
        "accuracy": float(np.trace(counts) / counts.sum()),
    }
    atomic.write(out / CONFUSION_JSON, (json.dumps(record, indent=1) + "\n").encode())


def draw_confusion(out: Path) -> None:
    """confusion.png from the run's confusion.json (nothing where there is none)."""
    path = out / CONFUSION_JSON
    if not path.is_file():
        return
    record = json.loads(path.read_text("utf-8"))
    atomic.write(out / CONFUSION_PNG, _plot(np.asarray(record["counts"]), record["classes"]))


def _plot(counts: np.ndarray, labels: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    side = min(max(4.0, 0.45 * k + 2), 16.0)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(counts, cmap="Blues")
    if k <= 30:  # beyond that, numbers and names would overlap
        ax.set_xticks(range(k), labels, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), labels)
        top = counts.max() or 1
        for (i, j), v in np.ndenumerate(counts):
            colour = "white" if v > top / 2 else "black"
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xlabel="predicted class", ylabel="true class", title="confusion matrix (test set)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
