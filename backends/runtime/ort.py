"""Running compiled nets with onnxruntime: sessions, inputs, top-k, benchmarks.

After `backends/onnx.py` in the pipeline: it takes an ONNX model (a `ModelProto` from `to_onnx`
or an `.onnx` file, netdsl's or anyone's) and runs it. Inputs come from arrays, `.npy` files or
images (resized to the net's input size, scaled to [0, 1]). Whatever a user can get wrong (a
corrupt or foreign model, an input of the wrong shape or type, an unreadable image, a provider
that is not installed) comes out as a one-line `NetError` saying what was expected.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from netdsl.errors import FixedBatch
from netdsl.source import NetError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
LEVELS = ("disable", "basic", "extended", "all")
MAX_PROTO = 2**31 - 1  # protobuf cannot hold a larger message
Model = onnx.ModelProto | str | Path


def read_model(path: str | Path, *, data: bool = False) -> onnx.ModelProto:
    """An `.onnx` file's graph, or a clear error. External weights have their locations checked
    to stay in the model's folder (`backends/data/onnxfile.py`) and are left on disk, or with
    `data` read in (for a consumer such as TensorRT's parser that is handed the model's bytes
    and would otherwise look for them relative to the working folder)."""
    from netdsl.backends.data import onnxfile

    model, external = onnxfile.load(path)
    for ext in external if data else ():
        onnxfile.load_data(ext)
    return model


def _loadable(path: str | Path) -> bytes | str:
    """What onnxruntime is given for an .onnx path: the model's bytes with its (checked)
    external data read in by netdsl, so onnxruntime opens no file the check did not see; or,
    for a model too large to serialise (2 GiB), the path itself, after the same check."""
    from netdsl.backends.data import onnxfile

    model, external = onnxfile.load(path)
    if model.ByteSize() + sum(e.length for e in external) >= MAX_PROTO:
        return str(path)
    for ext in external:
        onnxfile.load_data(ext)
    blob: bytes = model.SerializeToString()
    return blob


def session(
    model: Model,
    *,
    provider: str = "cpu",
    level: str = "all",
    threads: int = 0,
    inter_threads: int = 0,
) -> Any:
    """An onnxruntime InferenceSession; `threads` 0 lets onnxruntime choose."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise NetError(f"unknown provider '{provider}' (choose {' or '.join(PROVIDERS)})")
    if level not in LEVELS:
        raise NetError(f"unknown optimisation level '{level}' (choose {', '.join(LEVELS)})")
    available = ort.get_available_providers()
    if PROVIDERS[provider] not in available:
        have = ", ".join(k for k, v in PROVIDERS.items() if v in available)
        raise NetError(
            f"provider '{provider}' is not available in this onnxruntime "
            f"(available: {have}); install onnxruntime-gpu for cuda"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel,
        "ORT_ENABLE_ALL"
        if level == "all"
        else {
            "disable": "ORT_DISABLE_ALL",
            "basic": "ORT_ENABLE_BASIC",
            "extended": "ORT_ENABLE_EXTENDED",
        }[level],
    )
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_threads
    options.log_severity_level = 3  # warnings about shapes would repeat what NetError says
    name = "the model" if isinstance(model, onnx.ModelProto) else f"'{model}'"
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else _loadable(model)
    try:
        sess = ort.InferenceSession(source, options, providers=[PROVIDERS[provider]])
    except Exception as error:
        raise NetError(f"onnxruntime cannot load {name}: {_first_line(error)}") from None
    return sess


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(" : ")[-1] if text.startswith("[ONNXRuntimeError]") else text


def input_shape(sess: Any) -> list[int | str]:
    """The model's one float input, as [batch, C, H, W] with names for free dimensions."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise NetError(
            f"the model takes {len(inputs)} inputs ({names}); netdsl runs models "
            f"with one image input"
        )
    meta = inputs[0]
    if meta.type != "tensor(float)":
        raise NetError(
            f"the model's input '{meta.name}' is {meta.type}; netdsl feeds tensor(float) (float32)"
        )
    return [d if isinstance(d, int) else str(d or "?") for d in meta.shape]


def input_shapes(sess: Any) -> dict[str, list[int | str]]:
    """Every input of the model by name, as [batch, ...] with names for free dimensions (a net
    with several inputs: `input a: ..., b: ...`); each must be float32."""
    shapes: dict[str, list[int | str]] = {}
    for meta in sess.get_inputs():
        if meta.type != "tensor(float)":
            raise NetError(
                f"the model's input '{meta.name}' is {meta.type}; netdsl feeds tensor(float)"
            )
        shapes[meta.name] = [d if isinstance(d, int) else str(d or "?") for d in meta.shape]
    return shapes


def check_input(sess: Any, x: Any, what: str = "input") -> np.ndarray:
    """`x` as a float32 batch the model accepts; a single image gets a batch of 1."""
    want = input_shape(sess)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        hint = " (scale images to [0, 1] first)" if x.dtype == np.uint8 else ""
        raise NetError(f"{what}: expected float32 values, got {x.dtype}{hint}")
    given = x.shape
    if x.ndim == len(want) - 1:
        x = x[None]
    fits = x.ndim == len(want) and all(
        not isinstance(d, int) or d == n for d, n in zip(want, x.shape, strict=True)
    )
    if not fits:
        one, got = "x".join(map(str, want[1:])), "x".join(map(str, given)) or "a scalar"
        raise NetError(
            f"{what}: expected an array of shape {'x'.join(map(str, want))} (or "
            f"{one} for one image), got {got}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def run(model: Model | Any, x: Any, **options: Any) -> np.ndarray:
    """The model's output for `x` (a batch, or one image); `model` may be a session."""
    sess: Any = model if hasattr(model, "get_inputs") else session(model, **options)
    x = check_input(sess, x)
    out: np.ndarray = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return out


