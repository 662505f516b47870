"""How `netdsl train`'s defaults were chosen: the MNIST textbook nets, several settings, seeds.

Beside the training backend, not in it: trains each net of `nets/mnist.net` (and LeNet-5, its
28x28 digits resized to 32x32) on the shared MNIST split (the first 8,000 t10k images train,
the last 2,000 test) with the defaults (`Config()`), the defaults of before (SGD 0.1, momentum
0.9, no warm-up, no normalisation, a 2-pixel shift), and hand-tuned alternatives, over several
seeds, and beside them a plain PyTorch loop on the same normalised data (Adam 1e-3, PyTorch's
own initialisation, batch 32, no augmentation: the recipe of the tutorials). Prints the table
of docs/training.md and writes bench/results_defaults.json.

    nice -n 10 .venv/bin/python -m bench.defaults [--epochs 2] [--seeds 0 1 2] [--nets ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"
RESULTS = ROOT / "bench" / "results_defaults.json"

# net -> (target, the reference it follows)
NETS = {
    "mnist_softmax": "softmax regression (Görner's tutorial, step 1)",
    "mnist_mlp_sigmoid": "5-layer MLP, sigmoid (Görner, step 2)",
    "mnist_mlp_dropout": "5-layer MLP, relu + dropout (Görner, step 3)",
    "mnist_conv": "3-conv net (Görner, step 4)",
    "mnist_conv_big": "bigger conv net + dropout (Görner, step 5)",
    "lenet5": "LeNet-5 (LeCun et al. 1998), 28x28 resized to 32x32",
    "mnist_vgg": "small VGG (2x16, 2x32 3x3 convs)",
    "mnist_resnet": "small ResNet (3 basic blocks, batch norm)",
}
BIG = ("mnist_vgg", "mnist_resnet")  # slow on a CPU: fewer alternatives
OLD = "old defaults (sgd 0.1)"
# Every candidate in full (warm-up in steps; normalisation measured on the training images)
SETTINGS: dict[str, dict[str, Any]] = {
    "adamw 1e-3, shift 2": {"optimizer": "adamw", "lr": 1e-3, "warmup": 100, "shift": 2},
    "adamw 1e-3": {"optimizer": "adamw", "lr": 1e-3, "warmup": 100, "shift": 0},
    "adamw 3e-3": {"optimizer": "adamw", "lr": 3e-3, "warmup": 100, "shift": 0},
    "adamw 3e-3, auto shift": {"optimizer": "adamw", "lr": 3e-3, "warmup": 100, "shift": -1},
    "sgd 0.05": {"optimizer": "sgd", "lr": 0.05, "warmup": 100, "shift": 0},
    OLD: {"optimizer": "sgd", "lr": 0.1, "warmup": 0, "normalise": False, "shift": 2},
}
BIG_SETTINGS = ("adamw 1e-3", "sgd 0.05", "adamw 3e-3", "adamw 3e-3, auto shift")
DENSE = ("mnist_softmax", "mnist_mlp_sigmoid", "mnist_mlp_dropout")  # auto shift: none
SAME = {"adamw 3e-3, auto shift": "adamw 3e-3"}  # what a setting is for a dense net


def default_label() -> str:
    """The candidate that `Config()` is (the defaults chosen from this table)."""
    from netdsl.backends.train.settings import Config

    now = Config()
    for label, values in SETTINGS.items():
        if all(getattr(now, k) == v for k, v in values.items()):
            return label
    return "?"


def target(name: str) -> str:
    return "lenet5" if name == "lenet5" else f"{ROOT / 'nets' / 'mnist.net'}:{name}"


def netdsl_run(name: str, settings: dict[str, Any], seed: int, epochs: int) -> dict[str, float]:
    import netdsl
    from netdsl.backends.data import sources
    from netdsl.backends.train.graph import check_trainable
    from netdsl.backends.train.loop import train
    from netdsl.backends.train.settings import Config

    net = netdsl.load(target(name))
    classes = check_trainable(net)
    data = sources.fit(sources.load(f"mnist:{MNIST}"), net.input_shape, classes, net.name, "resize")
    config = Config(epochs=epochs, seed=seed, threads=1, checkpoint_every=0, **settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        history = train(net, data, config, Path(out))
    return {
        "test_accuracy": history[-1]["test_accuracy"],
        "first_epoch_loss": history[0]["train_loss"],
        "seconds": time.perf_counter() - start,
    }


def torch_model(name: str) -> Any:
    """The same nets in plain PyTorch, PyTorch's default initialisation."""
    from torch import nn

    def mlp(act: type[nn.Module], p: float) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip([784, 200, 100, 60], [200, 100, 60, 30], strict=True):
            layers += [nn.Linear(a, b), act()] + ([nn.Dropout(p)] if p else [])
        return nn.Sequential(*layers, nn.Linear(30, 10))

    def same(cin: int, cout: int, k: int, s: int) -> nn.Module:  # TensorFlow's 'same'
        total = max(k - s, 0) if 28 % s == 0 else k - 1
        pad = (total // 2, total - total // 2, total // 2, total - total // 2)
        return nn.Sequential(nn.ZeroPad2d(pad), nn.Conv2d(cin, cout, k, s))

    def block(cin: int, cout: int, s: int) -> nn.Module:
        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = nn.Sequential(
                    nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                )  # fmt: skip
                self.skip = (
                    nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
                    if s != 1 or cin != cout
                    else nn.Identity()
                )

            def forward(self, x: Any) -> Any:
                return (self.body(x) + self.skip(x)).relu()

        return Block()

    r = nn.ReLU
    models = {
        "mnist_softmax": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        "mnist_mlp_sigmoid": lambda: mlp(nn.Sigmoid, 0),
        "mnist_mlp_dropout": lambda: mlp(nn.ReLU, 0.25),
        "mnist_conv": lambda: nn.Sequential(
            same(1, 4, 5, 1), r(), same(4, 8, 5, 2), r(), same(8, 12, 4, 2), r(),
            nn.Flatten(), nn.Linear(588, 200), r(), nn.Linear(200, 10),
        ),
        "mnist_conv_big": lambda: nn.Sequential(
            same(1, 6, 6, 1), r(), same(6, 12, 5, 2), r(), same(12, 24, 4, 2), r(),
            nn.Flatten(), nn.Linear(1176, 200), r(), nn.Dropout(0.25), nn.Linear(200, 10),
        ),
        "lenet5": lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
            nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
            nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
        ),
        "mnist_vgg": lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), r(), nn.Conv2d(16, 16, 3, 1, 1), r(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 1), r(), nn.Conv2d(32, 32, 3, 1, 1), r(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1568, 128), r(), nn.Linear(128, 10),
        ),
        "mnist_resnet": lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), r(),
            block(16, 16, 1), block(16, 32, 2), block(32, 64, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        ),
    }  # fmt: skip
    return models[name]()


