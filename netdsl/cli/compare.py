"""`netdsl compare A B`: two artefacts on the same inputs; exit 1 when they differ.

The outermost layer of `backends/runtime/compare.py`: each side is an `.onnx` or `.engine` file
or a net (compiled for inference); both get one seeded random input per model input, or the
`.npy` arrays of `--input NAME=FILE`; the library runs both, compares every output and the logits
before a trailing softmax, and judges them against `--atol`/`--rtol`/`--agreement` or the
default tolerance of the sides' precision (docs/deploy.md). The mismatch goes to stderr with
which tensor and by how much, and the exit status is 1, so a CI job fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from netdsl.cli import options as o
from netdsl.cli.run import RUN
from netdsl.source import NetError


def register(sub: Any) -> None:
    m = sub.add_parser("compare", help="run two artefacts on one input; exit 1 when they differ")
    m.add_argument("a", metavar="A", help="an .onnx or .engine file, or " + o.TARGET)
    m.add_argument("b", metavar="B", nargs="?", help="the second (default: A again)")
    m.add_argument(
        "--providers",
        type=o.providers,
        default=("cpu", "cpu"),
        metavar="P,Q",
        help="onnxruntime providers for A and B (default cpu,cpu; e.g. cpu,cuda)",
    )
    m.add_argument(
        "--batch",
        type=o.whole(1, o.MAX_BATCH),
        default=8,
        help="images in the random input (default 8)",
    )
    m.add_argument(
        "--atol",
        type=o.number(0),
        default=None,
        help="absolute tolerance: fail (exit 1) above atol + rtol x the scale of A's logits",
    )
    m.add_argument(
        "--rtol",
        type=o.number(0),
        default=None,
        help="tolerance relative to the largest magnitude of A's logits (default by precision: "
        "fp32 1e-3, fp16 1e-2, int8 0.25 with top-1 agreement >= 50%%; see docs/deploy.md)",
    )
    m.add_argument(
        "--agreement",
        type=o.number(0, 1),
        default=None,
        metavar="F",
        help="also fail when fewer than this fraction of images agree on the top-1 class",
    )
    m.add_argument(
        "--input",
        action="append",
        metavar="NAME=FILE",
        help="feed the input NAME from a .npy array (N x its shape) instead of a random one; "
        "once per input (a model of several inputs: `input a: ..., b: ...`)",
    )
    o.add_seed(m, "seed of the input and fresh weights")
    o.add_json(m)
    o.add_set(m)
    m.set_defaults(func=cmd_compare, needs=RUN)


def _is_artefact(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".onnx", ".engine")


def _files(items: list[str]) -> dict[str, str]:
    """`--input NAME=FILE` items by name."""
    files: dict[str, str] = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise NetError(f"--input '{item}': give NAME=FILE, NAME one of the models' inputs")
        if name in files:
            raise NetError(f"--input {name}= is given twice")
        files[name] = path
    return files


def _given(items: list[str]) -> dict[str, Any]:
    """The arrays of `--input NAME=FILE` (.npy files, read header-first)."""
    from netdsl.backends.data import npy

    arrays = {}
    for name, path in _files(items).items():
        if not Path(path).is_file():
            raise NetError(f"--input {name}: no such file: '{path}'")
        arrays[name] = npy.load_npy(Path(path))
    return arrays


def _fed(shapes: dict[str, tuple[int, ...]], files: dict[str, str], seed: int) -> str:
    """What each input was: `random input 8x1x32x32 (seed 0)` for a model of one input."""
    said = []
    for k, (name, shape) in enumerate(shapes.items()):
        dims = "x".join(map(str, shape))
        if name in files:
            said.append(f"{name} {dims} from {files[name]}")
        else:
            said.append(
                f"{'' if len(shapes) == 1 else name + ' '}random input {dims} (seed {seed + k})"
            )
    return ", ".join(said)


def cmd_compare(args: argparse.Namespace) -> int:
    from netdsl.backends.onnx.compile import CompileOptions, compile_net
    from netdsl.backends.runtime import compare

    first, second = args.providers
    sides: list[Any] = []
    for spec in (args.a, args.b or args.a):
        if _is_artefact(spec):
            sides.append(spec)
        else:
            net = o.net(spec, args.set, search=args.search_path)
            sides.append(compile_net(net, CompileOptions(mode="inference", seed=args.seed)))
    given = _given(args.input or [])
    found, shapes = compare.compare_inputs(
        sides[0], sides[1], (first, second), args.batch, args.seed, given
    )
    shape = next(iter(shapes.values()))
    if args.atol is None and args.rtol is None:
        tolerance = compare.default_tolerance([compare.precision_of(s) for s in sides])
        if args.agreement is not None:
            tolerance = replace(tolerance, agreement=args.agreement)
    else:
        tolerance = compare.Tolerance(args.atol or 0.0, args.rtol or 0.0, args.agreement)
    failures = tolerance.failures(found)
    if args.json:
        report = {
            "a": args.a,
            "b": args.b or args.a,
            "providers": [first, second],
            "input": list(shape),
            "inputs": {name: list(s) for name, s in shapes.items()},
            "seed": args.seed,
            "tolerance": tolerance.as_dict(),
            "outputs": [d.as_dict() for d in found],
            "passed": not failures,
            "failures": failures,
        }
        print(json.dumps(report, indent=2))
        return 1 if failures else 0
    fed = _fed(shapes, _files(args.input or []), args.seed)
    print(f"{args.a} ({first}) vs {args.b or args.a} ({second}), {fed}")
    for d in found:
        print("  " + d.render())
    agree = f", top-1 agreement >= {tolerance.agreement:.0%}" if tolerance.agreement else ""
    limits = f"atol {tolerance.atol:g}, rtol {tolerance.rtol:g}{agree}"
    chosen = f"the {tolerance.default} default" if tolerance.default else "given"
    if failures:
        print(f"mismatch ({limits}, {chosen}):", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    print(f"within tolerance ({limits}, {chosen})")
    return 0
