"""ONNX model -> serialized TensorRT engine, and running one: the deployment end of the pipeline.

Written against TensorRT's documented Python API for 10.x and 11.x and importable without it:
`tensorrt` is imported inside the functions that need it. Precision is the compiler's: the ONNX
graph already holds fp16 or QDQ int8 (`precision.py`), so the network is created strongly typed
where TensorRT offers that (10.x, required by 11.x, which removed the FP16/INT8 builder flags and
the calibrators); no precision flag is ever set. Before TensorRT is touched, the graph goes
through the static check of `trt_support.py`, so a net TensorRT would refuse is refused with its
layer and `.net` line even where TensorRT is absent. Parser errors name the ONNX node and, through
the emitter's node -> span map where the model was compiled from a net, the `.net` line it came
from.

TensorRT cannot be installed on this project's machines (see docs/deploy.md), so only the parts
before `import tensorrt` are tested here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from netdsl.backends.data import atomic
from netdsl.backends.onnx.emit import locate
from netdsl.backends.tensorrt.profile import Profile as Profile
from netdsl.backends.tensorrt.profile import parse_profile as parse_profile
from netdsl.backends.tensorrt.profile import parse_size as parse_size
from netdsl.source import Diagnostic, NetError, Span


def node_origin(
    model: onnx.ModelProto, index: int, name: str = "", spans: Mapping[str, Span] | None = None
) -> str:
    """Where an ONNX node came from, for parser errors: `layer (Op, file:line:col: source)`
    through the emitter's span map (`emit`'s, or `layer_spans(net)`); `layer (Op)` without."""
    nodes = model.graph.node
    node = (
        nodes[index]
        if 0 <= index < len(nodes)
        else next((n for n in nodes if n.name == name), None)
    )
    if node is None:
        return name or f"node {index}"
    span = locate(spans, node.name) if spans else None
    if span is None:
        return f"{node.name} ({node.op_type})"
    text = span.source.line(span.line).strip()
    return f"{node.name} ({node.op_type}, {span.where}: {text})"


def _tensorrt(checked: bool = False) -> Any:
    try:
        import tensorrt

        return tensorrt
    except ImportError as error:
        passed = "; the graph itself passed netdsl's TensorRT check" if checked else ""
        raise NetError(
            f"TensorRT is not installed (import tensorrt: {error})",
            None,
            [f"install NVIDIA's tensorrt package on a machine with a GPU{passed}"],
        ) from None


def build_engine(
    model: onnx.ModelProto,
    profile: Profile,
    *,
    workspace: int = 2**30,
    timing_cache: Path | None = None,
    spans: Mapping[str, Span] | None = None,
) -> bytes:
    """A serialized engine for `model` (already checked), with one profile for the batch;
    `spans` (ONNX node name -> `.net` text) lets every problem point at its layer."""
    from netdsl.backends.tensorrt.support import check_model

    problems = check_model(model, spans=spans)
    if problems:
        head = Diagnostic(f"TensorRT would refuse this graph ({len(problems)} problem(s))")
        raise NetError([head, *problems[:10]])
    trt = _tensorrt(checked=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        notes = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            name = error.node_name() if hasattr(error, "node_name") else ""
            notes.append(f"{node_origin(model, error.node(), name, spans)}: {error.desc()}")
        raise NetError("TensorRT's ONNX parser refused the model", None, notes)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    opt = builder.create_optimization_profile()
    name = model.graph.input[0].name
    opt.set_shape(name, (profile.min, *shape), (profile.opt, *shape), (profile.max, *shape))
    config.add_optimization_profile(opt)
    if timing_cache is not None:
        data = _read(timing_cache) if timing_cache.exists() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise NetError("TensorRT could not build an engine (its log above says why)")
    if timing_cache is not None:
        atomic.write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def run_engine(path: str | Path, x: Any) -> Any:
    """Run a serialized engine on a float32 N×C×H×W array; returns the output as numpy.
    Device memory comes from torch (CUDA), which a TensorRT install brings along in practice."""
    import numpy as np

    trt = _tensorrt()
    try:
        import torch
    except ImportError:
        raise NetError("running an engine needs torch with CUDA for device memory") from None
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(_read(path))
    if engine is None:
        raise NetError(f"'{path}' is not an engine this TensorRT can load")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    device_x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
    context.set_input_shape(inputs[0], tuple(device_x.shape))
    context.set_tensor_address(inputs[0], device_x.data_ptr())
    outputs = {}
    for n in names:
        if n in inputs:
            continue
        out = torch.empty(tuple(context.get_tensor_shape(n)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(n, out.data_ptr())
        outputs[n] = out
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise NetError(f"TensorRT failed to run '{path}'")
    stream.synchronize()
    return next(iter(outputs.values())).cpu().numpy()


def bench_engine(
    path: str | Path, batches: list[int], repeats: int = 20, warmup: int = 3
) -> list[tuple[int, float, float]]:
    """(batch, median ms, images/s) per batch size for a serialized engine, on random input."""
    import statistics
    import time

    import numpy as np

    results = []
    for batch in batches:
        x = np.random.default_rng(batch).random(
            (batch, *engine_input_shape(path)), dtype=np.float32
        )
        for _ in range(warmup):
            run_engine(path, x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_engine(path, x)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results.append((batch, median * 1e3, batch / median))
    return results


def engine_input_shape(path: str | Path) -> tuple[int, ...]:
    trt = _tensorrt()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(_read(path))
    if engine is None:
        raise NetError(f"'{path}' is not an engine this TensorRT can load")
    return tuple(engine.get_tensor_shape(engine.get_tensor_name(0)))[1:]


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise NetError(f"cannot read '{path}': {error.strerror or error}") from None
