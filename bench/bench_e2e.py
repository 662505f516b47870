"""A whole training epoch: `netdsl train`'s loop against a plain PyTorch loop doing the same
work, on the CPU, side by side in one run.

What an epoch is, for both: a fresh permutation of the training set, each batch gathered from it
and moved by random shifts of up to 2 pixels (netdsl's default augmentation; the PyTorch loop
calls the same numpy function, so the pipelines cost the same), the step (SGD with momentum 0.9,
the cosine learning rate set per step), a checkpoint every 200 steps (netdsl's default), then
the evaluation of the test split in batches of 500, a checkpoint (PyTorch: model and optimizer
state with torch.save, written to a temporary file and renamed) and a line of metrics. netdsl
also exports model.onnx after each epoch (its inference form, checked): work PyTorch's loop does
not do, counted against netdsl. netdsl runs through `netdsl.backends.train.loop.train`, the
function `netdsl train` calls, with the default engine and settings but for the batch, threads
and epochs.

Each run trains two epochs from the same initial weights; the figure is the second epoch's
wall time (from the end of the first epoch's checkpoint to the end of the second's), so neither
side's one-off setup counts (netdsl: emitting the training step and creating the session,
reported apart as "setup"). Runs alternate netdsl, PyTorch, netdsl, ... `--repeats` times each;
the median is kept. Nets and data as bench/bench_train.py: lenet5 on 8,000 MNIST images (2,000
test), resnet18_cifar on random 3x32x32 images (--resnet-train of them, a fifth as many test).

    nice -n 10 .venv/bin/python -m bench.bench_e2e [--nets lenet5,resnet18_cifar]
        [--batch 32,128,256] [--threads 1,2] [--repeats 2] [--resnet-train 256] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import netdsl
from bench import peers
from bench.bench_train import load, twin
from bench.common import machine, markdown, wait_quiet, write_json
from netdsl.backends.data import sources as datasets
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.loop import initial_params, shifted, train
from netdsl.backends.train.settings import Config

EPOCHS = 2


def netdsl_run(net: netdsl.ShapedNet, data: datasets.Dataset, config: Config) -> dict[str, float]:
    """Seconds of the whole call, until the first step is done (setup and one step),
    and of the second epoch."""
    marks: dict[str, float] = {}

    def report(kind: str, values: dict[str, Any]) -> None:
        now = time.perf_counter()
        if kind == "step" and "first_step" not in marks:
            marks["first_step"] = now
        elif kind == "epoch":
            marks[f"epoch{values['epoch']}"] = now

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as out:
        start = time.perf_counter()
        train(net, data, config, Path(out) / "run", report=report)
        total = time.perf_counter() - start
    return {
        "total": total,
        "first_step": marks["first_step"] - start,
        "epoch": marks[f"epoch{EPOCHS}"] - marks[f"epoch{EPOCHS - 1}"],
    }


def torch_run(
    name: str, data: datasets.Dataset, config: Config, params: dict[str, np.ndarray]
) -> dict[str, float]:
    """The plain PyTorch loop: the same batches, shifts, schedule, evaluation and checkpoints."""
    start = time.perf_counter()
    model = twin(name)
    peers.from_netdsl(model, params)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, c = len(data.x_train), config
    steps = math.ceil(n / c.batch)
    schedule = sgd.Schedule(c.schedule, c.lr, c.epochs, steps, c.step_size, c.gamma)
    marks, global_step = [], 0
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as out:
        folder = Path(out)

        def checkpoint(epoch: int, step: int) -> None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save({**state, "epoch": epoch, "step": step}, folder / "checkpoint.tmp")
            os.replace(folder / "checkpoint.tmp", folder / "checkpoint.pt")

        for epoch in range(c.epochs):
            order = np.random.default_rng([c.seed, epoch]).permutation(n)
            model.train()
            seen, loss_sum, correct = 0, 0.0, 0
            for step in range(steps):
                index = order[step * c.batch : (step + 1) * c.batch]
                x, y = data.x_train[index], data.y_train[index]
                if c.shift:
                    x = shifted(x, c.shift, np.random.default_rng([c.seed, epoch, step, 2]))
                for group in optimizer.param_groups:
                    group["lr"] = schedule.at(epoch, step)
                optimizer.zero_grad(set_to_none=True)
                logits = model(torch.from_numpy(x))
                target = torch.from_numpy(y)
                loss = loss_fn(logits, target)
                loss.backward()
                optimizer.step()
                seen += len(index)
                loss_sum += loss.item() * len(index)
                correct += int((logits.argmax(1) == target).sum())
                global_step += 1
                if c.checkpoint_every and global_step % c.checkpoint_every == 0:
                    checkpoint(epoch, step + 1)
            model.eval()
            test_loss, test_correct = 0.0, 0
            with torch.no_grad():
                for i in range(0, len(data.x_test), c.eval_batch):
                    x_t = torch.from_numpy(data.x_test[i : i + c.eval_batch])
                    y_t = torch.from_numpy(data.y_test[i : i + c.eval_batch])
                    out_t = model(x_t)
                    test_loss += float(loss_fn(out_t, y_t)) * len(y_t)
                    test_correct += int((out_t.argmax(1) == y_t).sum())
            checkpoint(epoch + 1, 0)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / seen,
                      "test_accuracy": test_correct / len(data.y_test)}  # fmt: skip
            with open(folder / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            marks.append(time.perf_counter())
    return {"total": time.perf_counter() - start, "epoch": marks[-1] - marks[-2]}


def point(
    name: str, net: netdsl.ShapedNet, data: datasets.Dataset, batch: int, threads: int,
    repeats: int,
) -> dict[str, Any]:  # fmt: skip
    torch.set_num_threads(threads)
    config = Config(epochs=EPOCHS, batch=batch, threads=threads)
    params = initial_params(net, config, lambda kind, values: None)
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    for _ in range(repeats):
        ours.append(netdsl_run(net, data, config))
        theirs.append(torch_run(name, data, config, params))
    epoch = statistics.median(r["epoch"] for r in ours)
    torch_epoch = statistics.median(r["epoch"] for r in theirs)
    return {
        "net": name,
        "batch": batch,
        "threads": threads,
        "netdsl_epoch_s": round(epoch, 3),
        "torch_epoch_s": round(torch_epoch, 3),
        "ratio": round(torch_epoch / epoch, 3),  # > 1: netdsl is faster
        "netdsl_first_step_s": round(statistics.median(r["first_step"] for r in ours), 3),
        "netdsl_total_s": round(statistics.median(r["total"] for r in ours), 3),
        "torch_total_s": round(statistics.median(r["total"] for r in theirs), 3),
        "runs": repeats,
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = [
        "net", "batch", "threads", "netdsl epoch", "PyTorch epoch", "netdsl speed / PyTorch",
        "netdsl until first step", "both epochs: netdsl / PyTorch",
    ]  # fmt: skip
    body = []
    for r in rows:
        totals = f"{r['netdsl_total_s']:.1f} s / {r['torch_total_s']:.1f} s"
        body.append([
            r["net"], r["batch"], r["threads"], f"{r['netdsl_epoch_s']:.2f} s",
            f"{r['torch_epoch_s']:.2f} s", f"{r['ratio']:.2f}x",
            f"{r['netdsl_first_step_s']:.2f} s", totals,
        ])  # fmt: skip
    return markdown(header, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nets", default="lenet5,resnet18_cifar")
    parser.add_argument("--batch", default="32,128,256", help="batch sizes")
    parser.add_argument("--threads", default="1,2", help="thread counts")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--resnet-train", type=int, default=256, help="resnet18_cifar images")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for a quiet CPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    load_seen = wait_quiet(args.wait)
    rows = []
    for name in args.nets.split(","):
        net, data = load(name, 8000 if name == "lenet5" else args.resnet_train)
        print(f"{name} on {data.describe()}", flush=True)
        for threads in (int(t) for t in args.threads.split(",")):
            for batch in (int(b) for b in args.batch.split(",")):
                rows.append(point(name, net, data, batch, threads, args.repeats))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
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
