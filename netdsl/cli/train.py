"""`netdsl train`: the command line of the training backend.

The outermost layer of training: `register(subparsers)` adds the `train` subcommand; its handler
turns the flags into the backend's typed `Config` (numbers checked by argparse: finite, in
range), loads the net, reads and fits the data (`backends/data`), runs `backends/train/loop.py`
with a progress bar on stderr, and prints where the run's files went. Heavy imports (numpy,
onnxruntime, scikit-learn) happen only when the command runs. Every mistake is a `NetError`,
printed by the CLI as `error: ...` (exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from netdsl.cli import options as o
from netdsl.source import NetError

if TYPE_CHECKING:
    from netdsl.backends.train.settings import Config

NEEDS = ("train", ("numpy", "onnx", "onnxruntime"))  # the rest is reported when imported

Parse = Callable[[str], Any]


def _shift(text: str) -> int:
    return -1 if text == "auto" else o.whole(0, 1024)(text)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of numbers"
        ) from None
    return values


# (flag, type, metavar, help) of the options that take a value; None: the run's default
OPTION_TABLE: tuple[tuple[str, Parse, str | None, str], ...] = (
    ("--epochs", o.whole(1, o.MAX_BATCH), "N", "epochs (default 20)"),
    ("--batch", o.whole(1, o.MAX_BATCH), "N", "batch size (default 32)"),
    ("--optimizer", str, "adamw|sgd", "adamw (default) or sgd with momentum"),
    (
        "--engine",
        str,
        "onnx|ort-training",
        "onnx (default): netdsl's own training step on any onnxruntime; ort-training: "
        "onnxruntime-training 1.19.2 (the ort-training extra)",
    ),
    ("--device", str, "cpu|cuda", "where the onnx engine trains (cuda needs onnxruntime-gpu)"),
    (
        "--loss-output",
        str,
        "NAME",
        "the output the loss is on, for a net of several outputs (the others are not trained on)",
    ),
    (
        "--lr",
        o.number(0, above=True),
        None,
        "peak learning rate (default: adamw 0.003, sgd 0.05)",
    ),
    (
        "--warmup",
        o.whole(0, o.MAX_BATCH),
        "STEPS",
        "raise the learning rate linearly from 0 over the first STEPS steps (default 100)",
    ),
    ("--momentum", o.number(0, 1, below=True), None, "sgd momentum, 0 to < 1 (default 0.9)"),
    (
        "--weight-decay",
        o.number(0),
        None,
        "sgd: L2 added to the gradient (default 0); adamw: decoupled (default 0.01)",
    ),
    (
        "--schedule",
        str,
        "constant|step|cosine",
        "learning-rate schedule (default cosine, reaching 0 at the last step)",
    ),
    (
        "--step-size",
        o.whole(1, o.MAX_BATCH),
        "EPOCHS",
        "step schedule: multiply by --gamma every N epochs (10)",
    ),
    (
        "--gamma",
        o.number(0, 1, above=True),
        None,
        "the step schedule's factor, > 0 and <= 1 (default 0.1)",
    ),
    (
        "--shift",
        _shift,
        "PX|auto",
        "augmentation: move training images by up to PX pixels, at most 1/8 of a side "
        "(default auto: side/14, 2 px on 28x28, for nets with convolutions only; none on a "
        "side under 8; 0: off)",
    ),
    (
        "--patience",
        o.whole(0, o.MAX_BATCH),
        "EPOCHS",
        "stop after EPOCHS epochs without a better test accuracy (default 0: never)",
    ),
    ("--mean", _floats, "M[,M,M]", "per-channel mean to subtract (default: the training set's)"),
    ("--std", _floats, "S[,S,S]", "per-channel std to divide by (default: the training set's)"),
    (
        "--seed",
        o.whole(0, o.MAX_SEED),
        None,
        "seeds the weights, data order, shifts and dropout (default 0)",
    ),
    ("--init", str, "auto|he|glorot|normal", "weight init (auto: He for ReLU nets, else Glorot)"),
    ("--threads", o.whole(0, 4096), "N", "onnxruntime intra-op threads (default 0: one per core)"),
    (
        "--checkpoint-every",
        o.whole(0, o.MAX_BATCH),
        "STEPS",
        "checkpoint every N steps as well as after each epoch (default 200; 0: epochs only)",
    ),
)


def register(subparsers: Any) -> None:
    t = subparsers.add_parser(
        "train",
        help="train a classifier (onnxruntime-training, CPU)",
        description="Train a classifier; write model.onnx, metrics.jsonl, "
        "checkpoint.npz and curves.png to --out.",
    )
    t.add_argument("target", metavar="TARGET", help=o.TARGET)
    t.add_argument("--data", default=None, metavar="SPEC", help=o.DATA)
    t.add_argument(
        "--config",
        metavar="FILE",
        help="start from a run's config.json (its settings and data); flags given override it",
    )
    t.add_argument(
        "--flip", action="store_true", default=None, help="augmentation: random horizontal flips"
    )
    t.add_argument(
        "--no-normalise",
        dest="normalise",
        action="store_false",
        default=None,
        help="feed pixels in [0, 1] as they are (default: subtract the mean, divide by the std)",
    )
    t.add_argument(
        "--download", action="store_true", help="mnist: fetch missing IDX files (sha256-checked)"
    )
    t.add_argument(
        "--mirror", type=o.url, metavar="URL", help="mnist: where --download fetches from"
    )
    t.add_argument(
        "--fit",
        choices=("auto", "strict", "resize", "pad"),
        default=None,
        help="images of another size: resize (bilinear), pad (centre in zeros) or "
        "strict (an error); auto resizes only the 8x8 digits",
    )
    for flag, kind, metavar, text in OPTION_TABLE:
        choices = metavar.split("|") if metavar and "|" in metavar and kind is str else None
        t.add_argument(
            flag, type=kind, metavar=None if choices else metavar, choices=choices, help=text
        )
    t.add_argument(
        "--out",
        metavar="DIR",
        help="the run's folder (default runs/NET, or runs/NET-2 ... if taken)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the latest runs/NET*)",
    )
    t.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from the weights of an .onnx, .npz or PyTorch .pth/.pt file, matched by "
        "name (torchvision's names are mapped for the zoo nets that are its models)",
    )
    t.add_argument(
        "--skip-mismatched",
        action="store_true",
        help="with --init-from: keep fresh weights where shapes differ (a new head)",
    )
    t.add_argument(
        "--lr-mult",
        action="append",
        metavar="PATTERN=MULT",
        help="train the tensors an fnmatch pattern matches at MULT times the learning rate, "
        "e.g. 'conv*=0.1' for a pretrained trunk (repeatable; the first match wins)",
    )
    t.add_argument(
        "--freeze",
        action="append",
        metavar="PATTERN",
        help="keep the tensors an fnmatch pattern matches fixed, e.g. 'conv1.*' (repeatable)",
    )
    o.add_set(t)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    o.add_json(t)
    t.set_defaults(func=cmd_train, needs=NEEDS)


OPTIONS = tuple(flag[2:].replace("-", "_") for flag, *_ in OPTION_TABLE)
RESUMABLE = ("epochs", "threads", "checkpoint_every", "patience")


def config_from(args: argparse.Namespace) -> Config:
    """The run's settings: the options given, then those of --config, then the defaults."""
    given: dict[str, Any] = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    for key in ("flip", "normalise", "fit", "init_from"):
        if getattr(args, key, None) is not None:
            given[key] = getattr(args, key)
    if args.freeze:
        given["freeze"] = tuple(args.freeze)
    if args.lr_mult:
        given["lr_mult"] = tuple(args.lr_mult)
    if args.skip_mismatched:
        given["skip_mismatched"] = True
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        from netdsl.backends.train.files import read_config

        base = dict(read_config(Path(args.config))["settings"])
        if "optimizer" in given and given["optimizer"] != base.get("optimizer"):
            base.pop("lr", None)  # the saved rate belongs to the saved optimizer
            base.pop("weight_decay", None)
    from netdsl.backends.train.settings import from_dict

    return from_dict({**base, **given}, f"the settings of {args.config or 'the command line'}")


