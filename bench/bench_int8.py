"""ResNet-50 in int8 (netdsl's QDQ graph) against fp32 on onnxruntime's CPU provider, same run.

Both from `netdsl.load("resnet50")` with the same random weights, batch norms folded; int8
calibrated on 32 images. Interleaved timing (median of 10 after 3 warm-ups), 2 threads,
ORT_ENABLE_ALL, batches 1 and 8; output agreement on 32 images.

    .venv/bin/python -m bench.bench_int8
"""

from __future__ import annotations

import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.passes.int8 import quantize_int8


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main() -> None:
    net = netdsl.load("resnet50")
    fp32 = to_onnx(net, mode="inference", fold_bn=True, seed=1)
    rng = np.random.default_rng(0)
    calib = rng.random((32, 3, 224, 224), dtype=np.float32)
    start = time.perf_counter()
    int8 = quantize_int8(fp32, calib)
    quantize_s = time.perf_counter() - start
    sessions = {
        "fp32": session(fp32.SerializeToString()),
        "int8": session(int8.SerializeToString()),
    }
    x = rng.random((32, 3, 224, 224), dtype=np.float32)
    y = {
        k: np.concatenate([s.run(None, {"input": x[i : i + 8]})[0] for i in range(0, 32, 8)])
        for k, s in sessions.items()
    }
    agree = float((y["fp32"].argmax(1) == y["int8"].argmax(1)).mean())
    error = float(np.abs(y["fp32"] - y["int8"]).max() / np.abs(y["fp32"]).max())
    rows = []
    for batch in (1, 8):
        xb = x[:batch]
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(3):
            for s in sessions.values():
                s.run(None, {"input": xb})
        for _ in range(10):
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(None, {"input": xb})
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((batch, batch / med["fp32"], batch / med["int8"], med["fp32"] / med["int8"]))
    vnni = (
        subprocess.run(
            ["sh", "-c", "grep -o -m1 'avx512_vnni\\|avx_vnni' /proc/cpuinfo"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "none"
    )
    print(
        f"ResNet-50 on onnxruntime {ort.__version__} CPU, 2 threads (VNNI: {vnni}); "
        f"quantisation with calibration took {quantize_s:.1f} s"
    )
    print(
        f"int8 vs fp32 on 32 random images: top-1 agreement {agree:.0%}, largest error "
        f"relative to the largest output {error:.1e}"
    )
    print("| batch | fp32 img/s | int8 img/s | int8 / fp32 |\n|---|---|---|---|")
    for batch, f, i, r in rows:
        print(f"| {batch} | {f:.1f} | {i:.1f} | {r:.2f}x |")


if __name__ == "__main__":
    main()
