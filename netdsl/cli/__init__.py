"""The `netdsl` command: check, summary, zoo, and the backend commands (compile, run, bench...).

The outermost layer: parses arguments, calls the API, prints. Exit codes: 0 success (warnings
included), 1 errors in a net or its artefacts, 2 usage errors, 3 an internal error (a bug in
netdsl: the traceback is shown only with NETDSL_DEBUG=1). Backend commands are registered from
`netdsl.cli.deploy`, whose heavy imports happen only when a command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from netdsl import __version__
from netdsl.api import load, load_all
from netdsl.shapes import ShapedNet
from netdsl.source import Diagnostic, NetError
from netdsl.summary import check_line, table, to_json
from netdsl.zoo import entries


def depth(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--depth takes a whole number >= 1, got {text}")
    return value


def parse_value(text: str) -> Any:
    """A `--set name=value` value: an integer, a number, true/false, or a word."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def overrides(pairs: Sequence[str]) -> dict[str, Any]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise NetError(f"--set takes NAME=VALUE, got '{pair}'")
        result[name] = parse_value(value)
    return result


def _notes(net: ShapedNet) -> list[Diagnostic]:
    notes = list(net.warnings)
    for node in net.nodes:
        if node.note.startswith("flattens"):
            notes.append(
                Diagnostic(
                    f"{node.name} {node.note} (write `flatten` to say so)",
                    node.span,
                    severity="note",
                )
            )
    if net.defaults_used:
        notes.append(
            Diagnostic(
                f"{net.name} used the built-in defaults {', '.join(net.defaults_used)}",
                None,
                ("choose widths with a line like `defaults conv.c=32, fc.n=10`",),
                "note",
            )
        )
    return notes


def cmd_check(args: argparse.Namespace) -> int:
    failed = False
    for target in args.targets:
        try:
            nets = load_all(target, overrides=overrides(args.set))
        except NetError as error:
            print(error.render(), file=sys.stderr)
            failed = True
            continue
        for net in nets:
            print(check_line(net))
            for diagnostic in _notes(net):
                print(diagnostic.render(), file=sys.stderr)
        if args.target == "tensorrt":
            from netdsl.backends.tensorrt.support import SOURCE, check_nets

            problems = check_nets(nets)
            for problem in problems:
                print(problem.render(), file=sys.stderr)
            failed |= bool(problems)
            if not problems:
                print(f"tensorrt: every op, attribute and type fits; table: {SOURCE}")
    return 1 if failed else 0


def cmd_summary(args: argparse.Namespace) -> int:
    net = load(args.target, overrides=overrides(args.set))
    if args.json:
        print(json.dumps(to_json(net, args.depth), indent=2))
        return 0
    print(table(net, args.depth))
    for diagnostic in _notes(net):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdsl",
        description="Describe a CNN in a few lines; check its shapes, summarise it, compile it.",
    )
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target_help = "a .net file, FILE:NET, or a zoo net's name (see `netdsl zoo`)"

    check = sub.add_parser("check", help="check shapes; one line per net")
    check.add_argument("targets", nargs="+", metavar="TARGET", help=target_help)
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a net parameter, e.g. --set classes=10",
    )
    check.add_argument(
        "--target",
        choices=("onnx", "tensorrt"),
        default="onnx",
        help="also check the compiled graph against TensorRT's ONNX parser "
        "(needs the onnx extra, not TensorRT)",
    )
    check.set_defaults(func=cmd_check)

    summary = sub.add_parser("summary", help="the per-layer table papers print")
    summary.add_argument("target", metavar="TARGET", help=target_help)
    summary.add_argument(
        "--depth",
        type=depth,
        default=None,
        metavar="N",
        help="collapse rows into blocks of the first N name parts",
    )
    summary.add_argument("--json", action="store_true", help="print JSON")
    summary.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    summary.set_defaults(func=cmd_summary)

    zoo = sub.add_parser("zoo", help="list the nets that ship with netdsl")
    zoo.add_argument("--json", action="store_true", help="print JSON")
    zoo.set_defaults(func=cmd_zoo)

    if importlib.util.find_spec("netdsl.cli.deploy") is not None:
        from netdsl.cli import deploy as commands

        commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except NetError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # a bug in netdsl, not in the user's net
        if os.environ.get("NETDSL_DEBUG"):
            raise
        print(
            f"netdsl: internal error: {type(error).__name__}: {error}\n"
            "this is a bug in netdsl; rerun with NETDSL_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
