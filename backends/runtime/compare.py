"""Two artefacts, one input: how far apart are their outputs?

A consumer at the end of the pipeline, used by `netdsl compare A B`: each side is an ONNX model
(run by onnxruntime on a provider), a TensorRT engine (`trt.run_engine`), or a net compiled for
inference. Both get the same seeded random input, uniform in [0, 1) like a scaled image, shaped
as the first side's input with the batch asked for. Both sides must take one float input of the
same shape; that is checked, and the input's bytes against free memory, before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import memory
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

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["shape"] = list(self.shape)
        return found


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
        agree = float((x.argmax(1) == y.argmax(1)).mean()) if x.ndim == 2 and x.size else None
        found.append(Difference(name, tuple(x.shape), diff, diff / scale if scale else diff, agree))
    return found


def _is_engine(side: Any) -> bool:
    return isinstance(side, (str, Path)) and Path(side).suffix.lower() == ".engine"


def image_shape(side: Any, provider: str) -> tuple[int, ...]:
    """The input shape of one side without the batch; fixed sizes only."""
    if _is_engine(side):
        from netdsl.backends.tensorrt.engine import engine_input_shape

        return engine_input_shape(side)
    from netdsl.backends.runtime import ort

    shape = ort.input_shape(ort.session(side, provider=provider))
    rest = [d for d in shape[1:] if isinstance(d, int)]
    if len(rest) != len(shape) - 1:
        raise NetError(
            f"compare needs models with a fixed input size besides the batch, got "
            f"{'x'.join(map(str, shape))}"
        )
    return tuple(rest)


def compare(
    a: Any, b: Any, providers: Sequence[str], batch: int, seed: int = 0
) -> tuple[list[Difference], tuple[int, ...]]:
    """Run both sides on one seeded random input of `batch` images; the differences of their
    outputs and the input's shape."""
    if batch < 1:
        raise NetError(f"the batch must hold at least one image, not {batch}")
    shapes = [image_shape(side, p) for side, p in zip((a, b), providers, strict=True)]
    if shapes[0] != shapes[1]:
        one, two = ("x".join(map(str, s)) for s in shapes)
        raise NetError(f"the two artefacts take different inputs: {one} and {two}")
    shape = (batch, *shapes[0])
    memory.check_fits(shape, f"a random input of {'x'.join(map(str, shape))} floats")
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    out_a, names = run_side(a, providers[0], x)
    out_b, _ = run_side(b, providers[1], x)
    return differences(out_a, out_b, names), shape


def run_side(side: Any, provider: str, x: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Outputs of one side on `x`: an engine path, or an ONNX model (path or ModelProto)."""
    if _is_engine(side):
        from netdsl.backends.tensorrt.engine import run_engine

        return [run_engine(side, x)], ["output"]
    from netdsl.backends.runtime import ort

    sess = ort.session(side, provider=provider)
    ort.input_shape(sess)  # one float input, or a clear error
    names = [o.name for o in sess.get_outputs()]
    x = ort.check_input(sess, x)
    try:
        outputs = sess.run(names, {sess.get_inputs()[0].name: x})
    except Exception as error:  # onnxruntime's own failures (a node that cannot run)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NetError(f"onnxruntime failed to run the model: {first}") from None
    return [np.asarray(y) for y in outputs], names


def check_inputs_fit(model: Any, batches: Sequence[int]) -> None:
    """Refuse batch sizes whose random input would not fit in memory, before any is made."""
    from netdsl.backends.runtime import ort

    if not batches:
        return
    proto = model if hasattr(model, "graph") else ort.read_model(model)
    if not proto.graph.input:
        raise NetError("the model has no input")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    if not shape:
        raise NetError("the model's input is a scalar; netdsl feeds a batch of images")
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    largest = max(batches)
    memory.check_fits(
        (largest, *fixed), f"a batch of {largest:,} inputs of {'x'.join(map(str, shape[1:]))}"
    )
