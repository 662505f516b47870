"""netdsl's ONNX backend side by side with PyTorch, on the CPU.

(a) Emission: `to_onnx(netdsl.load("resnet50"))` against `torch.onnx.export` of the same
architecture (bench/peers.py), both giving a model with its 25.6 M weights, timed in one process.
(b) Inference: onnxruntime (CPU) running netdsl's ResNet-50 and LeNet-5 against PyTorch eager
with the same weights (copied by name through `peers.to_netdsl`) and the same thread count, and
against the model `torch.onnx.export` writes, on the same onnxruntime. Settings are swept at
batch 1 (graph optimisation level, netdsl's batch-norm folding, spinning threads); the best is
timed at batches 1 and 8. GFLOP/s counts 2 x multiply-adds x images/s against the fp32 peak.

    .venv/bin/python -m bench.bench_onnx [--threads 2] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import io
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import netdsl
from bench import peers
from bench.common import (
    Timing,
    busy_cpus,
    interleaved,
    machine,
    markdown,
    ms,
    wait_quiet,
    write_json,
)
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.onnx.weights import initialise

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
SHAPES = {"resnet50": (3, 224, 224), "lenet5": (1, 32, 32)}


def peak_gflops(info: dict[str, Any], cores: int, ghz: float | None) -> tuple[float, str]:
    """fp32 FMA peak = cores x GHz x FMA units x SIMD lanes x 2. Assumes 2 FMA units per core;
    AMD Zen 3/4 (family 25) run AVX-512 as two 256-bit halves, so 8 lanes a unit; Intel with
    AVX-512 and Zen 5 16; AVX2 8. The clock: `ghz` if given (lscpu in a VM often shows only
    the TSC clock), else lscpu's `CPU max MHz`, else BogoMIPS / 2 (the TSC: a lower bound)."""
    where = "given"
    if ghz is None:
        max_mhz, bogomips = info.get("CPU max MHz"), float(info.get("BogoMIPS", 0))
        ghz, where = (
            (float(max_mhz) / 1e3, "lscpu max")
            if max_mhz
            else (bogomips / 2e3, "BogoMIPS/2, a lower bound")
        )
    zen34 = "AMD" in info.get("Model name", "") and info.get("CPU family") == "25"
    lanes = 16 if "avx512f" in info.get("simd", []) and not zen34 else 8
    peak = cores * ghz * 2 * lanes * 2
    how = f"{cores} cores x {ghz:.2f} GHz ({where}) x 2 FMA units x {lanes} fp32 lanes x 2"
    return peak, how


