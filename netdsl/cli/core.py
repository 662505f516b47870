"""`netdsl check`, `summary` and `zoo`: the commands of the core install (lark only).

The command line's light half: each handler loads nets through `netdsl.api`, prints the line,
table or JSON of `netdsl.summary`, and returns an exit code. Nothing here imports onnx,
onnxruntime or numpy, except `check --target tensorrt`, which needs the onnx extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netdsl.api import load_all
from netdsl.cli import options
from netdsl.shapes import ShapedNet
from netdsl.source import Diagnostic, NetError
from netdsl.summary import check_line, table, to_json
from netdsl.zoo import entries


def register(sub: Any) -> None:
    check = sub.add_parser("check", help="check shapes; one line per net")
    check.add_argument("targets", nargs="+", metavar="TARGET", help=options.TARGET)
    options.add_set(check)
    check.add_argument(
        "--target",
        choices=("onnx", "tensorrt"),
        default="onnx",
        help="also check the compiled graph against TensorRT's ONNX parser "
        "(needs the onnx extra, not TensorRT)",
    )
    options.add_input_size(check)
    options.add_json(check)
    check.set_defaults(func=cmd_check)

    summary = sub.add_parser("summary", help="the per-layer table papers print")
    summary.add_argument(
        "target", metavar="TARGET", help=options.TARGET + ", or an .onnx file (any model)"
    )
    summary.add_argument(
        "--depth",
        type=options.whole(1),
        default=None,
        metavar="N",
        help="collapse rows into blocks of the first N name parts",
    )
    options.add_json(summary)
    options.add_input_size(summary)
    options.add_set(summary)
    summary.set_defaults(func=cmd_summary)

    zoo = sub.add_parser("zoo", help="list the nets that ship with netdsl")
    options.add_json(zoo)
    zoo.set_defaults(func=cmd_zoo)


def notes(net: ShapedNet) -> list[Diagnostic]:
    """The warnings of a net, and notes on what it left implicit."""
    found = list(net.warnings)
    for node in net.nodes:
        if node.note.startswith("flattens"):
            found.append(
                Diagnostic(
                    f"{node.name} {node.note} (write `flatten` to say so)",
                    node.span,
                    severity="note",
                )
            )
    if net.defaults_used:
        found.append(
            Diagnostic(
                f"{net.name} used the built-in defaults {', '.join(net.defaults_used)}",
                None,
                ("choose widths with a line like `defaults conv.c=32, fc.n=10`",),
                "note",
            )
        )
    return found


def cmd_check(args: argparse.Namespace) -> int:
    if args.target == "tensorrt":
        options.require("onnx", ("numpy", "onnx"), "netdsl check --target tensorrt")
    failed = False
    report: dict[str, list[dict[str, Any]]] = {"nets": [], "errors": []}
    quiet = args.json  # JSON alone on stdout; the same facts in it
    for target in args.targets:
        try:
            nets = load_all(
                target,
                overrides=options.overrides(args.set),
                input_shape=args.input_size,
                search_path=args.search_path,
            )
        except NetError as error:
            report["errors"].append({"target": target, "message": error.render()})
            if not quiet:
                print(error.render(), file=sys.stderr)
            failed = True
            continue
        problems: list[Diagnostic] = []
        if args.target == "tensorrt":
            from netdsl.backends.tensorrt.support import SOURCE, check_nets

            problems = check_nets(nets)
            failed |= bool(problems)
        for net in nets:
            report["nets"].append(_checked(target, net))
            if not quiet:
                print(check_line(net))
                for diagnostic in notes(net):
                    print(diagnostic.render(), file=sys.stderr)
        if problems:
            message = "\n".join(p.render() for p in problems)
            report["errors"].append({"target": target, "message": message})
            if not quiet:
                print(message, file=sys.stderr)
        elif args.target == "tensorrt" and not quiet:
            print(f"tensorrt: every op, attribute and type fits; table: {SOURCE}")
    if quiet:
        print(json.dumps(report, indent=2))
    return 1 if failed else 0


def _checked(target: str, net: ShapedNet) -> dict[str, Any]:
    return {
        "target": target,
        "net": net.name,
        "input": list(net.input_shape),
        "output": list(net.output_shape),
        "params": net.params,
        "macs": net.macs,
        "notes": [d.render() for d in notes(net)],
    }


def cmd_summary(args: argparse.Namespace) -> int:
    if args.target.lower().endswith(".onnx"):  # any ONNX model, summarised per node
        from netdsl.cli.share import cmd_summary_onnx

        options.require("onnx", ("numpy", "onnx"), "netdsl summary of an .onnx file")
        if args.input_size is not None:
            raise NetError("an .onnx model's input size is fixed in the file; --input takes a net")
        return cmd_summary_onnx(args)
    net = options.net(args.target, args.set, args.input_size, search=args.search_path)
    if args.json:
        print(json.dumps(to_json(net, args.depth), indent=2))
        return 0
    print(table(net, args.depth))
    for diagnostic in notes(net):
        print(diagnostic.render(), file=sys.stderr)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    listed = entries()
    if args.json:
        rows = [{"name": e.name, "file": e.path.name, "reference": e.reference} for e in listed]
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(e.name) for e in listed), default=4)
    file_width = max((len(e.path.name) for e in listed), default=4)
    for e in listed:
        print(f"{e.name.ljust(width)}  {e.path.name.ljust(file_width)}  {e.reference}")
    return 0