def cmd_train(args: argparse.Namespace) -> int:
    from netdsl.backends.train import graph, step

    net = o.net(args.target, args.set, search=args.search_path)
    config = config_from(args)
    out = Path(args.out) if args.out else _default_out(net.name, args.resume)
    saved = out / "config.json"
    if args.resume and not config.loss_output and saved.is_file():  # the run's own choice
        from netdsl.backends.train.files import read_config

        chosen = read_config(saved)["settings"].get("loss_output")
        config = replace(config, loss_output=chosen if isinstance(chosen, str) else "")
    # each engine refuses what it cannot train (the onnx engine has a gradient for every op)
    o.check_loss_output(net, config.loss_output)
    if config.engine == "onnx":
        classes = step.check_trainable(net, config.loss_output or None)
    else:
        classes = graph.check_trainable(net)
    if args.init_from and not Path(args.init_from).is_file():
        raise NetError(f"--init-from: no such file: '{args.init_from}'")
    created = not out.exists()
    o.output_folder(out)
    try:
        return _train(args, net, classes, config, out)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _train(args: argparse.Namespace, net: Any, classes: int, config: Config, out: Path) -> int:
    from netdsl.backends.data import sources as datasets
    from netdsl.backends.train import files
    from netdsl.backends.train.loop import train
    from netdsl.backends.train.settings import saved_config

    spec = args.data
    if spec is None and getattr(args, "config", None):
        from netdsl.backends.train.files import read_config

        spec = read_config(Path(args.config)).get("data") or None
    if args.resume:
        saved = files.load_checkpoint(out, net)  # the errors come before any work
        _check_resume(args, out, saved_config(saved))
        spec = spec or saved.meta.get("data") or None
        given = {k: getattr(config, k) for k in RESUMABLE if getattr(args, k) is not None}
        config = replace(saved_config(saved), **given)
    elif (out / files.CHECKPOINT).exists():
        raise NetError(
            f"'{out}' already holds a run ({files.CHECKPOINT})",
            None,
            ["pass --resume to continue it, or choose another --out"],
        )
    spec = spec or "digits"
    shapes = {net.nodes[i].name: net.nodes[i].shape for i in net.inputs}
    data = datasets.load(
        spec,
        download=args.download,
        mirror=args.mirror,
        size=tuple(net.input_shape[1:3]),
        inputs=shapes if len(shapes) > 1 else None,
    )
    data = datasets.fit(data, net.input_shape, classes, net.name, config.fit)
    bar = Bar(sys.stderr, quiet=args.quiet)
    bar(
        "note",
        {"text": f"training {net.name} ({net.params:,} parameters) on {data.describe()} -> {out}/"},
    )
    for note in data.notes:
        bar("note", {"text": f"note: {note}"})
    history = train(net, data, config, out, resume=args.resume, report=bar, data_spec=spec)
    last = history[-1]
    if args.json:
        report = {
            "net": net.name,
            "out": str(out),
            "data": spec,
            "epochs": last["epoch"],
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "train_loss": last.get("train_loss"),
            "train_accuracy": last.get("train_accuracy"),
            "seconds": sum(r["seconds"] for r in history),
            "files": _written(out),
        }
        print(json.dumps(report, indent=2))
        return 0
    best = max(history, key=lambda r: r["test_accuracy"])
    epochs = int(last["epoch"])
    print(
        f"{net.name}: test accuracy {100 * last['test_accuracy']:.2f} %, test loss "
        f"{last['test_loss']:.4f} after {epochs} epoch{'s' if epochs != 1 else ''} "
        f"({sum(r['seconds'] for r in history):.1f} s); best {100 * best['test_accuracy']:.2f} %"
        f" at epoch {int(best['epoch'])} (best.onnx)"
    )
    print(f"wrote {out}/: {', '.join(_written(out))}")
    return 0