def sgemm_gflops(threads: int, budget_s: float) -> float:
    """A practical ceiling: PyTorch's fp32 matrix product on this many threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / interleaved({"mm": lambda: a @ b}, 3, budget_s=budget_s)["mm"].median / 1e9


# ---- (a) emission ----------------------------------------------------------------------------


def emission(rounds: int, budget_s: float) -> dict[str, Any]:
    net = netdsl.load("resnet50")
    model = peers.build("resnet50")
    x = torch.randn(1, 3, 224, 224)
    given = peers.to_netdsl(model)  # the same weights, so both sides only write what they have

    def torch_export(fresh: bool = False) -> bytes:
        f = io.BytesIO()
        torch.onnx.export(
            peers.build("resnet50") if fresh else model,
            (x,),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        )
        return f.getvalue()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        times = interleaved(
            {
                "netdsl_to_onnx": lambda: to_onnx(net, mode="inference", weights=given),
                "netdsl_to_onnx_fresh": lambda: to_onnx(net, mode="inference"),
                "torch_export": torch_export,
                "netdsl_end_to_end": lambda: to_onnx(
                    netdsl.load("resnet50"), mode="inference"
                ).SerializeToString(),
                "torch_end_to_end": lambda: torch_export(fresh=True),
                "netdsl_fresh_weights": lambda: initialise(net),
                "torch_build": lambda: peers.build("resnet50"),
            },
            rounds,
            min_turn_s=0,
            warmup=0,
            budget_s=budget_s,
        )
    results: dict[str, Any] = {f"{k}_s": t.median for k, t in times.items()}
    results["ratio_export"] = times["torch_export"].median / times["netdsl_to_onnx"].median
    results["ratio_export_fresh"] = (
        times["torch_export"].median / times["netdsl_to_onnx_fresh"].median
    )
    results["ratio_end_to_end"] = (
        times["torch_end_to_end"].median / times["netdsl_end_to_end"].median
    )
    results["dropped_turns"] = sum(t.dropped_turns for t in times.values())
    results["noisy"] = [k for k, t in times.items() if not t.clean]
    results["onnxscript"] = importlib.util.find_spec("onnxscript") is not None
    return results


# ---- (b) inference ---------------------------------------------------------------------------


def session(model: bytes, level: str, threads: int, spin: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def models(name: str, tmp: Path) -> tuple[torch.nn.Module, dict[str, bytes], Any]:
    """The PyTorch peer with random weights (non-trivial batch norms), and ONNX models with the
    same weights: netdsl's (plain and bn-folded) and torch.onnx.export's."""
    net = netdsl.load(name)
    peer = peers.randomize(peers.build(name), seed=1)
    npz = tmp / f"{name}.npz"
    np.savez(npz, **peers.to_netdsl(peer))  # type: ignore[arg-type]
    plain = to_onnx(net, mode="inference", weights=npz)
    folded = to_onnx(net, mode="inference", fold_bn=True, weights=npz)
    f = io.BytesIO()
    x = torch.randn(1, *SHAPES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            peer,
            (x,),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}},
        )
    onnx_models = {
        "netdsl": plain.SerializeToString(),
        "netdsl-folded": folded.SerializeToString(),
        "torch.onnx.export": f.getvalue(),
    }
    return peer, onnx_models, net


def ort_run(sess: ort.InferenceSession, x: np.ndarray) -> Callable[[], object]:
    return lambda: sess.run(None, {"input": x})


def torch_run(model: torch.nn.Module, x: np.ndarray, channels_last: bool) -> Callable[[], object]:
    tensor = torch.from_numpy(x)
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        tensor = tensor.contiguous(memory_format=torch.channels_last)

    def run() -> object:
        with torch.inference_mode():
            return model(tensor)

    return run


def sweep(
    onnx_models: dict[str, bytes],
    threads: int,
    x: np.ndarray,
    expected: np.ndarray,
    rounds: int,
    budget_s: float,
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Batch-1 time and relative error against PyTorch of every onnxruntime setting tried:
    each optimisation level for netdsl's model with and without folded batch norms, then
    threads that sleep at once instead of spinning, and one thread; torch's export (which
    folds batch norms itself) at no and at full optimisation."""
    configs = [(m, level, True, threads) for m in ("netdsl", "netdsl-folded") for level in LEVELS]
    configs += [("netdsl", "all", False, threads), ("netdsl", "all", True, 1)]
    configs += [("torch.onnx.export", level, True, threads) for level in ("disable", "all")]
    runs, errors = {}, {}
    for model_name, level, spin, n in configs:
        key = (
            f"{model_name} / {level}"
            + ("" if spin else " / no spin")
            + (f" / {n} thread" if n != threads else "")
        )
        sess = session(onnx_models[model_name], level, n, spin)
        got = sess.run(None, {"input": x})[0]
        errors[key] = float(np.abs(got - expected).max() / np.abs(expected).max())
        runs[key] = ort_run(sess, x)
    return interleaved(runs, rounds, warmup=3, warmup_s=0.1, budget_s=budget_s), errors


def inference(
    name: str, threads: int, rounds: int, batches: tuple[int, ...], budget_s: float
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        peer, onnx_models, net = models(name, Path(tmp))
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *SHAPES[name]), dtype=np.float32)
    expected = torch_run(peer, x1, False)().numpy()  # type: ignore[attr-defined]
    times, errors = sweep(onnx_models, threads, x1, expected, rounds, budget_s)
    same_threads = [k for k in times if "thread" not in k]
    best = min((k for k in same_threads if k.startswith("netdsl")), key=lambda k: times[k].median)
    best_torch = min(
        (k for k in same_threads if k.startswith("torch")), key=lambda k: times[k].median
    )
    gc.collect()
    rows: dict[str, dict[int, float]] = {}
    dropped, noisy = 0, [k for k, t in times.items() if not t.clean]
    for batch in batches:
        x = rng.standard_normal((batch, *SHAPES[name]), dtype=np.float32)
        runs = {}
        for key in (best, best_torch):
            model_name, level, *rest = key.split(" / ")
            sess = session(onnx_models[model_name], level, threads, not rest)
            runs[f"onnxruntime: {key}"] = ort_run(sess, x)
        runs["PyTorch eager"] = torch_run(peer, x, False)
        runs["PyTorch eager channels_last"] = torch_run(peer, x, True)
        for label, timing in interleaved(
            runs, rounds, warmup=2, warmup_s=0.1, budget_s=budget_s
        ).items():
            rows.setdefault(label, {})[batch] = timing.median
            dropped += timing.dropped_turns
            if not timing.clean:
                noisy.append(f"{label} / batch {batch}")
    return {
        "net": name,
        "macs": net.macs,
        "threads": threads,
        "sweep_batch1_s": {k: t.median for k, t in times.items()},
        "max_rel_error_vs_torch": errors,
        "best_netdsl": best,
        "best_torch_onnx": best_torch,
        "seconds_per_batch": rows,
        "dropped_turns": dropped + sum(t.dropped_turns for t in times.values()),
        "noisy": noisy,
    }


