"""The settings of a training run: one typed `Config`, checked when it is made.

Read by `loop.py` (which trains with them and saves them in the checkpoint) and built by the
command line (`netdsl/cli/train.py`) or an API user. Every numeric setting must be a finite number
in its range and every named one a known name, or making the `Config` raises one `NetError`
naming the setting (never a flag: the front end knows which option it came from). A resumed run
keeps its settings except the RESUMABLE ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from netdsl.backends.data.sources import FITS
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.files import Checkpoint
from netdsl.source import NetError

RESUMABLE = ("epochs", "threads", "checkpoint_every", "eval_batch")  # may change on resume
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Config:
    """A run's settings (the CLI's options; see docs/training.md)."""

    epochs: int = 20
    batch: int = 32
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    init: str = "auto"
    fit: str = "auto"  # how images met the net's input size (data/sources.py's `fit`)
    shift: int = 2  # augmentation: random translations of up to this many pixels
    threads: int = 0  # onnxruntime's intra-op threads; 0: one per core
    checkpoint_every: int = 200  # steps; 0: only at the end of each epoch
    eval_batch: int = 500
    freeze: tuple[str, ...] = ()  # fnmatch patterns of tensors kept fixed
    init_from: str | None = None
    skip_mismatched: bool = False
    engine: str = "onnx"  # "onnx": the compiler's own training step (native.py); "ort-training"
    device: str = "cpu"  # cpu or cuda (the onnx engine)

    def __post_init__(self) -> None:
        problem = next(_problems(self), None)
        if problem:
            raise NetError(f"invalid training setting: {problem}")


# (field, lowest, highest, what) of the integer settings
INTS = (
    ("epochs", 1, INT_MAX, "the number of epochs"),
    ("batch", 1, INT_MAX, "the batch size"),
    ("step_size", 1, INT_MAX, "the step schedule's step size"),
    ("eval_batch", 1, INT_MAX, "the evaluation batch size"),
    ("shift", 0, 1024, "the augmentation shift"),
    ("threads", 0, 4096, "the number of threads"),
    ("checkpoint_every", 0, INT_MAX, "the checkpoint interval"),
    ("seed", 0, 2**63 - 1, "the seed"),
)
# (field, what, the range in words, whether a finite value is in it) of the real settings
FLOATS: tuple[tuple[str, str, str, Callable[[float], bool]], ...] = (
    ("lr", "the learning rate", "above 0", lambda v: v > 0),
    ("momentum", "the momentum", "from 0 up to (not including) 1", lambda v: 0 <= v < 1),
    ("weight_decay", "the weight decay", "at least 0", lambda v: v >= 0),
    ("gamma", "the step schedule's factor gamma", "above 0 and at most 1", lambda v: 0 < v <= 1),
)


def _problems(c: Config) -> Iterator[str]:
    """What is wrong with a run's settings: finite, in-range numbers and known names."""
    for name, low, high, what in INTS:
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            yield f"{what} ({name}) must be an integer from {low:,} to {high:,}, got {v!r}"
    for name, what, words, fits in FLOATS:
        v = getattr(c, name)
        real = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not real or not fits(float(v)):
            yield f"{what} ({name}) must be a finite number {words}, got {v!r}"
    for name, allowed in (
        ("optimizer", sgd.OPTIMIZERS),
        ("schedule", sgd.SCHEDULES),
        ("init", wt.INITS),
        ("fit", FITS),
        ("engine", ("onnx", "ort-training")),
        ("device", ("cpu", "cuda")),
    ):
        if getattr(c, name) not in allowed:
            yield f"{name} must be one of {', '.join(allowed)}, got {getattr(c, name)!r}"


def saved_config(state: Checkpoint) -> Config:
    values = dict(state.meta["config"])
    try:
        return Config(**{**values, "freeze": tuple(values.get("freeze", ()))})
    except TypeError as error:
        raise NetError(f"the checkpoint's settings are damaged ({error})") from None


def check_resumable(saved: Config, config: Config) -> None:
    """A resumed run keeps its settings; only the RESUMABLE ones may change."""
    changed = [
        k for k, v in asdict(config).items() if k not in RESUMABLE and v != getattr(saved, k)
    ]
    if changed:
        shown = ", ".join(f"{k} {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise NetError(
            f"a resumed run keeps its settings, but these changed: {shown}",
            None,
            [f"only {', '.join(RESUMABLE)} may change"],
        )
