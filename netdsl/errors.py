"""Errors whose fix a front end can name: small `NetError` subclasses carrying the facts.

Beside `source.py` at the bottom of the stack: library code (netdsl's core and the backends)
raises these where the way out is an option of whoever called it. The library says what went
wrong and keeps the values the advice needs in `facts`; it never names a command-line flag.
The command line (`netdsl.cli.advice`) maps each class to the flag that fixes it and appends
that as a note; an API user reads the message and the keyword argument named in `facts`.
Every class here is a `NetError`, so code that catches `NetError` is unaffected. Missing
optional packages are `MissingExtra`, which the command line reports as a usage error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from netdsl.source import Diagnostic, NetError, Span


class Advisable(NetError):
    """A `NetError` a front end may add advice to; `facts` holds the values it may quote."""

    def __init__(
        self,
        message: str | Iterable[Diagnostic],
        span: Span | None = None,
        notes: Iterable[str] = (),
        **facts: Any,
    ) -> None:
        super().__init__(message, span, notes)
        self.facts: dict[str, Any] = facts


class WeightsMismatch(Advisable):
    """Tensors of a weights file have other shapes than the net's (the API's remedy:
    `skip_mismatched=True`)."""


class Diverged(Advisable):
    """Training stopped because the loss ran away. Facts: `lr`, the peak learning rate."""


class FixedBatch(Advisable):
    """A model with a fixed batch size was asked for other sizes. Facts: `batch`, the fixed
    size."""


class NeedsInference(Advisable):
    """The request needs the inference form (bn with running statistics, no dropout), and the
    model or options are in training form (the API's remedy: `mode="inference"`)."""


class DataMissing(Advisable):
    """Dataset files are absent and could be downloaded (the API's remedy: `download=True`)."""


class NoCheckpoint(Advisable):
    """A run to resume has no checkpoint. Facts: `path`, where one was looked for."""


class ImageSizeMismatch(Advisable):
    """Images of another size than the net takes. Facts: `fits`, the ways that would bring
    them to size (a tuple drawn from "resize", "pad")."""


class ClassCount(Advisable):
    """The labels need more classes than the net outputs. Facts: `classes`, the number the
    labels need."""


class MissingExtra(NetError):
    """Optional packages that a feature needs are not installed. `extra` names the netdsl
    extra that brings them (`pip install 'netdsl[EXTRA]'`), `modules` the missing imports."""

    def __init__(self, modules: str | Sequence[str], extra: str, feature: str = "this") -> None:
        self.modules = (modules,) if isinstance(modules, str) else tuple(modules)
        self.extra = extra
        names = ", ".join(f"'{m}'" for m in self.modules)
        which = "which is" if len(self.modules) == 1 else "which are"
        super().__init__(
            f"{feature} needs the Python package{'s' if len(self.modules) > 1 else ''} "
            f"{names}, {which} not installed",
            None,
            [f"install the {extra} extra: pip install 'netdsl[{extra}]'"],
        )


# The extra that brings each optional top-level module (see pyproject.toml).
EXTRAS = {
    "onnx": "onnx",
    "numpy": "onnx",
    "onnxruntime": "run",
    "PIL": "run",
    "torch": "ort-training",
    "sklearn": "train",
    "matplotlib": "train",
}


def missing_extra(error: ImportError, feature: str = "this") -> MissingExtra | None:
    """The `MissingExtra` an import error means, or None if it is not an optional package of
    netdsl's (then it is a bug, not a missing install)."""
    name = getattr(error, "name", None) or ""
    top = name.split(".")[0]
    if name.startswith("onnxruntime.training"):  # the ort-training engine's own extra
        return MissingExtra(name, "ort-training", feature)
    extra = EXTRAS.get(top)
    return MissingExtra(top, extra, feature) if extra else None
