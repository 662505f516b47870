"""Shaped net + typed options -> the ONNX model a user asked for, and writing it safely.

The onnx room's front door, after `emit.to_onnx` and the precision passes it drives: the command
line builds a `CompileOptions` from its flags and calls `compile_net`, so the decisions (which
form the model is emitted in, when batch norms fold, which precision pass runs, what int8 is
calibrated on) are made here, once, and an API user gets the same model as `netdsl compile`.
The model is emitted exactly once: int8 needs the folded inference form, so that is the form
chosen before emitting, not a second compile. `save_model` writes through a temporary file in
the destination folder and renames it, so a failure never leaves a truncated model behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from netdsl import memory
from netdsl.backends.data import atomic
from netdsl.backends.onnx.emit import to_onnx
from netdsl.errors import NeedsInference
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

MAX_PROTO = 2**31 - 1  # protobuf cannot serialise a message this large; weights go beside it
PRECISIONS = ("fp32", "fp16", "int8")
Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """The images int8 calibrates on: a dataset spec (as for training: `digits`, `mnist:DIR`,
    ...), how they are brought to the net's size, and how many are used."""

    spec: str
    fit: str = "auto"
    images: int = 256


@dataclass(frozen=True, slots=True)
class CompileOptions:
    """Everything that decides the emitted model (see docs/onnx.md and docs/deploy.md)."""

    opset: int = 17
    batch: int | None = None  # None: a dynamic batch named N
    init: str = "auto"
    seed: int = 0
    weights: str | Path | None = None
    skip_mismatched: bool = False
    mode: Literal["train", "inference"] = "train"
    fold_bn: bool = False
    precision: Precision = "fp32"
    calibration: Calibration | None = None
    int8_target: Literal["onnxruntime", "tensorrt"] = "onnxruntime"

    @property
    def form(self) -> tuple[str, bool]:
        """The (mode, fold_bn) the model is emitted in: folding and int8 imply inference."""
        if self.precision == "int8":
            return "inference", True
        if self.fold_bn and self.mode != "inference":
            raise NeedsInference("folding batch norms needs the inference form")
        return self.mode, self.fold_bn


def compile_net(net: ShapedNet, options: CompileOptions = CompileOptions()) -> onnx.ModelProto:
    """The net as an ONNX model in the options' form and precision; int8 is calibrated on
    `options.calibration`'s images."""
    if options.precision not in PRECISIONS:
        raise NetError(
            f"precision must be one of {', '.join(PRECISIONS)}, not '{options.precision}'"
        )
    memory.check_fits((net.params,), f"the weights of {net.name} ({net.params:,} parameters)")
    images = calibration_images(net, options.calibration) if options.precision == "int8" else None
    mode, fold_bn = options.form
    model = to_onnx(
        net,
        opset=options.opset,
        batch=options.batch,
        init=options.init,
        seed=options.seed,
        weights=options.weights,
        mode=mode,
        fold_bn=fold_bn,
        skip_mismatched=options.skip_mismatched,
    )
    if images is not None:
        from netdsl.backends.passes.int8 import quantize_int8

        return quantize_int8(model, images, target=options.int8_target)
    if options.precision == "fp16":
        from netdsl.backends.passes.fp16 import apply_precision

        return apply_precision(model, "fp16")
    return model


def calibration_images(
    net: ShapedNet, calibration: Calibration | None
) -> np.ndarray | dict[str, np.ndarray]:
    """The first `calibration.images` training images of its dataset, fitted to the net; for a
    net of several inputs, an npz's `<input>_train` samples by input name. Labels are not used."""
    from netdsl.backends.data import sources as data

    if calibration is None:
        raise NetError("int8 needs calibration images (real ones, e.g. the digits dataset)")
    if calibration.images < 1:
        raise NetError(f"int8 needs at least one calibration image, not {calibration.images}")
    n = calibration.images
    if len(net.inputs) > 1:
        shapes = {net.nodes[i].name: net.nodes[i].shape for i in net.inputs}
        loaded = data.load(calibration.spec, inputs=shapes)
        arrays = [loaded.x_train, *(train for train, _ in loaded.more.values())]
        return {name: x[:n] for name, x in zip(loaded.names, arrays, strict=True)}
    if len(net.input_shape) != 3:
        raise NetError(f"int8 calibration needs an image input, {net.name} takes a vector")
    loaded = data.load(calibration.spec)
    fitted = data.fit(loaded, net.input_shape, 2**31, net.name, calibration.fit)
    images: np.ndarray = fitted.x_train[:n]
    return images


def save_model(model: onnx.ModelProto, path: str | Path) -> int:
    """Write `model` to `path` atomically (weights beside it, in `NAME.data`, past protobuf's
    2 GiB); returns the model's size in bytes. Either the whole model lands or nothing does."""
    out = Path(path)
    size = int(model.ByteSize())
    external = size > MAX_PROTO
    if not external:
        atomic.write(out, model.SerializeToString())
        return size
    if out.is_dir():
        raise NetError(f"cannot write '{out}': it is a folder")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise NetError(f"cannot write '{out}': {error.strerror or error}") from None
    try:
        staged = tmp / out.name
        onnx.save_model(
            model,
            str(staged),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=f"{out.name}.data",
        )
        if external:
            os.replace(tmp / f"{out.name}.data", out.parent / f"{out.name}.data")
        os.replace(staged, out)
    except OSError as error:
        raise NetError(f"cannot write '{out}': {error.strerror or error}") from None
    finally:
        for leftover in tmp.iterdir() if tmp.exists() else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()
    return size
