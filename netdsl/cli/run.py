"""`netdsl run` and `bench`: the command line of running artefacts.

The outermost layer of the runtime room (`compare.py` has `netdsl compare`): `register_run`
adds the commands; each handler takes an `.onnx` file, an `.engine` file or a net (compiled
for inference through `compile_net`), calls `netdsl.backends.runtime` (ort sessions, timing)
or `tensorrt.engine`, prints and returns an exit code. onnx, onnxruntime and numpy are imported
only when a command runs; each command declares the extra it needs (`needs`), which `main` checks
before it starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.cli import feeds
from netdsl.cli import options as o
from netdsl.source import NetError

RUN = ("run", ("numpy", "onnx", "onnxruntime"))  # the extra that brings them all; the modules


def register_run(sub: Any) -> None:
    """Add `run` and `bench` to the CLI's subparsers."""
    r = sub.add_parser("run", help="run a net or an .onnx model with onnxruntime")
    r.add_argument("model", metavar="MODEL", help=o.MODEL)
    r.add_argument(
        "--input",
        action="append",
        metavar="FILE",
        help="a .npy array or an image (default: random); for a net with several inputs, "
        "NAME=FILE (a .npy) once per input",
    )
    r.add_argument(
        "--top", type=o.whole(1), default=5, metavar="K", help="classes to show (default 5)"
    )
    o.add_seed(r, "seed of the weights and random input")
    o.add_json(r)
    o.add_weights(r)
    o.add_runtime(r)
    o.add_set(r)
    r.set_defaults(func=cmd_run, needs=RUN)

    b = sub.add_parser("bench", help="time a net or an .onnx model with onnxruntime")
    b.add_argument("model", metavar="MODEL", help=o.MODEL)
    sizes = b.add_mutually_exclusive_group()
    sizes.add_argument(
        "--batches",
        type=o.batches,
        default=None,
        metavar="B,B,...",
        help="the batch sizes to time (default 1,8,64)",
    )
    sizes.add_argument(
        "--batch",
        type=o.batches,
        default=None,
        metavar="B",
        help="time one batch size (a list here is the old spelling of --batches)",
    )
    b.add_argument(
        "--repeats",
        type=o.whole(1, 1_000_000),
        default=20,
        help="timed runs per batch (default 20)",
    )
    b.add_argument(
        "--warmup", type=o.whole(0, 1_000_000), default=3, help="untimed runs first (default 3)"
    )
    b.add_argument(
        "--input",
        action="append",
        metavar="NAME=FILE",
        help="samples to time on (a .npy, repeated to fill each batch) for the input NAME, once "
        "per input; the others random",
    )
    o.add_json(b)
    o.add_runtime(b)
    o.add_set(b)
    b.set_defaults(func=cmd_bench, needs=RUN)


def _is_onnx(spec: str) -> bool:
    return Path(spec).suffix.lower() == ".onnx"


def _is_engine(spec: str) -> bool:
    return Path(spec).suffix.lower() == ".engine"


def _model(args: argparse.Namespace) -> tuple[Any, str]:
    """An .onnx path, or the net compiled for inference; and a note on where weights came from."""
    if _is_onnx(args.model):
        from netdsl.backends.runtime.ort import read_model

        model = read_model(args.model)
        modes = {p.key: p.value for p in model.metadata_props}.get("mode", "")
        note = ""
        if modes.startswith("train"):
            note = (
                f"note: {args.model} is in training form (batch norms use batch "
                f"statistics, dropout is on); compile it without --training-form to run it"
            )
        return args.model, note
    from netdsl.backends.onnx.compile import CompileOptions, compile_net

    net = o.net(args.model, args.set, search=args.search_path)
    weights = getattr(args, "weights", None)
    model = compile_net(
        net,
        CompileOptions(
            mode="inference",
            seed=getattr(args, "seed", 0),
            weights=weights,
            skip_mismatched=getattr(args, "skip_mismatched", False),
        ),
    )
    meta = {p.key: p.value for p in model.metadata_props}
    note = (
        f"note: {meta['weights']}"
        if weights
        else f"note: {net.name} has fresh random weights (init {meta['init']}); "
        f"pass --weights FILE for trained ones"
    )
    return model, note


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    return {"provider": args.provider, "level": args.opt_level, "threads": args.threads}


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from netdsl.backends.runtime import ort

    given: list[str] = args.input or []
    if len(given) > 1 and not all("=" in g for g in given):
        raise NetError("--input is given more than once: give NAME=FILE for each input")
    args.input = given[0] if len(given) == 1 and "=" not in given[0] else None
    if _is_engine(args.model):
        from netdsl.backends.tensorrt.engine import run_engine

        if args.input is None:
            raise NetError("running an engine needs --input (a .npy of N x C x H x W)")
        x = ort.load_input(args.input, None) if args.input.endswith(".npy") else None
        if x is None:
            raise NetError("running an engine needs a .npy input of N x C x H x W")
        y = run_engine(args.model, x)
        if args.json:
            print(json.dumps(_run_report(args, y, "", False), indent=2))
            return 0
        for i, best in enumerate(ort.top_k(y, args.top)):
            print(f"image {i}: " + ", ".join(f"{c} ({s:.4f})" for c, s in best))
        return 0
    model, note = _model(args)
    sess = ort.session(model, **_runtime(args))
    if args.input is None and feeds.wants_feeds(sess, given):
        args.input = given
        return feeds.run_feeds(args, model, sess, note)
    if args.input is None:
        x = ort.random_input(ort.image_size(sess), args.seed)
        note += f"\nnote: no --input; running a random input, uniform in [0, 1) (seed {args.seed})"
    else:
        x = ort.load_input(args.input, sess)
    x = ort.check_input(sess, x, args.input or "input")
    y = ort.run(sess, x)
    probabilities = bool(
        y.ndim == 2 and np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0, atol=1e-3)
    )
    if args.json:
        print(json.dumps(_run_report(args, y, note.strip(), probabilities), indent=2))
        return 0
    if note.strip():
        print(note.strip())
    print(f"output {'x'.join(map(str, y.shape))}")
    if y.ndim != 2:
        print(f"  min {y.min():.6g}  max {y.max():.6g}  mean {y.mean():.6g}")
        return 0
    label = "probability" if probabilities else "score"
    names = _class_names(model)  # those the training data had, recorded in the model
    for i, best in enumerate(ort.top_k(y, args.top)):
        print(f"image {i}: top {len(best)} (class, {label})")
        for rank, (cls, score) in enumerate(best, 1):
            name = f" {names[cls]}" if cls < len(names) else ""
            print(f"  {rank:>2}. {cls:>6}{name}  {score:.6f}")
    return 0