def _written(out: Path) -> list[str]:
    """The run's files, in the order a reader wants them."""
    names: tuple[str, ...] = ("model.onnx", "best.onnx", "config.json", "metrics.jsonl")
    names = (*names, "checkpoint.npz", "curves.png", "confusion.png", "confusion.json")
    return [n for n in names if (out / n).is_file()]


def _default_out(name: str, resume: bool) -> Path:
    """runs/NET, or runs/NET-2, -3 ... when taken; --resume picks the latest that exists."""
    candidates = [Path("runs") / name] + [Path("runs") / f"{name}-{k}" for k in range(2, 1000)]
    taken = [p for p in candidates if p.exists()]
    if resume:
        return taken[-1] if taken else candidates[0]
    free = next((p for p in candidates if not p.exists()), None)
    if free is None:
        raise NetError(
            f"runs/{name} to runs/{name}-999 are all taken", None, ["choose a folder with --out"]
        )
    return free


def _check_resume(args: argparse.Namespace, out: Path, saved: Any) -> None:
    """Resuming keeps the run's settings: options may repeat them, not change them."""
    changed = [
        f"--{k.replace('_', '-')} {getattr(args, k)} (the run has {getattr(saved, k)})"
        for k in OPTIONS
        if k not in RESUMABLE
        and getattr(args, k) is not None
        and getattr(args, k) != getattr(saved, k)
    ]
    if args.freeze and tuple(args.freeze) != saved.freeze:
        changed.append(f"--freeze {' '.join(args.freeze)}")
    if args.fit and args.fit != saved.fit:
        changed.append(f"--fit {args.fit} (the run has {saved.fit})")
    if changed:
        raise NetError(
            f"--resume continues the run in '{out}' with its own settings; "
            f"cannot change {', '.join(changed)}",
            None,
            ["only --epochs, --threads and --checkpoint-every may change"],
        )


