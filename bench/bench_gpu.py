"""netdsl's ResNet-50 on onnxruntime's CUDA provider against PyTorch eager, on the lent GPU.

Runs on the GPU machine (Python 3.12, torch with CUDA, onnx) and installs nothing: onnxruntime-gpu
comes on PYTHONPATH (see /work/shared/gpu/stage-wheels.sh) and so may lark (netdsl's one
dependency; a zip of the venv's `lark` folder works, see docs/benchmarks.md). The ONNX model is
compiled there from nets/resnet.net, with the weights of the PyTorch model it is timed against,
and both outputs are compared. Both run fp32 with their default settings (both allow TF32 in
convolutions on Ampere and later); inputs and outputs stay on the GPU (IOBinding for
onnxruntime). Median of 30 timed runs after 10 warm-up runs, at batches 1, 64 and 256.

    PYTHONPATH=.:/tmp/site:lark.zip python3 bench/bench_gpu.py      # from the project's root
"""

from __future__ import annotations

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
    need("lark", "netdsl needs lark (pure Python). Carry it, e.g. "
         "`cd .venv/lib/python3.11/site-packages && zip -qr $ROOT/.gpu-stage/lark.zip lark`, "
         "and put the zip on PYTHONPATH.")  # fmt: skip
    sys.path.insert(0, str(ROOT))
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
    ort = need("onnxruntime", "put onnxruntime-gpu on PYTHONPATH: see "
               "/work/shared/gpu/stage-wheels.sh")  # fmt: skip
    torch = need("torch", "this machine's python3 should have torch with CUDA")
    import numpy as np

    from bench import peers
    from netdsl.backends.onnx import to_onnx

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        sys.exit(f"bench_gpu: onnxruntime {ort.__version__} at {ort.__file__} has no CUDA "
                 "provider; is onnxruntime-gpu first on PYTHONPATH?")  # fmt: skip
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: torch sees no GPU")

    net = netdsl.load("resnet50")
    model = peers.randomize(peers.build("resnet50"), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "resnet50.npz"
        np.savez(npz, **peers.to_netdsl(model))
        onnx_model = to_onnx(net, mode="inference", weights=npz).SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    sess = ort.InferenceSession(onnx_model, options, providers=providers)
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        sys.exit(f"bench_gpu: the session runs on {sess.get_providers()}, not CUDA")
    model = model.cuda().eval()

    rows: list[dict[str, Any]] = []
    for batch in BATCHES:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        binding = sess.io_binding()
        binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output("output", "cuda", 0)
        x_gpu = torch.from_numpy(x).cuda()

        def run_torch(x_gpu: Any = x_gpu) -> Any:
            with torch.inference_mode():
                return model(x_gpu)

        def run_ort(binding: Any = binding) -> None:
            sess.run_with_iobinding(binding)

        run_ort()
        ours = binding.copy_outputs_to_cpu()[0]
        theirs = run_torch().float().cpu().numpy()
        error = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        t_ort = timed(run_ort, torch.cuda.synchronize)
        t_torch = timed(run_torch, torch.cuda.synchronize)
        rows.append({"batch": batch, "onnxruntime_s": t_ort, "torch_s": t_torch,
                     "max_rel_error": error})  # fmt: skip
        print(
            f"batch {batch}: onnxruntime {batch / t_ort:,.0f} img/s, "
            f"PyTorch {batch / t_torch:,.0f} img/s, relative error {error:.1e}",
            flush=True,
        )

    results = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "ort_cuda_options": sess.get_provider_options().get("CUDAExecutionProvider", {}),
        "macs_per_image": net.macs,
        "warmup": WARMUP,
        "repeat": REPEAT,
        "rows": rows,
    }
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "bench_gpu.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    print(f"\n{results['device']}, ResNet-50 fp32, images/s (median of {REPEAT}):")
    print("| batch | PyTorch eager | onnxruntime CUDA EP (netdsl ONNX, IOBinding) | ratio | "
          "max rel. error |\n|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        b = r["batch"]
        print(f"| {b} | {b / r['torch_s']:,.0f} | {b / r['onnxruntime_s']:,.0f} | "
              f"{r['torch_s'] / r['onnxruntime_s']:.2f}x | {r['max_rel_error']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