def _class_names(model: Any) -> list[str]:
    """The class names a trained model records (`netdsl train` writes them), or []."""
    from netdsl.backends.runtime.ort import read_model
    from netdsl.backends.train.preprocess import read_metadata

    proto = read_model(model) if isinstance(model, (str, Path)) else model
    names = read_metadata({p.key: p.value for p in proto.metadata_props}).get("classes", [])
    return [str(n) for n in names] if isinstance(names, list) else []


def _run_report(args: argparse.Namespace, y: Any, note: str, probabilities: bool) -> dict[str, Any]:
    """`run --json`: the output's shape; per image the top classes, or the output's range."""
    from netdsl.backends.runtime import ort

    report: dict[str, Any] = {
        "model": args.model,
        "output": list(y.shape),
        "notes": [line for line in note.splitlines() if line],
    }
    if y.ndim == 2:
        report["probabilities"] = probabilities
        report["images"] = [
            [{"class": c, "score": s} for c, s in best] for best in ort.top_k(y, args.top)
        ]
    else:
        report["range"] = {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean())}
    return report


def cmd_bench(args: argparse.Namespace) -> int:
    from netdsl.backends.runtime import compare, ort

    if args.batch is not None and len(args.batch) > 1:
        o.deprecated("bench --batch B,B,...", "--batches B,B,...")
    batches: list[int] = args.batches or args.batch or [1, 8, 64]
    if _is_engine(args.model):
        from netdsl.backends.tensorrt.engine import bench_engine

        rows = bench_engine(args.model, batches, args.repeats, args.warmup)
        if args.json:
            results = [{"batch": b, "median_ms": ms, "images_per_s": ips} for b, ms, ips in rows]
            print(json.dumps({"model": args.model, "provider": "tensorrt", "results": results}))
            return 0
        print(f"{args.model} on TensorRT (end to end, copies included), median of {args.repeats}")
        for batch, ms, ips in rows:
            print(f"{batch:>6}  {ms:>11.3f}  {ips:>10.1f}")
        return 0
    model, note = _model(args)
    compare.check_inputs_fit(model, batches)
    given = None
    if args.input:  # checked against the model's inputs as `run` checks them
        sess = ort.session(model)
        first = sess.get_inputs()[0].name  # `--input FILE` without a name feeds it
        named = [g if "=" in g else f"{first}={g}" for g in args.input]
        arrays, _ = feeds.feeds(sess, named, 0)
        given = {name: arrays[name] for name in (g.partition("=")[0] for g in named)}
    timings = ort.bench(
        model, batches, repeats=args.repeats, warmup=args.warmup, given=given, **_runtime(args)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "provider": args.provider,
                    "threads": args.threads,
                    "opt_level": args.opt_level,
                    "results": [t.as_dict() for t in timings],
                },
                indent=2,
            )
        )
        return 0
    if note:
        print(note)
    print(f"{args.model} on {args.provider}, median of {args.repeats} runs")
    print(f"{'batch':>6}  {'latency ms':>11}  {'images/s':>10}")
    for t in timings:
        print(f"{t.batch:>6}  {t.median_ms:>11.3f}  {t.images_per_s:>10.1f}")
    return 0
