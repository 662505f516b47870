"""netdsl train beside PyTorch on the CPU: the same net, data, batch, optimizer and threads.

LeNet-5 (nets/lenet5.net, and bench/peers.py's LeNet5 with the same initial weights copied by
name) on the same data: MNIST's first 8,000 / last 2,000 test images of ../shared/data/mnist,
padded to 32x32 (scikit-learn's digits, resized, where that folder is absent), the same batches
in the same order with the same random shifts, SGD with momentum 0.9 and the same cosine
learning rate, the same thread count for onnxruntime and torch.

(a) Throughput: training steps of the two taking turns (bench.common.interleaved: a turn during
which other processes kept CPUs busy is not counted), for each batch size and thread count;
images/s = batch / median step time; the ratio is netdsl's over PyTorch's.
(b) Accuracy: both trained for --epochs from the same weights on the same batches, then
evaluated on the test split (netdsl: its exported inference model; PyTorch: eval mode).

    .venv/bin/python -m bench.bench_train [--batch 32,64,128] [--threads 1,2] [--epochs 5]
        [--accuracy-batch 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import netdsl
from bench import peers
from bench.common import interleaved, machine, markdown, wait_quiet, write_json
from netdsl.backends.data import sources as datasets
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.files import Progress
from netdsl.backends.train.loop import Config, Run, initial_params, shifted

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def load() -> tuple[netdsl.ShapedNet, datasets.Dataset]:
    net = netdsl.load("lenet5")
    if (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        data = datasets.fit(datasets.load(f"mnist:{MNIST}"), net.input_shape, 10, "lenet5", "pad")
    else:
        data = datasets.fit(datasets.load("digits"), net.input_shape, 10, "lenet5")
    return net, data


class Trainer:
    """One framework's training state, stepping through the shared batch order."""

    def __init__(self, net: netdsl.ShapedNet, data: datasets.Dataset, config: Config) -> None:
        self.data, self.config = data, config
        self.steps = math.ceil(len(data.x_train) / config.batch)
        self.schedule = sgd.Schedule("cosine", config.lr, config.epochs, self.steps)
        self.position = 0
        self.params = initial_params(net, config, lambda kind, values: None)

    def next(self) -> tuple[np.ndarray, float, int, int]:
        """The next batch's indices, learning rate, epoch and step (the order `train` uses)."""
        epoch, step = divmod(self.position, self.steps)
        self.position += 1
        n, size = len(self.data.x_train), self.config.batch
        index = np.random.default_rng([self.config.seed, epoch]).permutation(n)
        lr = self.schedule.at(epoch % self.config.epochs, step)
        return index[step * size : (step + 1) * size], lr, epoch, step


class Netdsl(Trainer):
    def __init__(self, net: netdsl.ShapedNet, data: datasets.Dataset, config: Config) -> None:
        super().__init__(net, data, config)
        self.work = tempfile.TemporaryDirectory(prefix="bench-train-")
        self.run = Run(
            net,
            data,
            config,
            Path(self.work.name),
            self.params,
            Path(self.work.name),
            lambda kind, values: None,
        )
        self.optimizer = sgd.make("sgd", momentum=config.momentum, weight_decay=0.0)
        self.progress = Progress()

    def step(self) -> None:
        index, lr, epoch, step = self.next()
        self.run.step(self.optimizer, index, epoch, step, lr, self.progress)

    def accuracy(self) -> float:
        return self.run.evaluate()[1]


class Torch(Trainer):
    def __init__(self, net: netdsl.ShapedNet, data: datasets.Dataset, config: Config) -> None:
        super().__init__(net, data, config)
        self.model = peers.build("lenet5", softmax=False).train()
        peers.from_netdsl(self.model, self.params)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum
        )
        self.loss = torch.nn.CrossEntropyLoss()

    def step(self) -> None:
        index, lr, epoch, step = self.next()
        x, y = self.data.x_train[index], self.data.y_train[index]
        if self.config.shift:
            x = shifted(
                x, self.config.shift, np.random.default_rng([self.config.seed, epoch, step, 2])
            )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad()
        loss = self.loss(self.model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        self.optimizer.step()

    def accuracy(self) -> float:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(torch.from_numpy(self.data.x_test))
        self.model.train()
        return float((logits.argmax(1).numpy() == self.data.y_test).mean())


def throughput(
    net: netdsl.ShapedNet, data: datasets.Dataset, batch: int, threads: int, rounds: int
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    config = Config(batch=batch, threads=threads, epochs=5)
    ours, theirs = Netdsl(net, data, config), Torch(net, data, config)
    timings = interleaved(
        {"netdsl": ours.step, "torch": theirs.step}, rounds, min_turn_s=0.5, warmup=2
    )
    ips = {k: batch / t.median for k, t in timings.items()}
    return {
        "batch": batch,
        "threads": threads,
        "netdsl_images_per_s": round(ips["netdsl"]),
        "torch_images_per_s": round(ips["torch"]),
        "ratio": round(ips["netdsl"] / ips["torch"], 3),
        "dropped_turns": {k: t.dropped_turns for k, t in timings.items()},
    }


def accuracy(
    net: netdsl.ShapedNet, data: datasets.Dataset, batch: int, threads: int, epochs: int
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    config = Config(batch=batch, threads=threads, epochs=epochs)
    result: dict[str, Any] = {"batch": batch, "threads": threads, "epochs": epochs}
    for name, kind in (("netdsl", Netdsl), ("torch", Torch)):
        trainer: Netdsl | Torch = kind(net, data, config)
        start = time.perf_counter()
        for _ in range(epochs * trainer.steps):
            trainer.step()
        result[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
        result[f"{name}_accuracy"] = trainer.accuracy()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="32,64,128", help="batch sizes to time")
    parser.add_argument("--threads", default="1,2", help="thread counts to time")
    parser.add_argument("--rounds", type=int, default=5, help="undisturbed turns per candidate")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the accuracy run")
    parser.add_argument("--accuracy-batch", type=int, default=32)
    parser.add_argument("--accuracy-threads", type=int, default=2)
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for a quiet CPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    net, data = load()
    print(f"LeNet-5 on {data.describe()}; {'; '.join(data.notes)}")
    load_seen = wait_quiet(args.wait)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for batch in (int(b) for b in args.batch.split(",")):
            rows.append(throughput(net, data, batch, threads, args.rounds))
            r = rows[-1]
            print(
                f"batch {batch:4} threads {threads}: netdsl {r['netdsl_images_per_s']:>7,} "
                f"img/s, torch {r['torch_images_per_s']:>7,} img/s, ratio {r['ratio']:.2f}",
                flush=True,
            )
    header = ["batch", "threads", "netdsl img/s", "PyTorch img/s", "ratio"]
    print(
        markdown(
            header,
            [
                [
                    r["batch"],
                    r["threads"],
                    f"{r['netdsl_images_per_s']:,}",
                    f"{r['torch_images_per_s']:,}",
                    f"{r['ratio']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    acc = accuracy(net, data, args.accuracy_batch, args.accuracy_threads, args.epochs)
    print(
        markdown(
            ["", "test accuracy", f"{args.epochs} epochs, s"],
            [
                [
                    "netdsl (onnxruntime-training)",
                    f"{100 * acc['netdsl_accuracy']:.2f} %",
                    acc["netdsl_seconds"],
                ],
                ["PyTorch", f"{100 * acc['torch_accuracy']:.2f} %", acc["torch_seconds"]],
            ],
        )
    )
    write_json(
        args.json,
        {
            "machine": machine(),
            "load_before": load_seen,
            "throughput": rows,
            "accuracy": acc,
            "data": data.describe(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
