"""The backend commands of the `netdsl` CLI: compile, run, bench.

The outermost layer of the ONNX backend: `netdsl.cli` calls `register(subparsers)`, and each
handler takes the argparse namespace, calls `backends/onnx.py` and `backends/ort.py`, prints and
returns an exit code. onnx, onnxruntime and numpy are imported only when a command runs, so
`netdsl check` stays light. Every mistake comes out as a `NetError`, which the CLI prints as
`error: ...` with exit status 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.api import load
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

TARGET = "a .net file, FILE:NET, or a zoo net's name (see `netdsl zoo`)"
MAX_PROTO = 2**31 - 1  # protobuf cannot serialise a message this large; weights go beside it


def register(subparsers: Any) -> None:
    """Add `compile`, `run`, `bench` and `train` to the CLI's subparsers."""
    c = subparsers.add_parser("compile", help="compile a net to an ONNX model")
    c.add_argument("target", metavar="TARGET", help=TARGET)
    c.add_argument("-o", "--output", metavar="FILE", help="where to write (default NET.onnx)")
    c.add_argument("--opset", type=int, default=17, help="ONNX opset, 13 to 17 (default 17)")
    c.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="N",
        help="a fixed batch size (default: dynamic, named N)",
    )
    c.add_argument(
        "--init",
        default="auto",
        choices=("auto", "he", "glorot", "normal"),
        help="weight init: auto (He for ReLU nets, else Glorot), he, glorot, normal (N(0, 0.01))",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    _weights(c)
    c.add_argument(
        "--inference",
        action="store_true",
        help="inference form: bn uses running statistics, no dropout",
    )
    _calibration(c)
    c.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="fp16: weights and arithmetic in half precision, input and output fp32, "
        "softmax and lrn fp32 (see docs/deploy.md)",
    )
    c.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold each bn into the conv before it (implies --inference)",
    )
    _set(c)
    c.set_defaults(func=cmd_compile)

    r = subparsers.add_parser("run", help="run a net or an .onnx model with onnxruntime")
    r.add_argument("model", metavar="MODEL", help="an .onnx file, or " + TARGET)
    r.add_argument("--input", metavar="FILE", help="a .npy array or an image (default: random)")
    r.add_argument("--top", type=int, default=5, metavar="K", help="classes to show (default 5)")
    r.add_argument("--seed", type=int, default=0, help="seed of the weights and random input")
    _weights(r)
    _runtime(r)
    _set(r)
    r.set_defaults(func=cmd_run)

    b = subparsers.add_parser("bench", help="time a net or an .onnx model with onnxruntime")
    b.add_argument("model", metavar="MODEL", help="an .onnx file, or " + TARGET)
    b.add_argument(
        "--batch", default="1,8,64", metavar="B,B,...", help="batch sizes (default 1,8,64)"
    )
    b.add_argument("--repeats", type=int, default=20, help="timed runs per batch (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    b.add_argument("--json", action="store_true", help="print JSON")
    _runtime(b)
    _set(b)
    b.set_defaults(func=cmd_bench)

    from netdsl.cli import train as train_cli  # light: its heavy imports wait for the command

    train_cli.register(subparsers)

    e = subparsers.add_parser("engine", help="build a TensorRT engine (needs TensorRT and a GPU)")
    e.add_argument("model", metavar="MODEL", help="an .onnx file, or " + TARGET)
    e.add_argument("-o", "--output", metavar="FILE", help="where to write (default NET.engine)")
    e.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="the precision the compiler writes into the graph (int8: QDQ, TensorRT form)",
    )
    _calibration(e)
    e.add_argument(
        "--batch",
        default="1:8:32",
        metavar="MIN:OPT:MAX",
        help="the optimisation profile of the batch (default 1:8:32)",
    )
    e.add_argument("--workspace", default="1G", help="TensorRT's workspace (default 1G)")
    e.add_argument("--timing-cache", metavar="FILE", help="read and update a timing cache")
    e.add_argument("--seed", type=int, default=0, help="seed of fresh weights")
    _weights(e)
    _set(e)
    e.set_defaults(func=cmd_engine)

    m = subparsers.add_parser("compare", help="run two artefacts on the same input, report errors")
    m.add_argument("a", metavar="A", help="an .onnx or .engine file, or " + TARGET)
    m.add_argument("b", metavar="B", nargs="?", help="the second (default: A again)")
    m.add_argument(
        "--providers",
        default="cpu,cpu",
        metavar="P,Q",
        help="onnxruntime providers for A and B (default cpu,cpu; e.g. cpu,cuda)",
    )
    m.add_argument("--batch", type=int, default=2, help="images in the random input (default 2)")
    m.add_argument("--seed", type=int, default=0, help="seed of the input and fresh weights")
    m.add_argument("--json", action="store_true", help="print JSON")
    _set(m)
    m.set_defaults(func=cmd_compare)