# ---- inputs ----------------------------------------------------------------------------------


def image_size(sess: Any) -> tuple[int, int, int]:
    """(C, H, W) of the model's input, which an image must be resized to."""
    want = input_shape(sess)
    if len(want) != 4 or not all(isinstance(d, int) for d in want[1:]):
        raise NetError(
            f"the model's input is {'x'.join(map(str, want))}, not a fixed "
            f"N x C x H x W image size; pass a .npy array instead"
        )
    c, h, w = (int(d) for d in want[1:])
    return c, h, w


def load_input(path: str | Path, sess: Any) -> np.ndarray:
    """An input for the session's model from a `.npy` array (as saved) or an image file
    (resized to the model's input size, scaled to [0, 1])."""
    from netdsl.backends.data import npy

    path = Path(path)
    if not path.is_file():
        raise NetError(f"no such file: '{path}'")
    if path.suffix.lower() == ".npy":
        return npy.load_npy(path)  # header checked against the file's length before reading
    return load_image(path, image_size(sess))


def load_image(path: str | Path, size: tuple[int, int, int]) -> np.ndarray:
    """An image file resized to `size` (C, H, W), scaled to [0, 1] and brought to C channels
    by the rule of `backends/data/images.py` (16-bit and float images from their real range;
    luma for grey, repetition for colour; alpha composited on black)."""
    from netdsl.backends.data import images

    c, h, w = size
    if c not in (1, 3):
        raise NetError(f"the net takes {c} channels; an image gives 1 or 3 (pass a .npy array)")
    return images.resize(images.read(Path(path), c), h, w)


def random_input(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform in [0, 1): never all zeros, so a wrong weight cannot hide."""
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def top_k(scores: np.ndarray, k: int = 5) -> list[list[tuple[int, float]]]:
    """For each image of a (batch, classes) output: the k best (class, score), best first."""
    if scores.ndim != 2:
        raise NetError(f"top-k needs a (batch, classes) output, got {scores.shape}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [(int(i), float(row[i])) for i in best] for row, best in zip(scores, order, strict=True)
    ]


# ---- benchmarks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    batch: int
    median_ms: float
    min_ms: float
    images_per_s: float
    repeats: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bench(
    model: Model,
    batches: Sequence[int] = (1, 8, 64),
    *,
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    given: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> list[Timing]:
    """Median latency and throughput of the model for each batch size, on random inputs, or
    on the samples `given` for an input (by name; repeated to fill each batch)."""
    if repeats < 1 or warmup < 0 or any(b < 1 for b in batches):
        raise NetError("repeats and batch sizes must be >= 1, warmup >= 0")
    sess = session(model, **options)
    shapes = input_shapes(sess)  # every input gets a random batch of its own
    want = next(iter(shapes.values()))
    fixed = want[0] if isinstance(want[0], int) else None
    if fixed is not None and any(b != fixed for b in batches):
        raise FixedBatch(
            f"the model has a fixed batch size of {fixed}; it cannot be timed at batch "
            f"{', '.join(str(b) for b in batches if b != fixed)}",
            batch=fixed,
        )
    for shape in shapes.values():
        if not all(isinstance(d, int) for d in shape[1:]):
            raise NetError(
                f"the model's input {'x'.join(map(str, shape))} has free dimensions "
                f"besides the batch; netdsl cannot choose them"
            )
    timings = []
    for b in batches:
        feeds = {
            name: np.resize(given[name], (b, *given[name].shape[1:]))
            if given and name in given
            else random_input([b, *(int(d) for d in shape[1:])], seed + k)
            for k, (name, shape) in enumerate(shapes.items())
        }
        for _ in range(warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        timings.append(Timing(b, median * 1e3, min(times) * 1e3, b / median, repeats))
    return timings
