"""`run` for a model with several inputs or outputs (`input a: ..., b: ...`, `output cls: ...`):
one `--input NAME=FILE` per input (a .npy array; random where none is given), every output
printed by name.

Part of the CLI (netdsl/cli/run.py calls it): reads the arguments, feeds onnxruntime, prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.source import NetError


def wants_feeds(sess: Any, given: list[str]) -> bool:
    """Does this run need named feeds: several inputs or outputs, or `--input NAME=FILE`?"""
    return len(sess.get_inputs()) > 1 or len(sess.get_outputs()) > 1 or any("=" in g for g in given)


def feeds(sess: Any, given: list[str], seed: int) -> tuple[dict[str, Any], list[str]]:
    """The arrays to feed, by input name, and notes on those made up at random."""
    import numpy as np

    from netdsl.backends.data import npy
    from netdsl.backends.runtime import ort

    shapes = ort.input_shapes(sess)
    files: dict[str, str] = {}
    for item in given:
        name, eq, path = item.partition("=")
        if not eq or name not in shapes:
            raise NetError(
                f"--input '{item}': give NAME=FILE, NAME one of the model's inputs "
                f"({', '.join(shapes)})"
            )
        if name in files:
            raise NetError(f"--input {name}= is given twice")
        files[name] = path
    out: dict[str, Any] = {}
    notes = []
    batch = None
    # the given arrays first: they decide the batch of the random ones
    order = sorted(enumerate(shapes.items()), key=lambda item: item[1][0] not in files)
    for k, (name, shape) in order:
        if name in files:
            if not Path(files[name]).is_file():
                raise NetError(f"--input {name}: no such file: '{files[name]}'")
            x = npy.load_npy(Path(files[name]))
            if x.ndim == len(shape) - 1:
                x = x[None]
            fits = x.ndim == len(shape) and all(
                not isinstance(d, int) or d == n
                for d, n in zip(shape[1:], x.shape[1:], strict=True)
            )
            if not fits or x.dtype.kind != "f":
                raise NetError(
                    f"--input {name}: expected float values of shape "
                    f"{'x'.join(map(str, shape))}, got {x.dtype} {'x'.join(map(str, x.shape))}"
                )
            out[name] = np.ascontiguousarray(x, dtype=np.float32)
        else:
            if not all(isinstance(d, int) for d in shape[1:]):
                raise NetError(f"input '{name}' has free dimensions; give --input {name}=FILE")
            size = [int(d) for d in shape[1:]]
            out[name] = ort.random_input([batch or 1, *size], seed + k)
            notes.append(f"note: no --input {name}=FILE; a random input (seed {seed + k})")
        if batch is None:
            batch = len(out[name])
        elif len(out[name]) != batch:
            raise NetError(f"--input {name}: batch {len(out[name])}, the other inputs {batch}")
    return {name: out[name] for name in shapes}, notes


def run_feeds(args: argparse.Namespace, model: Any, sess: Any, note: str) -> int:
    """Run with named feeds and print every output (or the JSON report)."""
    x, notes = feeds(sess, list(args.input or []), args.seed)
    names = [o.name for o in sess.get_outputs()]
    ys = sess.run(None, x)
    lines = [line for line in [note.strip(), *notes] if line]
    if args.json:
        report = {
            "model": args.model,
            "output": list(ys[0].shape),
            "outputs": [
                {
                    "name": name,
                    "shape": list(y.shape),
                    "range": {
                        "min": float(y.min()),
                        "max": float(y.max()),
                        "mean": float(y.mean()),
                    },
                }
                for name, y in zip(names, ys, strict=True)
            ],
            "notes": lines,
        }
        print(json.dumps(report, indent=2))
        return 0
    for line in lines:
        print(line)
    for name, y in zip(names, ys, strict=True):
        print(f"{name} {'x'.join(map(str, y.shape))}")
        print(f"  min {y.min():.6g}  max {y.max():.6g}  mean {y.mean():.6g}")
    return 0
