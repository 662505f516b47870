"""ONNX model -> a Triton Inference Server model repository: `REPO/NAME/config.pbtxt` and
`REPO/NAME/1/model.onnx` (or `model.plan`, a TensorRT engine).

The serving end of the pipeline, after `onnx` (which compiles a net) and `tensorrt` (which builds
a plan). The configuration is read off the model itself: every graph input and output with its
data type and dimensions; a dynamic first dimension becomes Triton's batch (`max_batch_size`,
with the dimensions after it), and only then can requests be batched dynamically. It is written
in protobuf's text format for Triton's `ModelConfig` message (model_config.proto), which the
tests parse with Triton's own generated module. A repository is written whole or not at all: the
model's folder is built under a temporary name inside REPO and renamed into place, and an
existing model folder is replaced only when asked.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from netdsl.source import NetError

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
TYPES: dict[int, str] = {
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.STRING: "TYPE_STRING",
    TensorProto.BFLOAT16: "TYPE_BF16",
}
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class Serving:
    """How Triton serves the model: the largest batch it forms (0: no batching), the batch
    sizes it prefers to wait for, how long a request may wait for others, and how many copies
    of the model run on which kind of device."""

    max_batch: int = 8
    preferred: tuple[int, ...] | None = None  # None: powers of two from max_batch / 4 up
    queue_delay_us: int = 100
    instances: int = 1
    kind: str = "gpu"

    def preferred_sizes(self) -> tuple[int, ...]:
        if self.preferred is not None:
            return tuple(sorted(set(self.preferred)))
        sizes = {b for b in (2**k for k in range(32)) if self.max_batch // 4 <= b < self.max_batch}
        return tuple(sorted(sizes | {self.max_batch})) if self.max_batch else ()


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    data_type: str
    dims: tuple[int, ...]  # -1 where the size varies


def signature(model: onnx.ModelProto, batched: bool) -> tuple[list[Tensor], list[Tensor]]:
    """The model's inputs and outputs as Triton sees them (without the batch where `batched`)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return (
        [_tensor(v, batched) for v in inputs],
        [_tensor(v, batched) for v in model.graph.output],
    )


def _tensor(value: onnx.ValueInfoProto, batched: bool) -> Tensor:
    t = value.type.tensor_type
    if t.elem_type not in TYPES:
        raise NetError(f"'{value.name}' has an element type Triton does not serve ({t.elem_type})")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return Tensor(value.name, TYPES[t.elem_type], tuple(dims[1:] if batched else dims))


def batch_dimension(model: onnx.ModelProto) -> int | None:
    """The model's batch: None where every input's first dimension is dynamic, else its size."""
    initializers = {t.name for t in model.graph.initializer}
    firsts = set()
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            return 1  # a scalar input has no batch to vary
        firsts.add(dims[0].dim_value if dims[0].HasField("dim_value") else None)
    return None if firsts == {None} else max((f or 1 for f in firsts), default=1)


def check(model: onnx.ModelProto, fmt: str, serving: Serving) -> None:
    """Refuse a configuration Triton would refuse, saying why."""
    if fmt not in PLATFORMS:
        raise NetError(f"unknown model format '{fmt}' (choose {' or '.join(PLATFORMS)})")
    if serving.kind not in KINDS:
        raise NetError(f"unknown instance kind '{serving.kind}' (choose {' or '.join(KINDS)})")
    if fmt == "plan" and serving.kind != "gpu":
        raise NetError("a TensorRT plan runs on GPU instances only")
    if serving.instances < 1:
        raise NetError(f"a model needs at least one instance, not {serving.instances}")
    if serving.max_batch < 0 or serving.queue_delay_us < 0:
        raise NetError("the largest batch and the queue delay cannot be negative")
    bad = [b for b in serving.preferred_sizes() if not 1 <= b <= serving.max_batch]
    if bad:
        raise NetError(
            f"preferred batch sizes must lie in 1..{serving.max_batch} (the largest batch), "
            f"not {', '.join(map(str, bad))}"
        )
    mode = {p.key: p.value for p in model.metadata_props}.get("mode", "")
    if mode.startswith("train"):
        raise NetError(
            f"the model '{model.graph.name}' is in training form: its batch norms would use "
            "the statistics of each batch, so one request's answer would depend on the others "
            "batched with it (and dropout would be on)",
            None,
            ["compile it in the inference form"],
        )
    fixed = batch_dimension(model)
    if serving.max_batch and fixed is not None:
        raise NetError(
            f"the model has a fixed batch of {fixed}, so Triton cannot batch its requests",
            None,
            ["compile it with a dynamic batch, or serve it without batching (largest batch 0)"],
        )


