"""One training step, three ways, on the CPU: netdsl's native engine, PyTorch eager, and
netdsl's ort-training engine, side by side in one run.

The step alone (no data loading, augmentation, evaluation or checkpoint: bench/bench_e2e.py
times those): a batch of images in, the loss, gradients and an SGD-momentum update (0.9) done.
The same net, the same initial weights (netdsl's initialisation, copied into the PyTorch twin of
bench/peers.py by tensor name), the same batches in the same order, the same thread count for
onnxruntime and torch:
- lenet5 on MNIST (the first 8,000 training images of ../shared/data/mnist, padded to 32x32;
  scikit-learn's digits resized where that folder is absent);
- resnet18_cifar (bench/nets/resnet18_cifar.net: ResNet-18 with the 3x3 stem of CIFAR recipes,
  3x32x32) on random images: the data does not change a step's time.

The three take turns (bench.common.interleaved: a turn during which other processes kept CPUs
busy is not counted, while any undisturbed one exists); images/s = batch / median step time; the
ratios are native over PyTorch and native over ort-training. Each candidate's first loss, from
the same weights and batch, is printed too: they must agree (a check that the nets are twins).
ort-training runs where onnxruntime.training imports (Python <= 3.11, the `ort-training` extra).

    nice -n 10 .venv/bin/python -m bench.bench_train [--nets lenet5,resnet18_cifar]
        [--batch 32,128,256] [--threads 1,2] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import netdsl
from bench import peers
from bench.common import ROOT, interleaved, machine, markdown, wait_quiet, write_json
from netdsl.backends.data import sources as datasets
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.files import Progress
from netdsl.backends.train.loop import Run, initial_params
from netdsl.backends.train.native import NativeEngine, NativeRun
from netdsl.backends.train.settings import Config

MNIST = ROOT.parent / "shared" / "data" / "mnist"
CIFAR_NET = ROOT / "bench" / "nets" / "resnet18_cifar.net"
HAS_ORT_TRAINING = importlib.util.find_spec("onnxruntime.training") is not None
LR = 0.01  # constant: a schedule's arithmetic is not part of a step


def load(name: str, train: int = 8000) -> tuple[netdsl.ShapedNet, datasets.Dataset]:
    """The net and its data (`train` training images at most)."""
    if name == "lenet5":
        net = netdsl.load("lenet5")
        if (MNIST / "t10k-images-idx3-ubyte.gz").exists():
            data = datasets.load(f"mnist:{MNIST}")
            data = datasets.fit(data, net.input_shape, 10, "lenet5", "pad")
        else:
            data = datasets.fit(datasets.load("digits"), net.input_shape, 10, "lenet5")
    elif name == "resnet18_cifar":
        net = netdsl.load(str(CIFAR_NET))
        data = random_images(net.input_shape, train, max(train // 5, 10))
    else:
        raise SystemExit(f"unknown net {name} (lenet5, resnet18_cifar)")
    keep = slice(0, train)
    return net, datasets.checked(
        data.name, data.x_train[keep], data.y_train[keep], data.x_test, data.y_test, data.notes
    )


def random_images(shape: tuple[int, ...], train: int, test: int) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((train + test, *shape), dtype=np.float32)
    y = rng.integers(0, 10, train + test).astype(np.int64)
    notes = ("random images: a step's time does not depend on the pixels",)
    return datasets.checked("random", x[:train], y[:train], x[train:], y[train:], notes)


def twin(name: str) -> torch.nn.Module:
    """The PyTorch twin, without the trailing softmax (CrossEntropyLoss takes logits)."""
    if name == "resnet18_cifar":
        return peers.ResNet18Cifar(softmax=False)
    return peers.build(name, softmax=False)


class Batches:
    """The shared batch order: a fixed permutation, cycled."""

    def __init__(self, data: datasets.Dataset, batch: int) -> None:
        self.data, self.batch = data, batch
        self.order = np.random.default_rng(0).permutation(len(data.x_train))
        self.steps, self.position = len(self.order) // batch, 0

    def next(self) -> np.ndarray:
        k = self.position % self.steps
        self.position += 1
        return self.order[k * self.batch : (k + 1) * self.batch]


def native(
    net: netdsl.ShapedNet, data: datasets.Dataset, config: Config, params: dict[str, np.ndarray]
) -> Callable[[], float]:
    """netdsl's default engine: the training-step model on stock onnxruntime's InferenceSession
    (here onnxruntime-training's, which is the same)."""
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    run = NativeRun(net, data, config, work, params, work, lambda kind, values: None)
    run.engine = NativeEngine(
        run.step_model, run.step_model.initial_state(run.params), threads=config.threads
    )
    return _stepper(run, data, config)


def ort_training(
    net: netdsl.ShapedNet, data: datasets.Dataset, config: Config, params: dict[str, np.ndarray]
) -> Callable[[], float]:
    """netdsl's ort-training engine: onnxruntime-training's gradient graph, numpy's SGD."""
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    run = Run(net, data, config, work, params, work, lambda kind, values: None)
    return _stepper(run, data, config)


def _stepper(run: Run, data: datasets.Dataset, config: Config) -> Callable[[], float]:
    batches, progress = Batches(data, config.batch), Progress()
    optimizer = sgd.make("sgd", momentum=config.momentum, weight_decay=0.0)

    def step() -> float:
        before = progress.loss_sum
        run.step(optimizer, batches.next(), 0, 0, LR, progress)
        return (progress.loss_sum - before) / config.batch

    return step


def pytorch(
    name: str, data: datasets.Dataset, config: Config, params: dict[str, np.ndarray]
) -> Callable[[], float]:
    model = twin(name).train()
    peers.from_netdsl(model, params)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=config.momentum)
    loss_fn, batches = torch.nn.CrossEntropyLoss(), Batches(data, config.batch)

    def step() -> float:
        index = batches.next()
        x, y = torch.from_numpy(data.x_train[index]), torch.from_numpy(data.y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def point(
    name: str, net: netdsl.ShapedNet, data: datasets.Dataset, batch: int, threads: int, rounds: int
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    config = Config(batch=batch, threads=threads, shift=0, epochs=1, checkpoint_every=0)
    params = initial_params(net, config, lambda kind, values: None)
    steps = {
        "native": native(net, data, config, params),
        "torch": pytorch(name, data, config, params),
    }
    if HAS_ORT_TRAINING:
        steps["ort-training"] = ort_training(net, data, config, params)
    first = {k: round(fn(), 5) for k, fn in steps.items()}  # the same weights and batch
    # Steps of a second or more (ResNet) need no warm-up call per turn (the first call above
    # warmed each up) and get a shorter budget: past it, one turn each is enough.
    slow = name != "lenet5"
    timings = interleaved(
        steps, rounds, min_turn_s=0.0, warmup=0 if slow else 1, budget_s=20.0 if slow else 60.0
    )
    ips = {k: batch / t.median for k, t in timings.items()}
    row: dict[str, Any] = {
        "net": name,
        "batch": batch,
        "threads": threads,
        "first_loss": first,
        "images_per_s": {k: round(v, 1) for k, v in ips.items()},
        "vs_torch": round(ips["native"] / ips["torch"], 3),
        "timed_calls": {k: t.calls for k, t in timings.items()},
        "disturbed_turns": {k: t.dropped_turns for k, t in timings.items()},
    }
    if "ort-training" in ips:
        row["vs_ort_training"] = round(ips["native"] / ips["ort-training"], 3)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    header = ["net", "batch", "threads", "native img/s", "PyTorch img/s", "ort-training img/s",
              "native / PyTorch", "native / ort-training"]  # fmt: skip
    body = []
    for r in rows:
        ips = r["images_per_s"]
        body.append([
            r["net"], r["batch"], r["threads"], f"{ips['native']:,.0f}", f"{ips['torch']:,.0f}",
            f"{ips['ort-training']:,.0f}" if "ort-training" in ips else "-",
            f"{r['vs_torch']:.2f}x",
            f"{r['vs_ort_training']:.2f}x" if "vs_ort_training" in r else "-",
        ])  # fmt: skip
    return markdown(header, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nets", default="lenet5,resnet18_cifar")
    parser.add_argument("--batch", default="32,128,256", help="batch sizes")
    parser.add_argument("--threads", default="1,2", help="thread counts")
    parser.add_argument("--rounds", type=int, default=3, help="undisturbed turns per candidate")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for a quiet CPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not HAS_ORT_TRAINING:
        print("onnxruntime.training does not import here: no ort-training column", flush=True)
    load_seen = wait_quiet(args.wait)
    rows = []
    for name in args.nets.split(","):
        net, data = load(name)
        print(f"{name} on {data.describe()}", flush=True)
        for threads in (int(t) for t in args.threads.split(",")):
            for batch in (int(b) for b in args.batch.split(",")):
                rows.append(point(name, net, data, batch, threads, args.rounds))
                print(table(rows[-1:]).splitlines()[-1], "first losses", rows[-1]["first_loss"],
                      flush=True)  # fmt: skip
    print(table(rows))
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    print(f"load average at the end: {' '.join(loadavg)}")
    write_json(
        args.json,
        {"machine": machine(), "busy_cpus_before": load_seen, "loadavg_after": loadavg,
         "rows": rows},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
