"""`netdsl compile` and `netdsl engine`: the command line of building artefacts.

The outermost layer of the onnx and tensorrt rooms: `register_compile` and `register_engine`
add the commands; each handler turns its flags into a typed `CompileOptions`, calls
`netdsl.backends.onnx.compile.compile_net` (which emits the model once, in the form and
precision asked for) and writes the result atomically, then prints one line. onnx and numpy
are imported only when a command runs; each command declares the extra it needs (`needs`),
which `main` checks before it starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from netdsl.cli import options as o
from netdsl.source import NetError

ONNX = ("onnx", ("numpy", "onnx"))  # the extra that brings what a command uses; its modules


def register_compile(sub: Any) -> None:
    c = sub.add_parser("compile", help="compile a net to an ONNX model")
    c.add_argument("target", metavar="TARGET", help=o.TARGET)
    c.add_argument("-o", "--output", metavar="FILE", help="where to write (default NET.onnx)")
    c.add_argument(
        "--opset", type=o.whole(13, 17), default=17, help="ONNX opset, 13 to 17 (default 17)"
    )
    c.add_argument(
        "--fixed-batch",
        type=o.whole(1, o.MAX_BATCH),
        default=None,
        metavar="N",
        help="fix the batch dimension to N (default: dynamic, named N)",
    )
    c.add_argument(  # the old spelling, before --batch meant images at once everywhere
        "--batch", dest="old_batch", type=o.whole(1, o.MAX_BATCH), help=argparse.SUPPRESS
    )
    c.add_argument(
        "--init",
        default="auto",
        choices=("auto", "he", "glorot", "normal"),
        help="weight init: auto (He for ReLU nets, else Glorot), he, glorot, normal (N(0, 0.01))",
    )
    o.add_seed(c, "seed of the weights (default 0)")
    o.add_weights(c)
    c.add_argument(
        "--training-form",
        action="store_true",
        help="training form: bn normalises with the batch's statistics, dropout on "
        "(default: inference form, running statistics, no dropout)",
    )
    c.add_argument(  # the inference form is the default; kept for old scripts
        "--inference", action="store_true", help=argparse.SUPPRESS
    )
    o.add_calibration(c)
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
        help="fold each bn into the conv before it (inference form only)",
    )
    c.add_argument(
        "--training-step",
        action="store_true",
        help="write the whole training step as one model: forward, softmax cross-entropy, "
        "backward, SGD with momentum 0.9, with the weights as its inputs' defaults "
        "(docs/training.md)",
    )
    c.add_argument(
        "--loss-output",
        metavar="NAME",
        help="with --training-step: the output the loss is on, for a net of several outputs",
    )
    o.add_input_size(c)
    o.add_json(c)
    o.add_set(c)
    c.set_defaults(func=cmd_compile, needs=ONNX)


def register_engine(sub: Any) -> None:
    from netdsl.backends.tensorrt.profile import parse_profile, parse_size

    e = sub.add_parser("engine", help="build a TensorRT engine (needs TensorRT and a GPU)")
    e.add_argument("model", metavar="MODEL", help=o.MODEL)
    e.add_argument("-o", "--output", metavar="FILE", help="where to write (default NET.engine)")
    e.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="the precision the compiler writes into the graph (int8: QDQ, TensorRT form)",
    )
    o.add_calibration(e)
    e.add_argument(
        "--batch-range",
        type=o.library_type(parse_profile, "profile"),
        default=None,
        metavar="MIN:OPT:MAX",
        help="the optimisation profile of the batch (default 1:8:32)",
    )
    e.add_argument(  # the old spelling, before --batch meant images at once everywhere
        "--batch",
        dest="old_batch",
        type=o.library_type(parse_profile, "profile"),
        help=argparse.SUPPRESS,
    )
    e.add_argument(
        "--workspace",
        type=o.library_type(parse_size, "size"),
        default=parse_size("1G"),
        help="TensorRT's workspace (default 1G)",
    )
    e.add_argument("--timing-cache", metavar="FILE", help="read and update a timing cache")
    o.add_seed(e, "seed of fresh weights")
    o.add_weights(e)
    o.add_set(e)
    e.set_defaults(func=cmd_engine, needs=ONNX)


def _is_onnx(spec: str) -> bool:
    return Path(spec).suffix.lower() == ".onnx"


def compile_options(args: argparse.Namespace, **fixed: Any) -> Any:
    """The `CompileOptions` that the flags of `compile` (or `engine`) say; `fixed` overrides."""
    from netdsl.backends.onnx.compile import Calibration, CompileOptions

    calibration = None
    if args.precision == "int8":
        if not args.calib:
            raise NetError(
                "--precision int8 needs --calib SPEC: real images to calibrate on",
                None,
                ["for example --calib digits, or --calib mnist:DIR"],
            )
        calibration = Calibration(args.calib, args.calib_fit, args.calib_images)
    training = getattr(args, "training_form", False)
    if training and getattr(args, "fold_bn", False):
        raise NetError("batch norms fold only in the inference form; drop --training-form")
    values: dict[str, Any] = {
        "opset": getattr(args, "opset", 17),
        "batch": getattr(args, "fixed_batch", None),
        "init": getattr(args, "init", "auto"),
        "seed": args.seed,
        "weights": args.weights,
        "skip_mismatched": args.skip_mismatched,
        "mode": "train" if training else "inference",
        "fold_bn": getattr(args, "fold_bn", False),
        "precision": args.precision,
        "calibration": calibration,
    }
    values.update(fixed)
    return CompileOptions(**values)


def cmd_compile(args: argparse.Namespace) -> int:
    from netdsl.backends.onnx.compile import compile_net, save_model

    if args.old_batch is not None:
        o.deprecated("compile --batch N", "--fixed-batch N")
        args.fixed_batch = args.fixed_batch or args.old_batch
    net = o.net(args.target, args.set, args.input_size, search=args.search_path)
    out = o.output_file(args.output or f"{net.name}.onnx")
    if args.loss_output and not args.training_step:
        raise NetError("--loss-output chooses the loss of --training-step; add --training-step")
    if args.training_step:  # the compiler's own training step (backends/train/step.py)
        from netdsl.backends.train.step import write_training_step

        o.check_loss_output(net, args.loss_output)
        step = write_training_step(
            net,
            out,
            init=args.init,
            seed=args.seed,
            weights=args.weights,
            skip_mismatched=args.skip_mismatched,
            loss_output=args.loss_output,
        )
        print(
            f"wrote {out}: {net.name} training step, {len(step.trainable)} trained tensors, "
            f"{len(step.model.graph.node):,} nodes, SGD with momentum 0.9"
        )
        return 0
    opts = compile_options(args)
    model = compile_net(net, opts)
    replaced = out.exists()
    size = save_model(model, out)
    if replaced:
        print(f"note: replaced the existing {out}", file=sys.stderr)
    meta = {p.key: p.value for p in model.metadata_props}
    mode, _ = opts.form
    form = "inference" if mode == "inference" else "training"
    if args.json:
        report = {
            "output": str(out),
            "net": net.name,
            "input": list(net.input_shape),
            "params": net.params,
            "opset": opts.opset,
            "batch": opts.batch,
            "form": form,
            "fold_bn": opts.fold_bn,
            "precision": opts.precision,
            "init": meta["init"],
            "bytes": size,
            "replaced": replaced,
            "weights": meta.get("weights"),
        }
        print(json.dumps(report, indent=2))
        return 0
    batch = "dynamic batch N" if opts.batch is None else f"batch {opts.batch}"
    external = f" (weights in {out.name}.data)" if size > 2**31 - 1 else ""
    print(
        f"wrote {out}: {net.name}, {net.params:,} parameters, opset {opts.opset}, {batch}, "
        f"{form} form{', batch norms folded' if opts.fold_bn else ''}, {opts.precision}, "
        f"init {meta['init']}, {size / 2**20:.1f} MiB{external}"
    )
    if "weights" in meta:
        print(meta["weights"])
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    from netdsl.backends.data import atomic
    from netdsl.backends.onnx.compile import compile_net
    from netdsl.backends.onnx.emit import layer_spans
    from netdsl.backends.passes.fp16 import apply_precision
    from netdsl.backends.runtime.ort import read_model
    from netdsl.backends.tensorrt import engine as trt
    from netdsl.backends.tensorrt.profile import parse_profile

    if args.old_batch is not None:
        o.deprecated("engine --batch MIN:OPT:MAX", "--batch-range MIN:OPT:MAX")
    profile = args.batch_range or args.old_batch or parse_profile("1:8:32")
    spans = None
    out_name = args.output
    if args.precision == "int8" or not _is_onnx(args.model):
        if args.precision == "int8" and _is_onnx(args.model):
            raise NetError("an int8 engine is compiled from a net: pass a .net or a zoo name")
        net = o.net(args.model, args.set, search=args.search_path)
        fixed = {"int8_target": "tensorrt", "mode": "inference", "batch": None}
        model = compile_net(net, compile_options(args, **fixed))
        spans = layer_spans(net)  # so TensorRT's problems point at the .net text
    else:
        model = read_model(args.model, data=True)  # TensorRT's parser is handed bytes
        mode = {p.key: p.value for p in model.metadata_props}.get("mode", "")
        if mode.startswith("train"):
            raise NetError(
                f"{args.model} is in training form (batch norms use batch statistics, "
                "dropout is on); TensorRT builds inference engines",
                None,
                ["compile it without --training-form"],
            )
        model = apply_precision(model, args.precision)
    out = o.output_file(out_name or f"{model.graph.name or 'model'}.engine")
    cache = Path(args.timing_cache) if args.timing_cache else None
    if cache is not None and cache.is_dir():
        raise NetError(f"--timing-cache '{cache}' is a folder, not a file")
    engine = trt.build_engine(
        model, profile, workspace=args.workspace, timing_cache=cache, spans=spans
    )
    atomic.write(out, engine)
    print(
        f"wrote {out}: {args.precision}, batch {profile.min}:{profile.opt}:{profile.max}, "
        f"{len(engine) / 2**20:.1f} MiB"
    )
    return 0