def config_text(model: onnx.ModelProto, name: str, fmt: str, serving: Serving) -> str:
    """`config.pbtxt` for `model` served as `name`: protobuf text of Triton's ModelConfig."""
    check(model, fmt, serving)
    inputs, outputs = signature(model, batched=serving.max_batch > 0)
    lines = [
        f"# written by netdsl from the ONNX graph {_q(model.graph.name)}",
        f"name: {_q(name)}",
        f'platform: "{PLATFORMS[fmt][0]}"',
        f"max_batch_size: {serving.max_batch}",
        *_tensors("input", inputs),
        *_tensors("output", outputs),
    ]
    if serving.max_batch:
        sizes = ", ".join(map(str, serving.preferred_sizes()))
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: [ {sizes} ]",
            f"  max_queue_delay_microseconds: {serving.queue_delay_us}",
            "}",
        ]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {serving.instances}",
        f"    kind: {KINDS[serving.kind]}",
        "  }",
        "]",
    ]
    return "\n".join(lines) + "\n"


def _tensors(field: str, tensors: list[Tensor]) -> list[str]:
    out = [f"{field} ["]
    for k, t in enumerate(tensors):
        # Triton needs one dimension at least; a per-request scalar is [1] reshaped to []
        dims = ", ".join(map(str, t.dims or (1,)))
        out += ["  {", f"    name: {_q(t.name)}", f"    data_type: {t.data_type}"]
        out += [f"    dims: [ {dims} ]"]
        out += ["    reshape: { shape: [ ] }"] if not t.dims else []
        out.append("  }," if k < len(tensors) - 1 else "  }")
    return [*out, "]"]


def _q(text: str) -> str:
    """A protobuf text-format string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_repository(
    model: onnx.ModelProto,
    repo: str | Path,
    *,
    name: str | None = None,
    fmt: str = "onnx",
    serving: Serving = Serving(),
    replace: bool = False,
) -> Path:
    """Write `model` into the Triton repository `repo` as `name` (default: the graph's name);
    for `fmt` "plan" a TensorRT engine is built first. Returns the model's folder."""
    name = name or model.graph.name or "model"
    if not NAME.match(name):
        raise NetError(f"'{name}' cannot name a Triton model (letters, digits, _ . - only)")
    config = config_text(model, name, fmt, serving)
    repo = Path(repo)
    target = repo / name
    if target.exists() and not replace:
        raise NetError(f"'{target}' already exists; a repository is never overwritten silently")
    payload = _engine(model, serving) if fmt == "plan" else None  # before anything is written
    try:
        repo.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=repo))
    except OSError as error:
        raise NetError(f"cannot write into '{repo}': {error.strerror or error}") from None
    try:
        (staging / "1").mkdir()
        (staging / "config.pbtxt").write_text(config, "utf-8")
        if payload is not None:
            (staging / "1" / PLATFORMS[fmt][1]).write_bytes(payload)
        else:
            from netdsl.backends.onnx.compile import save_model

            save_model(model, staging / "1" / PLATFORMS[fmt][1])
        _swap(staging, target, replace)
    except OSError as error:
        raise NetError(f"cannot write '{target}': {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _engine(model: onnx.ModelProto, serving: Serving) -> bytes:
    from netdsl.backends.tensorrt.engine import Profile, build_engine

    top = max(serving.max_batch, 1)
    opt = max(serving.preferred_sizes(), default=top)
    return build_engine(model, Profile(1, opt, top))


def _swap(staging: Path, target: Path, replace: bool) -> None:
    """Move the finished folder into place; an old one is moved aside first and removed only
    after the new one is in."""
    if not target.exists():
        staging.rename(target)  # fails rather than merges if another writer got there first
        return
    if not replace:
        raise NetError(f"'{target}' appeared while it was written; nothing was replaced")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
