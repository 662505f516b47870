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
from dataclasses import asdict, dataclass, fields

from netdsl.backends.data.sources import FITS
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import optim as sgd
from netdsl.backends.train import rates
from netdsl.backends.train.files import Checkpoint
from netdsl.source import NetError

RESUMABLE = ("epochs", "threads", "checkpoint_every", "eval_batch", "patience")  # on resume
INT_MAX = 2**31 - 1
# The defaults, chosen by bench/defaults.py across the MNIST textbook nets (docs/training.md)
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_LR = {"sgd": 0.05, "adamw": 3e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adamw": 0.01}
DEFAULT_WARMUP = 100


@dataclass(frozen=True)
class Config:
    """A run's settings (the CLI's options; see docs/training.md)."""

    epochs: int = 20
    batch: int = 32
    optimizer: str = DEFAULT_OPTIMIZER
    lr: float = 3e-3  # from_dict gives each optimizer its own default (DEFAULT_LR)
    momentum: float = 0.9
    weight_decay: float = 0.01  # likewise (DEFAULT_WEIGHT_DECAY)
    warmup: int = DEFAULT_WARMUP  # steps over which the learning rate rises linearly from 0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    init: str = "auto"
    fit: str = "auto"  # how images met the net's input size (data/sources.py's `fit`)
    shift: int = -1  # augmentation: shifts of up to this many pixels; -1: size / 14 for conv nets
    flip: bool = False  # augmentation: random horizontal flips
    normalise: bool = True  # per-channel mean/std: `mean`/`std`, or measured on the training set
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    patience: int = 0  # stop after this many epochs without a better test accuracy; 0: never
    threads: int = 0  # onnxruntime's intra-op threads; 0: one per core
    checkpoint_every: int = 200  # steps; 0: only at the end of each epoch
    eval_batch: int = 500
    freeze: tuple[str, ...] = ()  # fnmatch patterns of tensors kept fixed
    lr_mult: tuple[str, ...] = ()  # "PATTERN=MULT": those tensors train at MULT x the rate
    init_from: str | None = None
    skip_mismatched: bool = False
    engine: str = "onnx"  # "onnx": the compiler's own training step (native.py); "ort-training"
    device: str = "cpu"  # cpu or cuda (the onnx engine)
    loss_output: str = ""  # the output the loss is on; "": the net's only output

    def __post_init__(self) -> None:
        for name in ("mean", "std", "freeze", "lr_mult"):
            if isinstance(getattr(self, name), list):  # as JSON gives it back
                object.__setattr__(self, name, tuple(getattr(self, name)))
        problem = next(_problems(self), None)
        if problem:
            raise NetError(f"invalid training setting: {problem}")


# (field, lowest, highest, what) of the integer settings
INTS = (
    ("epochs", 1, INT_MAX, "the number of epochs"),
    ("batch", 1, INT_MAX, "the batch size"),
    ("step_size", 1, INT_MAX, "the step schedule's step size"),
    ("eval_batch", 1, INT_MAX, "the evaluation batch size"),
    ("shift", -1, 1024, "the augmentation shift (-1: automatic)"),
    ("warmup", 0, INT_MAX, "the warm-up steps"),
    ("patience", 0, INT_MAX, "the early-stopping patience"),
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
    for name in ("mean", "std"):
        v = getattr(c, name)
        if v is not None and not (
            isinstance(v, tuple)
            and v
            and all(isinstance(e, (int, float)) and math.isfinite(e) for e in v)
        ):
            yield f"{name} must be one or more finite numbers, got {v!r}"
    try:
        rates.parse(c.lr_mult)
    except NetError as error:
        yield error.message
    if c.std is not None and any(e <= 0 for e in c.std):
        yield f"std must be above 0, got {c.std!r}"
    if not isinstance(c.loss_output, str):
        yield f"the loss output (loss_output) must be an output's name, got {c.loss_output!r}"
    for name in ("flip", "normalise", "skip_mismatched"):
        if not isinstance(getattr(c, name), bool):
            yield f"{name} must be true or false, got {getattr(c, name)!r}"
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
    if "warmup" not in values:  # a checkpoint from before these settings: its day's defaults
        values = {"shift": 2, "warmup": 0, "normalise": False, **values}
    try:
        return from_dict(values)
    except NetError as error:
        raise NetError(f"the checkpoint's settings are damaged ({error})") from None


def from_dict(values: dict[str, object], where: str = "the settings") -> Config:
    """A Config from its JSON form (config.json, a checkpoint, the command line's options):
    unknown keys are refused, missing ones take the defaults."""
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise NetError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    optimizer = values.get("optimizer", DEFAULT_OPTIMIZER)
    if isinstance(optimizer, str) and optimizer in DEFAULT_LR:  # each optimizer's own defaults
        values = {
            "lr": DEFAULT_LR[optimizer],
            "weight_decay": DEFAULT_WEIGHT_DECAY[optimizer],
            **values,
        }
    try:
        return Config(**values)  # type: ignore[arg-type]
    except TypeError as error:
        raise NetError(f"{where} are damaged ({error})") from None


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