def _calibration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calib",
        metavar="SPEC",
        help="int8: calibration images, a dataset spec as for train (digits, mnist:DIR, ...)",
    )
    parser.add_argument(
        "--calib-fit",
        default="auto",
        choices=("auto", "strict", "resize", "pad"),
        help="int8: bring calibration images to the net's size (as train's --fit)",
    )
    parser.add_argument(
        "--calib-images",
        type=int,
        default=256,
        metavar="N",
        help="int8: how many training images calibrate (default 256)",
    )


def _weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", metavar="FILE", help="a .npz (keyed by tensor name) or .onnx file of weights"
    )
    parser.add_argument(
        "--skip-mismatched",
        action="store_true",
        help="keep fresh weights where the file's shapes differ",
    )


def _runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: auto)")
    parser.add_argument(
        "--opt-level",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="onnxruntime graph optimisation (default all)",
    )


def _set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a net parameter, e.g. --set classes=10",
    )


def _net(target: str, pairs: list[str]) -> ShapedNet:
    from netdsl.cli import overrides  # the one `--set NAME=VALUE` parser

    return load(target, overrides=overrides(pairs))


def _is_onnx(spec: str) -> bool:
    return Path(spec).suffix.lower() == ".onnx"


def cmd_compile(args: argparse.Namespace) -> int:
    import onnx

    from netdsl.backends.onnx.emit import to_onnx

    net = _net(args.target, args.set)
    inference = args.inference or args.fold_bn or args.precision == "int8"
    model = to_onnx(
        net,
        opset=args.opset,
        batch=args.batch,
        init=args.init,
        seed=args.seed,
        weights=args.weights,
        mode="inference" if inference else "train",
        fold_bn=args.fold_bn,
        skip_mismatched=args.skip_mismatched,
    )
    if args.precision == "int8":
        model = _int8(args, net)
    elif args.precision != "fp32":
        from netdsl.backends.passes.fp16 import apply_precision

        model = apply_precision(model, args.precision)
    out = Path(args.output or f"{net.name}.onnx")
    size = model.ByteSize()
    external = size > MAX_PROTO
    try:
        onnx.save_model(
            model,
            str(out),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=f"{out.name}.data",
        )
    except OSError as error:
        raise NetError(f"cannot write '{out}': {error.strerror or error}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    batch = "dynamic batch N" if args.batch is None else f"batch {args.batch}"
    print(
        f"wrote {out}: {net.name}, {net.params:,} parameters, opset {args.opset}, {batch}, "
        f"{'inference' if inference else 'training'} form"
        f"{', batch norms folded' if args.fold_bn else ''}, {args.precision}, "
        f"init {meta['init']}, "
        f"{size / 2**20:.1f} MiB" + (f" (weights in {out.name}.data)" if external else "")
    )
    if "weights" in meta:
        print(meta["weights"])
    return 0


def _int8(args: argparse.Namespace, net: ShapedNet, target: str = "onnxruntime") -> Any:
    """The net in int8 QDQ form, batch norms folded, calibrated on `--calib` images."""
    from netdsl.backends.data import sources as data
    from netdsl.backends.onnx.emit import to_onnx
    from netdsl.backends.passes.int8 import quantize_int8

    if not args.calib:
        raise NetError(
            "--precision int8 needs --calib SPEC: real images to calibrate on",
            None,
            ["for example --calib digits, or --calib mnist:DIR"],
        )
    if len(net.input_shape) != 3:
        raise NetError(f"int8 calibration needs an image input, {net.name} takes a vector")
    classes = net.output_shape[0] if len(net.output_shape) == 1 else 2**31
    loaded = data.load(args.calib)
    images = data.fit(loaded, net.input_shape, classes, net.name, args.calib_fit).x_train
    model = to_onnx(
        net,
        opset=getattr(args, "opset", 17),
        batch=args.batch if isinstance(getattr(args, "batch", None), int) else None,
        init=getattr(args, "init", "auto"),
        seed=args.seed,
        weights=args.weights,
        mode="inference",
        fold_bn=True,
        skip_mismatched=args.skip_mismatched,
    )
    return quantize_int8(model, images[: args.calib_images], target=target)


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
                f"statistics, dropout is on); compile with --inference to run it"
            )
        return args.model, note
    from netdsl.backends.onnx.emit import to_onnx

    net = _net(args.model, args.set)
    weights = getattr(args, "weights", None)
    model = to_onnx(
        net,
        mode="inference",
        seed=getattr(args, "seed", 0),
        weights=weights,
        skip_mismatched=getattr(args, "skip_mismatched", False),
    )
    meta = {p.key: p.value for p in model.metadata_props}
    note = (
        f"note: {meta['weights']}"
        if weights
        else f"note: {net.name} has fresh random weights (init {meta['init']}); "
        f"pass --weights FILE for trained ones"
    )
    return model, note


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"provider": args.provider, "level": args.opt_level, "threads": args.threads}


