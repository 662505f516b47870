"""netdsl's ResNet-50 on onnxruntime's CUDA provider against PyTorch eager, on the lent GPU:
fp32 and netdsl's fp16 graph, with and without cuDNN tuning and CUDA graphs, against PyTorch
eager fp32 and fp16 autocast with channels_last.

Runs on the GPU machine (Python 3.12, torch with CUDA, onnx) and installs nothing: onnxruntime-gpu
comes on PYTHONPATH (see /work/shared/gpu/stage-wheels.sh) and so may lark (netdsl's one
dependency; a zip of the venv's `lark` folder works, see docs/benchmarks.md). The ONNX model is
compiled there from nets/resnet.net, with the weights of the PyTorch model it is timed against,
and both outputs are compared. Both run fp32 with their default settings (both allow TF32 in
convolutions on Ampere and later); inputs and outputs stay on the GPU (IOBinding for
onnxruntime). Median of 30 timed runs after 10 warm-up runs, at batches 1, 64 and 256.

    PYTHONPATH=.:/tmp/site:lark.zip python -m bench.bench_gpu      # from the project's root
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 64, 256)
WARMUP, REPEAT = 10, 30


def need(module: str, hint: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        sys.exit(f"bench_gpu: cannot import {module} ({error}).\n{hint}")


def import_netdsl() -> Any:
    """netdsl from the source tree: its subpackages netdsl.backends, .grammars and .nets live
    in the root's backends/, grammars/ and nets/ (an install maps them), so the root joins the
    package's search path."""
    need(
        "lark",
        "netdsl needs lark (pure Python). Carry it, e.g. "
        "`cd .venv/lib/python3.11/site-packages && zip -qr $ROOT/.gpu-stage/lark.zip lark`, "
        "and put the zip on PYTHONPATH.",
    )
    import netdsl

    if str(ROOT) not in netdsl.__path__:
        netdsl.__path__.append(str(ROOT))
    return netdsl


def timed(fn: Callable[[], object], sync: Callable[[], object]) -> float:
    """Median seconds of `fn` (synchronised) after warm-up."""
    for _ in range(WARMUP):
        fn()
    sync()
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    netdsl = import_netdsl()
    ort = need(
        "onnxruntime", "put onnxruntime-gpu on PYTHONPATH: see /work/shared/gpu/stage-wheels.sh"
    )
    torch = need("torch", "this machine's python3 should have torch with CUDA")
    import numpy as np

    from bench import peers
    from netdsl.backends.onnx.emit import to_onnx

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        sys.exit(
            f"bench_gpu: onnxruntime {ort.__version__} at {ort.__file__} has no CUDA "
            "provider; is onnxruntime-gpu first on PYTHONPATH?"
        )
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: torch sees no GPU")

    net = netdsl.load("resnet50")
    model = peers.randomize(peers.build("resnet50"), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "resnet50.npz"
        np.savez(npz, **peers.to_netdsl(model))
        fp32 = to_onnx(net, mode="inference", weights=npz)
        folded = to_onnx(net, mode="inference", weights=npz, fold_bn=True)
    models = {"fp32": fp32.SerializeToString()}
    try:  # netdsl's own fp16 graph (backends/precision.py), where this tree has it
        from netdsl.backends.passes.fp16 import apply_precision

        models["fp16"] = apply_precision(fp32, "fp16").SerializeToString()
        models["fp16 folded"] = apply_precision(folded, "fp16").SerializeToString()
    except ImportError as error:
        print(f"bench_gpu: no fp16 path in this tree ({error})", flush=True)
    model = model.cuda().eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)  # .to() is in place

    def session(blob: bytes, tuned: bool, graph: bool = False) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        cuda: dict[str, str] = {}
        if tuned:  # cuDNN's exhaustive algorithm search and NHWC kernels where they exist
            cuda = {
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "prefer_nhwc": "1",
                "cudnn_conv_use_max_workspace": "1",
            }
        if graph:  # one CUDA graph replays the whole net; needs fixed shapes and addresses
            cuda["enable_cuda_graph"] = "1"
        sess = ort.InferenceSession(blob, options, providers=[("CUDAExecutionProvider", cuda)])
        if sess.get_providers()[0] != "CUDAExecutionProvider":
            sys.exit(f"bench_gpu: the session runs on {sess.get_providers()}, not CUDA")
        return sess

    variants = [
        ("onnxruntime fp32", "fp32", False, False),
        ("onnxruntime fp32 tuned", "fp32", True, False),
    ]
    if "fp16" in models:
        variants += [
            ("onnxruntime fp16 tuned", "fp16", True, False),
            ("onnxruntime fp16 bn-folded tuned", "fp16 folded", True, False),
            ("onnxruntime fp16 tuned + CUDA graph", "fp16", True, True),
        ]
    sessions = {v[0]: session(models[v[1]], v[2]) for v in variants if not v[3]}

    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        x_gpu = torch.from_numpy(x).cuda()
        x_last = x_gpu.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            reference = model(x_gpu).float().cpu().numpy()

        def run_torch(x_gpu: Any = x_gpu) -> Any:
            with torch.inference_mode():
                return model(x_gpu)

        def run_torch16(x_last: Any = x_last) -> Any:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                return fast(x_last)

        times = {
            "PyTorch eager fp32": timed(run_torch, torch.cuda.synchronize),
            "PyTorch fp16 autocast channels_last": timed(run_torch16, torch.cuda.synchronize),
        }
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            out16 = fast(x_last).float().cpu().numpy()
        errors = {"PyTorch fp16 autocast channels_last": _error(out16, reference)}
        for label, kind, tuned, graph in variants:
            sess = session(models[kind], tuned, True) if graph else sessions[label]
            x_ort = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            y_ort = ort.OrtValue.ortvalue_from_shape_and_type((batch, 1000), np.float32, "cuda", 0)
            binding = sess.io_binding()
            binding.bind_ortvalue_input("input", x_ort)
            binding.bind_ortvalue_output("output", y_ort)

            def run_ort(sess: Any = sess, binding: Any = binding) -> None:
                sess.run_with_iobinding(binding)

            run_ort()
            errors[label] = _error(y_ort.numpy(), reference)
            times[label] = timed(run_ort, torch.cuda.synchronize)
        row = {"batch": batch, "seconds": times, "max_rel_error": errors}
        rows.append(row)
        print(
            f"batch {batch}: " + ", ".join(f"{k} {batch / t:,.0f} img/s" for k, t in times.items()),
            flush=True,
        )

    results = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "macs_per_image": net.macs,
        "warmup": WARMUP,
        "repeat": REPEAT,
        "rows": rows,
    }
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "bench_gpu.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    labels = list(rows[0]["seconds"])
    print(
        f"\n{results['device']}, ResNet-50, images/s (median of {REPEAT}; in brackets the "
        "largest error relative to PyTorch fp32's largest output):"
    )
    print("| batch | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for r in rows:
        b = r["batch"]
        cells = [
            f"{b / r['seconds'][k]:,.0f}"
            + (f" ({r['max_rel_error'][k]:.0e})" if k in r["max_rel_error"] else "")
            for k in labels
        ]
        print(f"| {b} | " + " | ".join(cells) + " |")


def _error(ours: Any, reference: Any) -> float:
    import numpy as np

    return float(np.abs(ours - reference).max() / np.abs(reference).max())


if __name__ == "__main__":
    main()
