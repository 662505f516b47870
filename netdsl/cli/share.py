"""`netdsl draw` and `netdsl export triton`, and the summary of an `.onnx` file: the command line
of seeing and sharing a net.

The outermost layer over `netdsl.draw` (diagrams), `netdsl.table` and
`netdsl.backends.runtime.inspect` (the summary of any ONNX file) and `netdsl.backends.export`
(Triton model repositories): `register` adds the commands, each handler turns its flags into the
library's arguments, prints one line and returns an exit code. onnx is imported only by export
and the ONNX summary; drawing needs nothing but Graphviz for SVG and PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.cli import options as o
from netdsl.source import NetError

ONNX = ("onnx", ("numpy", "onnx"))


def register(sub: Any) -> None:
    """Add `draw` and `export` to the CLI's subparsers."""
    d = sub.add_parser("draw", help="draw a net: .svg or .png (Graphviz), .dot or .mmd (Mermaid)")
    d.add_argument("target", metavar="TARGET", help=o.TARGET)
    d.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="FILE.svg, .png (both need Graphviz), .dot or .mmd (default NET.svg)",
    )
    d.add_argument(
        "--depth",
        type=o.whole(1),
        default=None,
        metavar="N",
        help="one box per block of the first N name parts, as in summary --depth",
    )
    o.add_set(d)
    o.add_json(d)
    d.set_defaults(func=cmd_draw)

    e = sub.add_parser("export", help="export a net or an .onnx model for serving")
    kinds = e.add_subparsers(dest="server", required=True, metavar="SERVER")
    t = kinds.add_parser(
        "triton",
        help="a Triton Inference Server model repository: REPO/NAME/config.pbtxt, "
        "REPO/NAME/1/model.onnx (or model.plan)",
    )
    t.add_argument("model", metavar="MODEL", help=o.MODEL)
    t.add_argument("-o", "--output", required=True, metavar="REPO", help="the repository folder")
    t.add_argument("--name", help="the model's name in the repository (default: the net's)")
    t.add_argument(
        "--format",
        choices=("onnx", "plan"),
        default="onnx",
        help="onnx (onnxruntime backend) or plan (a TensorRT engine: needs TensorRT and a GPU)",
    )
    t.add_argument(
        "--max-batch",
        type=o.whole(0, 2**31 - 1),
        default=8,
        metavar="N",
        help="the largest batch Triton forms from requests (default 8; 0: no batching)",
    )
    t.add_argument(
        "--preferred",
        type=o.batches,
        default=None,
        metavar="B,B,...",
        help="batch sizes dynamic batching waits for (default: powers of two up to --max-batch)",
    )
    t.add_argument(
        "--queue-delay-us",
        type=o.whole(0, 10**9),
        default=100,
        metavar="US",
        help="how long a request may wait to be batched, in microseconds (default 100)",
    )
    t.add_argument(
        "--instances",
        type=o.whole(1, 1024),
        default=1,
        metavar="N",
        help="copies of the model Triton runs (default 1)",
    )
    t.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="where they run")
    t.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="for a net: the compiled model's precision (inputs and outputs stay fp32)",
    )
    o.add_seed(t, "seed of fresh weights (default 0)")
    o.add_weights(t)
    o.add_set(t)
    t.add_argument(
        "--force", action="store_true", help="replace the model's folder if it already exists"
    )
    o.add_json(t)
    t.set_defaults(func=cmd_export_triton, needs=ONNX)


def cmd_draw(args: argparse.Namespace) -> int:
    from netdsl import draw

    net = o.net(args.target, args.set, search=args.search_path)
    out = o.output_file(args.output or f"{net.name}.svg")
    draw.draw(net, out, args.depth)
    boxes = len(draw.layout(net, args.depth).boxes)
    depth = f"depth {args.depth}" if args.depth else "every layer"
    if args.json:
        print(json.dumps({"output": str(out), "net": net.name, "boxes": boxes}))
        return 0
    print(f"wrote {out}: {net.name}, {boxes} boxes ({depth})")
    return 0


def cmd_export_triton(args: argparse.Namespace) -> int:
    from netdsl.backends.export.triton import Serving, write_repository

    if Path(args.model).suffix.lower() == ".onnx":
        from netdsl.backends.passes.fp16 import apply_precision
        from netdsl.backends.runtime.ort import read_model

        model = apply_precision(read_model(args.model, data=True), args.precision)
        source = args.model
    else:
        from netdsl.backends.onnx.compile import CompileOptions, compile_net

        net = o.net(args.model, args.set, search=args.search_path)
        options = CompileOptions(
            mode="inference",
            seed=args.seed,
            weights=args.weights,
            skip_mismatched=args.skip_mismatched,
            precision=args.precision,
        )
        model = compile_net(net, options)
        source = f"{net.name}, inference form, {args.precision}"
    serving = Serving(
        args.max_batch,
        tuple(args.preferred) if args.preferred else None,
        args.queue_delay_us,
        args.instances,
        args.kind,
    )
    name = args.name or model.graph.name or Path(args.model).stem
    if (Path(args.output) / name).exists() and not args.force:
        raise NetError(
            f"'{Path(args.output) / name}' already exists",
            None,
            ["pass --force to replace it, or --name to write another model"],
        )
    folder = write_repository(
        model, args.output, name=name, fmt=args.format, serving=serving, replace=args.force
    )
    batching = (
        f"max batch {serving.max_batch}, preferred {list(serving.preferred_sizes())}"
        if serving.max_batch
        else "no batching"
    )
    if args.json:
        report = {"output": str(folder), "format": args.format, "source": source}
        print(json.dumps({**report, "max_batch": serving.max_batch}))
        return 0
    print(
        f"wrote {folder}/ (config.pbtxt, 1/model.{args.format}): {source}; {batching}; "
        f"{serving.instances} {serving.kind.upper()} instance(s)"
    )
    return 0


def cmd_summary_onnx(args: argparse.Namespace) -> int:
    """`netdsl summary FILE.onnx`: the table of any ONNX model (shapes, parameters, MACs)."""
    from netdsl.backends.runtime.inspect import summarise_onnx

    if getattr(args, "depth", None):
        raise NetError("--depth groups a net's layers by name; an ONNX file is summarised per node")
    table = summarise_onnx(args.target)
    if getattr(args, "json", False):
        print(json.dumps(table.to_dict(), indent=2))
    else:
        print(table)
    return 0