def cmd_engine(args: argparse.Namespace) -> int:
    from netdsl.backends.passes.fp16 import apply_precision
    from netdsl.backends.tensorrt import engine as trt

    profile = trt.parse_profile(args.batch)
    workspace = trt.parse_size(args.workspace)
    if args.precision == "int8":
        if _is_onnx(args.model):
            raise NetError("an int8 engine is compiled from a net: pass a .net or a zoo name")
        model = _int8(args, _net(args.model, args.set), target="tensorrt")
    else:
        model, _ = _model(args)
        if isinstance(model, str):
            from netdsl.backends.runtime.ort import read_model

            model = read_model(model)
        model = apply_precision(model, args.precision)
    cache = Path(args.timing_cache) if args.timing_cache else None
    engine = trt.build_engine(model, profile, workspace=workspace, timing_cache=cache)
    out = Path(args.output or f"{model.graph.name or 'model'}.engine")
    out.write_bytes(engine)
    print(
        f"wrote {out}: {args.precision}, batch {profile.min}:{profile.opt}:{profile.max}, "
        f"{len(engine) / 2**20:.1f} MiB"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from netdsl.backends.runtime import compare, ort

    providers = args.providers.split(",")
    if len(providers) != 2:
        raise NetError(f"--providers takes two names like cpu,cuda, got '{args.providers}'")
    sides = []
    for spec in (args.a, args.b or args.a):
        if Path(spec).suffix.lower() in (".onnx", ".engine"):
            sides.append(spec)
        else:
            from netdsl.backends.onnx.emit import to_onnx

            sides.append(to_onnx(_net(spec, args.set), mode="inference", seed=args.seed))
    probe = sides[0] if not str(sides[0]).endswith(".engine") else sides[1]
    shape = ort.input_shape(ort.session(probe))
    chw = [d for d in shape[1:] if isinstance(d, int)]
    if len(chw) != len(shape) - 1:
        raise NetError("compare needs a model with a fixed C x H x W input")
    x = ort.random_input((args.batch, *chw), args.seed)
    a, names = compare.run_side(sides[0], providers[0], x)
    b, _ = compare.run_side(sides[1], providers[1], x)
    found = compare.differences(a, b, names)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "output": d.output,
                        "shape": list(d.shape),
                        "max_abs": d.max_abs,
                        "max_rel": d.max_rel,
                        "top1_agreement": d.top1_agreement,
                    }
                    for d in found
                ],
                indent=2,
            )
        )
        return 0
    print(
        f"{args.a} ({providers[0]}) vs {args.b or args.a} ({providers[1]}), "
        f"random input {args.batch}x{'x'.join(map(str, shape[1:]))} (seed {args.seed})"
    )
    for d in found:
        print("  " + d.render())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from netdsl.backends.runtime import ort

    if Path(args.model).suffix.lower() == ".engine":
        from netdsl.backends.tensorrt.engine import run_engine

        if args.input is None:
            raise NetError("running an engine needs --input (a .npy of N x C x H x W)")
        y = run_engine(args.model, np.load(args.input))
        for i, best in enumerate(ort.top_k(y, args.top)):
            print(f"image {i}: " + ", ".join(f"{c} ({s:.4f})" for c, s in best))
        return 0
    model, note = _model(args)
    sess = ort.session(model, **_options(args))
    if args.input is None:
        x = ort.random_input(ort.image_size(sess), args.seed)
        note += f"\nnote: no --input; running a random input, uniform in [0, 1) (seed {args.seed})"
    else:
        x = ort.load_input(args.input, sess)
    x = ort.check_input(sess, x, args.input or "input")
    y = ort.run(sess, x)
    if note.strip():
        print(note.strip())
    print(f"output {'x'.join(map(str, y.shape))}")
    if y.ndim != 2:
        print(f"  min {y.min():.6g}  max {y.max():.6g}  mean {y.mean():.6g}")
        return 0
    probabilities = bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))
    label = "probability" if probabilities else "score"
    for i, best in enumerate(ort.top_k(y, args.top)):
        print(f"image {i}: top {len(best)} (class, {label})")
        for rank, (cls, score) in enumerate(best, 1):
            print(f"  {rank:>2}. {cls:>6}  {score:.6f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from netdsl.backends.runtime import ort

    try:
        batches = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        raise NetError(f"--batch takes sizes like 1,8,64, got '{args.batch}'") from None
    if Path(args.model).suffix.lower() == ".engine":
        from netdsl.backends.tensorrt.engine import bench_engine

        rows = bench_engine(args.model, batches, args.repeats, args.warmup)
        print(f"{args.model} on TensorRT (end to end, copies included), median of {args.repeats}")
        for batch, ms, ips in rows:
            print(f"{batch:>6}  {ms:>11.3f}  {ips:>10.1f}")
        return 0
    model, note = _model(args)
    timings = ort.bench(model, batches, repeats=args.repeats, warmup=args.warmup, **_options(args))
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