# ---- report ----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    em = results["emission"]
    out = [
        "ONNX emission of ResNet-50 (median):",
        markdown(
            ["what", "netdsl", "torch.onnx.export", "torch / netdsl"],
            [
                [
                    "emit, weights given (the model's)",
                    ms(em["netdsl_to_onnx_s"]),
                    ms(em["torch_export_s"]),
                    f"{em['ratio_export']:.1f}x",
                ],
                [
                    "emit, netdsl drawing fresh weights",
                    ms(em["netdsl_to_onnx_fresh_s"]),
                    ms(em["torch_export_s"]),
                    f"{em['ratio_export_fresh']:.1f}x",
                ],
                [
                    "end to end (load/build + emit + bytes)",
                    ms(em["netdsl_end_to_end_s"]),
                    ms(em["torch_end_to_end_s"]),
                    f"{em['ratio_end_to_end']:.1f}x",
                ],
                [
                    "of which fresh weights (netdsl) / model build (torch)",
                    ms(em["netdsl_fresh_weights_s"]),
                    ms(em["torch_build_s"]),
                    "",
                ],
            ],
        ),
    ]
    peak = results["peak_gflops"]
    for inf in results["inference"]:
        batches = sorted({b for row in inf["seconds_per_batch"].values() for b in row})
        header = ["runtime / settings"]
        for b in batches:
            header += [f"b={b} ms", f"b={b} img/s", f"b={b} GFLOP/s (peak)"]
        rows = []
        for label, times in inf["seconds_per_batch"].items():
            row = [label]
            for b in batches:
                ips = b / times[b]
                gf = 2 * inf["macs"] * ips / 1e9
                row += [f"{times[b] * 1e3:,.3g}", f"{ips:,.0f}", f"{gf:,.1f} ({gf / peak:.0%})"]
            rows.append(row)
        out += ["", f"{inf['net']}, {inf['threads']} threads, median:", markdown(header, rows)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="turns of >= 0.3 s per candidate")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for quiet")
    parser.add_argument("--budget", type=float, default=40, help="seconds per comparison")
    parser.add_argument("--ghz", type=float, help="the clock for the peak (default: lscpu)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds

    info = machine()
    peak, how = peak_gflops(info, min(args.threads, os.cpu_count() or 1), args.ghz)
    results: dict[str, Any] = {
        "machine": info,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "peak_gflops": peak,
        "peak_how": how,
        "busy_cpus_before": wait_quiet(args.wait),
    }
    start = time.perf_counter()
    results["emission"] = emission(rounds, args.budget)
    results["sgemm_gflops"] = sgemm_gflops(args.threads, args.budget)
    results["inference"] = [
        inference("resnet50", args.threads, rounds, (1, 8), args.budget),
        inference("lenet5", args.threads, rounds, (1, 8), args.budget),
    ]
    results["wall_s"] = time.perf_counter() - start
    results["busy_cpus_after"] = busy_cpus()
    write_json(args.json, results)
    for inf in results["inference"]:
        print(f"{inf['net']}: batch-1 sweep, ms (max relative error against PyTorch):")
        for key, seconds in sorted(inf["sweep_batch1_s"].items(), key=lambda kv: kv[1]):
            mark = " (disturbed)" if key in inf["noisy"] else ""
            error = inf["max_rel_error_vs_torch"][key]
            print(f"  {seconds * 1e3:9.3f}  {key}  ({error:.1e}){mark}")
    print(
        f"fp32 peak {peak:.0f} GFLOP/s = {how}; PyTorch sgemm 2048^3 on {args.threads} "
        f"threads: {results['sgemm_gflops']:.0f} GFLOP/s; wall {results['wall_s']:.0f} s; "
        f"other load {results['busy_cpus_before']:.1f} / {results['busy_cpus_after']:.1f} CPUs; "
        f"turns dropped as disturbed: {results['emission']['dropped_turns']}, "
        + ", ".join(str(inf["dropped_turns"]) for inf in results["inference"])
    )
    noisy = results["emission"]["noisy"] + [n for i in results["inference"] for n in i["noisy"]]
    if noisy:
        print(f"warning: no undisturbed turn for: {'; '.join(noisy)}")
    print()
    print(report(results))


if __name__ == "__main__":
    main()