def eta(v: dict[str, Any]) -> str:
    """The time the run's remaining steps take at this epoch's pace (evaluation aside)."""
    if not v.get("seconds") or not v["step"]:
        return "?"
    left = (v["steps"] - v["step"]) + (v["epochs"] - v["epoch"]) * v["steps"]
    seconds = round(v["seconds"] / v["step"] * left)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


class Bar:
    """A one-line progress bar per epoch on a terminal; one line per epoch otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False, width: int = 24) -> None:
        self.stream, self.quiet, self.width = stream, quiet, width
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, kind: str, v: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "note":
            self.stream.write(v["text"] + "\n")
        elif kind == "step" and self.tty and time.monotonic() - self.last > 0.1:
            self.last = time.monotonic()
            done = int(self.width * v["step"] / v["steps"])
            bar = "#" * done + "." * (self.width - done)
            self.stream.write(
                f"\repoch {v['epoch']}/{v['epochs']} [{bar}] {v['step']}/"
                f"{v['steps']}  loss {v['train_loss']:.4f}  acc "
                f"{100 * v['train_accuracy']:.2f}%  "
                f"{v['images_per_second']:,.0f} img/s  ETA {eta(v)}\033[K"
            )
            self.stream.flush()
        elif kind == "epoch":
            clear = "\r\033[K" if self.tty else ""
            self.stream.write(
                f"{clear}epoch {v['epoch']}/{v['epochs']}  loss "
                f"{v['train_loss']:.4f}  acc {100 * v['train_accuracy']:.2f}%  "
                f"test loss {v['test_loss']:.4f}  acc "
                f"{100 * v['test_accuracy']:.2f}%  "
                f"{v['images_per_second']:,.0f} img/s  {v['seconds']:.1f} s\n"
            )
            self.stream.flush()