def torch_run(name: str, seed: int, epochs: int) -> dict[str, float]:
    """A plain PyTorch loop: Adam 1e-3, batch 32, shuffled each epoch, normalised inputs."""
    import torch

    from netdsl.backends.data import sources

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    size = (32, 32) if name == "lenet5" else (28, 28)
    data = sources.fit(sources.load(f"mnist:{MNIST}"), (1, *size), 10, name, "resize")
    mean, std = float(data.x_train.mean()), float(data.x_train.std())
    x_train = torch.from_numpy((data.x_train - mean) / std)
    x_test = torch.from_numpy((data.x_test - mean) / std)
    y_train, y_test = torch.from_numpy(data.y_train), torch.from_numpy(data.y_test)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    first = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            opt.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        if epoch == 0:
            first = total / len(order)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return {
        "test_accuracy": accuracy,
        "first_epoch_loss": first,
        "seconds": time.perf_counter() - start,
    }


def table(results: dict[str, Any]) -> str:
    """docs/training.md's table: mean ± spread over the seeds, test accuracy in %."""

    def cell(runs: list[dict[str, float]]) -> str:
        acc = [100 * r["test_accuracy"] for r in runs]
        stuck = sum(r["first_epoch_loss"] > 0.95 * math.log(10) for r in runs)
        spread = f" ± {statistics.pstdev(acc):.1f}" if len(acc) > 1 else ""
        return f"{statistics.mean(acc):.1f}{spread}" + (f" ({stuck} stuck)" if stuck else "")

    default = default_label()
    rows = [
        f"| net | default ({default}) | best hand-tuned (setting) | {OLD} | PyTorch (Adam 1e-3) |",
        "|---|---|---|---|---|",
    ]
    for name, what in NETS.items():
        r = dict(results.get(name) or {})
        if name in DENSE and default in SAME and SAME[default] in r:
            r[default] = r[SAME[default]]  # the same run: the automatic shift is off for them
        if default not in r or "torch" not in r:
            continue
        tuned = {k: v for k, v in r.items() if k != "torch" and v and k != default}
        best = max(tuned, key=lambda k: statistics.mean(x["test_accuracy"] for x in tuned[k]))
        old = r.get(OLD)
        rows.append(
            f"| {name}: {what} | {cell(r[default])} | {cell(tuned[best])} ({best}) | "
            f"{cell(old) if old else '—'} | {cell(r['torch'])} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nets", nargs="+", default=list(NETS))
    parser.add_argument("--table", action="store_true", help="print the saved table only")
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS])
    parser.add_argument("--settings", nargs="+", help="run only these candidates (and no torch)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for path in args.results:  # several runs' files merge (nets run in parallel processes)
        if path.exists():
            results.update(json.loads(path.read_text()))
    store = args.results[0]
    if not args.table:
        if not MNIST.is_dir():
            print(f"no MNIST at {MNIST}", file=sys.stderr)
            return 1
        for name in args.nets:
            entry = results.setdefault(name, {})
            chosen = BIG_SETTINGS if name in BIG else tuple(SETTINGS)
            chosen = tuple(args.settings) if args.settings else chosen
            for label, values in SETTINGS.items():
                if label not in chosen or (name in DENSE and label in SAME):
                    continue
                entry[label] = [netdsl_run(name, values, s, args.epochs) for s in args.seeds]
                print(name, label, [round(r["test_accuracy"], 4) for r in entry[label]], flush=True)
            if not args.settings:
                entry["torch"] = [torch_run(name, s, args.epochs) for s in args.seeds]
                accuracies = [round(r["test_accuracy"], 4) for r in entry["torch"]]
                print(name, "torch", accuracies, flush=True)
            mine = {k: v for k, v in results.items() if k in args.nets}
            store.write_text(json.dumps(mine, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
