"""Where a training step's time goes: onnxruntime's profiler on netdsl's step model, beside
torch.profiler on the PyTorch twin, summarised by operator type.

For a point of bench/bench_train.py that falls short: the same net, batch and threads; the step
model (`backends/train/step.py`) runs in an InferenceSession with `enable_profiling`, the
profile's node events are summed by op type (and the slowest single nodes listed); the PyTorch
twin's step runs under torch.profiler, summed by aten op. Both are averaged over --steps steps
after one warm-up step. The profile file onnxruntime writes goes to a temporary folder.

    nice -n 10 .venv/bin/python -m bench.profile_step resnet18_cifar --batch 128 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench import peers
from bench.bench_train import load, twin
from netdsl.backends.train.loop import initial_params
from netdsl.backends.train.settings import Config
from netdsl.backends.train.step import to_training_step


def onnx_profile(name: str, batch: int, threads: int, steps: int) -> tuple[float, list, list]:
    """(ms per step, [(op type, ms per step, nodes)], [(node, op type, ms per step)])."""
    import onnxruntime as ort

    net, data = load(name, max(batch, 256))
    params = initial_params(net, Config(), lambda kind, values: None)
    step = to_training_step(net, "sgd", params=params)
    feeds: dict[str, np.ndarray] = dict(step.initial_state(params))
    feeds |= {"input": data.x_train[:batch], "labels": data.y_train[:batch]}
    feeds |= {"lr": np.array(0.01, np.float32), "step": np.array(0, np.int64)}
    for m in step.masks:
        feeds[m.input] = np.ones((batch, *m.shape), np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    with tempfile.TemporaryDirectory(prefix="profile-step-") as work:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "step")
        session = ort.InferenceSession(step.model.SerializeToString(), options)
        session.run(None, feeds)  # warm-up: also in the profile, dropped below by its run index
        for _ in range(steps):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    per_run = [e["dur"] / 1e3 for e in runs][1:]
    first_end = runs[0]["ts"] + runs[0]["dur"]
    by_type: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.Counter()
    by_node: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if e["ts"] < first_end:
            continue
        op = e["args"].get("op_name", "?")
        by_type[op] += e["dur"] / 1e3 / steps
        count[op] += 1
        by_node[(e["name"][: -len("_kernel_time")], op)] += e["dur"] / 1e3 / steps
    types = sorted(((t, ms, count[t] // steps) for t, ms in by_type.items()), key=lambda r: -r[1])
    nodes = sorted(((n, op, ms) for (n, op), ms in by_node.items()), key=lambda r: -r[2])
    return float(np.median(per_run)), types, nodes


def torch_profile(name: str, batch: int, threads: int, steps: int) -> tuple[float, list]:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    net, data = load(name, max(batch, 256))
    model = twin(name).train()
    peers.from_netdsl(model, initial_params(net, Config(), lambda kind, values: None))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.from_numpy(data.x_train[:batch]), torch.from_numpy(data.y_train[:batch])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = [
        (e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in prof.key_averages()
    ]
    total = sum(ms for _, ms, _ in table)
    return total, sorted(table, key=lambda r: -r[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("net", choices=("lenet5", "resnet18_cifar"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    ms, types, nodes = onnx_profile(args.net, args.batch, args.threads, args.steps)
    print(f"netdsl step model, {args.net}, batch {args.batch}, {args.threads} thread(s): "
          f"{ms:.1f} ms per step")  # fmt: skip
    print("| op type | ms per step | share | nodes |\n|---|---|---|---|")
    kernels = sum(t for _, t, _ in types)
    for op, t, n in types[: args.top]:
        print(f"| {op} | {t:.1f} | {100 * t / kernels:.1f} % | {n} |")
    print("\nslowest nodes:")
    for node, op, t in nodes[: args.top]:
        print(f"  {t:8.1f} ms  {op:20} {node}")
    total, table = torch_profile(args.net, args.batch, args.threads, args.steps)
    print(f"\nPyTorch eager, same point: {total:.1f} ms per step (self CPU time)")
    print("| aten op | ms per step | share | calls |\n|---|---|---|---|")
    for key, t, n in table[: args.top]:
        print(f"| {key} | {t:.1f} | {100 * t / total:.1f} % | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
