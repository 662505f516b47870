"""The command line's vocabulary, written once: TARGET's help, the `--set` parser, argparse types
that check numbers (finite, in range) and paths, and the flag groups several commands share.

Used by every command module of `netdsl.cli`. A bad value is refused by argparse here, with the
flag's name and a usage line (exit 2), before any net is read or any library is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from netdsl.api import load
from netdsl.errors import MissingExtra
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

TARGET = "a .net file, FILE:NET, or a zoo net's name (see `netdsl zoo`)"
MODEL = "an .onnx file, or " + TARGET
DATA = (
    "digits (scikit-learn's, bundled; the default), mnist:DIR, cifar10:DIR, folder:DIR "
    "(one sub-folder per class), npz:FILE (x_train, y_train, x_test, y_test)"
)
MAX_BATCH = 2**31 - 1  # ONNX dims and onnxruntime's shapes are int64; sizes beyond are typos
MAX_SEED = 2**32 - 1  # what every seeded generator in netdsl accepts


# ---- argparse types --------------------------------------------------------------------------


def whole(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got '{text}'") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"from {low} to {high:,}"
            raise argparse.ArgumentTypeError(f"takes a whole number {bound}, got {text}")
        return value

    parse.__name__ = "whole number"
    return parse


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (> low with `above`), <= high (< with `below`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a number, got '{text}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"takes a finite number, got {text}")
        too_low = low is not None and (value <= low if above else value < low)
        too_high = high is not None and (value >= high if below else value > high)
        if too_low or too_high:
            parts = []
            if low is not None:
                parts.append(f"{'>' if above else '>='} {low:g}")
            if high is not None:
                parts.append(f"{'<' if below else '<='} {high:g}")
            raise argparse.ArgumentTypeError(f"takes a number {' and '.join(parts)}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def batches(text: str) -> list[int]:
    """`1,8,64` -> [1, 8, 64]: batch sizes for bench."""
    parse = whole(1, MAX_BATCH)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"takes sizes like 1,8,64, got '{text}'")
    try:
        return [parse(p) for p in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"takes whole numbers from 1 to {MAX_BATCH:,} like 1,8,64, got '{text}'"
        ) from None


def input_size(text: str) -> tuple[int, ...]:
    """`3x64x64` -> (3, 64, 64): another input size for the net (its input line's rank)."""
    parts = text.lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes sizes like 3x64x64, got '{text}'") from None
    if not all(1 <= n <= MAX_BATCH for n in sizes):
        raise argparse.ArgumentTypeError(f"takes sizes from 1 to {MAX_BATCH:,}, got '{text}'")
    return sizes


def url(text: str) -> str:
    """An http(s) or file URL (a mirror to download from)."""
    if not text.startswith(("http://", "https://", "file://")):
        raise argparse.ArgumentTypeError(f"takes an http://, https:// or file:// URL, got '{text}'")
    return text.rstrip("/")


def library_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """A library parser (raising NetError) as an argparse type."""

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except NetError as error:
            raise argparse.ArgumentTypeError(error.message) from None

    wrapped.__name__ = name
    return wrapped


def providers(text: str) -> tuple[str, str]:
    """`cpu,cuda` -> ("cpu", "cuda"): compare's two onnxruntime providers."""
    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 2 or any(p not in ("cpu", "cuda") for p in parts):
        raise argparse.ArgumentTypeError(f"takes two of cpu, cuda like cpu,cuda, got '{text}'")
    return parts[0], parts[1]


# ---- extras ---------------------------------------------------------------------------------


def require(extra: str, modules: Sequence[str], feature: str) -> None:
    """Refuse to start `feature` if a module it uses is missing: `MissingExtra` names `extra`,
    the netdsl extra that brings them all (the CLI prints it as a usage error, exit 2)."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise MissingExtra(missing, extra, feature)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package of a submodule is missing
        return False


# ---- --set -----------------------------------------------------------------------------------


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


def net(
    target: str,
    pairs: Sequence[str],
    size: Sequence[int] | None = None,
    search: Sequence[str] = (),
) -> ShapedNet:
    """The net a TARGET names, with its `--set` overrides, its `--input` size and the folders
    its imports may read besides its own (`--search-path`)."""
    return load(target, overrides=overrides(pairs), input_shape=size, search_path=search)


# ---- shared flag groups ----------------------------------------------------------------------


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a net parameter, e.g. --set classes=10",
    )
    parser.add_argument(
        "--search-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder imports may read besides the net file's own (repeatable)",
    )


def add_seed(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--seed", type=whole(0, MAX_SEED), default=0, metavar="N", help=text)


def add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="a .npz (keyed by tensor name), .onnx or PyTorch .pth/.pt file of weights "
        "(torchvision's names are mapped for the zoo nets that are its models)",
    )
    parser.add_argument(
        "--skip-mismatched",
        action="store_true",
        help="keep fresh weights where the file's shapes differ",
    )


def add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--threads", type=whole(0, 1024), default=0, help="intra-op threads (0: auto)"
    )
    parser.add_argument(
        "--opt-level",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="onnxruntime graph optimisation (default all)",
    )


def add_calibration(parser: argparse.ArgumentParser) -> None:
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
        type=whole(1, 1_000_000),
        default=256,
        metavar="N",
        help="int8: how many training images calibrate (default 256)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON (schema in netdsl/schemas/)"
    )


def add_input_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        dest="input_size",
        type=input_size,
        metavar="CxHxW",
        help="another input size, e.g. 3x64x64 (the net's input line, same rank)",
    )


def deprecated(old: str, new: str) -> None:
    """A note for an old flag spelling that still works."""
    print(f"note: {old} is deprecated here; write {new}", file=sys.stderr)


# ---- paths -----------------------------------------------------------------------------------


def output_file(path: str | Path) -> Path:
    """An output file's path, refused early if it names a folder or a folder that is missing."""
    out = Path(path)
    if out.is_dir():
        raise NetError(f"cannot write '{out}': it is a folder; name a file")
    if not out.parent.is_dir():
        raise NetError(f"cannot write '{out}': there is no folder '{out.parent}'")
    return out


def output_folder(path: str | Path) -> Path:
    """A run's folder: refused early if it is a file or cannot be created."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NetError(f"'{out}' is a file; the run's folder must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NetError(f"cannot create the folder '{out}': {error.strerror or error}") from None
    try:  # a real file, not os.access: /proc passes that test and refuses every file
        fd, probe = tempfile.mkstemp(prefix=".netdsl-probe-", dir=out)
    except OSError as error:
        raise NetError(f"cannot write into '{out}': {error.strerror or error}") from None
    os.close(fd)
    os.unlink(probe)
    return out


def check_loss_output(net: ShapedNet, chosen: str | None) -> None:
    """A net of several outputs trains on the one `--loss-output` names (train and
    `compile --training-step`): without it, the outputs are listed and the flag suggested."""
    outputs = [name for name, _ in net.output_list]
    if len(outputs) > 1 and not chosen:
        raise NetError(
            f"{net.name} has {len(outputs)} outputs ({', '.join(outputs)}); training needs "
            "the one its loss is on",
            net.span,
            [f"pass --loss-output {outputs[0]} (the outputs not chosen are not trained on)"],
        )
