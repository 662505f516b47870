"""Two artefacts, one input: how far apart are their outputs?

A consumer at the end of the pipeline, used by `netdsl compare A B`: each side is an ONNX model
(run by onnxruntime on a provider), a TensorRT engine (`trt.run_engine`), or a net compiled for
inference. Both get the same seeded random input, uniform in [0, 1) like a scaled image, shaped
as the first side's input with the batch asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.source import NetError


@dataclass(frozen=True, slots=True)
class Difference:
    output: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # largest absolute difference over the largest absolute reference value
    top1_agreement: float | None  # for N x classes outputs

    def render(self) -> str:
        agree = (
            "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        )
        shape = "x".join(map(str, self.shape))
        return (
            f"{self.output} ({shape}): max abs error {self.max_abs:.3e}, "
            f"max rel error {self.max_rel:.3e}{agree}"
        )


def differences(a: list[np.ndarray], b: list[np.ndarray], names: list[str]) -> list[Difference]:
    if len(a) != len(b):
        raise NetError(f"the two artefacts have {len(a)} and {len(b)} outputs")
    found = []
    for name, x, y in zip(names, a, b, strict=True):
        if x.shape != y.shape:
            raise NetError(f"output {name}: shapes differ, {x.shape} and {y.shape}")
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        diff = float(np.abs(x64 - y64).max()) if x.size else 0.0
        scale = float(np.abs(x64).max()) if x.size else 0.0
        agree = float((x.argmax(1) == y.argmax(1)).mean()) if x.ndim == 2 else None
        found.append(Difference(name, tuple(x.shape), diff, diff / scale if scale else diff, agree))
    return found


def run_side(side: Any, provider: str, x: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Outputs of one side on `x`: an engine path, or an ONNX model (path or ModelProto)."""
    if isinstance(side, (str, Path)) and Path(side).suffix.lower() == ".engine":
        from netdsl.backends.tensorrt.engine import run_engine

        return [run_engine(side, x)], ["output"]
    from netdsl.backends.runtime import ort

    sess = ort.session(side, provider=provider)
    names = [o.name for o in sess.get_outputs()]
    return [np.asarray(y) for y in sess.run(names, {sess.get_inputs()[0].name: x})], names
