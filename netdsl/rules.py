"""Shape rules: one small pure function per op, collected in `RULES`, keyed by op name.

Used by `shapes.py`. A rule takes the layer's normalised attributes and its input shapes and
returns the output shape, the fully resolved attributes a backend needs (explicit pads, groups,
bias), the weight tensors, the multiply-adds and how the layer moves the receptive field. It
raises `ShapeError` with the formula and its numbers when the shapes do not fit. The ONNX emitter
(`netdsl.backends.onnx.emit`) has a table keyed by the same names; a test checks that they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Shape = tuple[int, ...]


class ShapeError(Exception):
    def __init__(self, message: str, notes: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.notes = notes or []


@dataclass(frozen=True, slots=True)
class Weight:
    """A weight tensor of a layer; buffers (batch-norm statistics) are not trainable."""

    name: str
    shape: Shape
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class Window:
    """How a layer moves the receptive field: a sliding window, a transposed one, global."""

    kind: str  # "window" | "up" | "global"
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)


@dataclass(frozen=True, slots=True)
class Out:
    shape: Shape
    attrs: Mapping[str, Any]
    weights: tuple[Weight, ...] = ()
    macs: int = 0
    window: Window | None = None
    note: str = ""
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a rule sees: the written name (for messages), attributes, input shapes."""

    written: str
    attrs: Mapping[str, Any]
    inputs: tuple[Shape, ...]
    bias_default: bool = True  # False when the layer feeds a batch norm


def dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _chw(ctx: Ctx) -> tuple[int, int, int]:
    shape = ctx.inputs[0]
    if len(shape) != 3:
        raise ShapeError(
            f"{ctx.written} needs a CxHxW input, got a vector of {dims(shape)}",
            ["a flatten or fc earlier in the chain turned the image into a vector"],
        )
    return shape[0], shape[1], shape[2]


def _axes(
    ctx: Ctx,
    h: int,
    w: int,
    *,
    transposed: bool = False,
    ceil: bool = False,
    pool_pads: bool = False,  # pooling refuses a pad as large as the window (all padding)
) -> tuple[tuple[int, int], tuple[int, int, int, int], list[str]]:
    """Output height and width, explicit ONNX pads (top, left, bottom, right), warnings."""
    a = ctx.attrs
    outs: list[int] = []
    begins: list[int] = []
    ends: list[int] = []
    warnings: list[tuple[int, int, str]] = []
    failures: list[tuple[int, int, int, str]] = []
    for axis, n in enumerate((h, w)):
        k, s, d = a["k"][axis], a["s"][axis], a["d"][axis] if "d" in a else 1
        keff = d * (k - 1) + 1
        kdesc = f"{keff}" if d == 1 else f"{keff} (k'=d(k-1)+1 with k={k}, d={d})"
        p = a["p"]
        if transposed:
            op = a["output_padding"][axis]
            if op >= max(s, d):
                raise ShapeError(
                    f"{ctx.written}: output_padding {op} must be smaller than the "
                    f"stride {s} or the dilation {d}"
                )
            if p == "same":
                total = s * (n - 1) + keff + op - n * s
                if total < 0:
                    raise ShapeError(f"{ctx.written}: 'same' needs a kernel of at least {s}")
                pb, pe = total // 2, total - total // 2
            else:
                pb, pe = (0, 0) if p == "valid" else (p[axis], p[axis + 2])
            m = s * (n - 1) + keff - pb - pe + op
            formula = f"{s}*({n} - 1) + {kdesc} - {pb + pe} + {op} = {m}"
        else:
            if p == "same":
                m = -(-n // s)
                total = max((m - 1) * s + keff - n, 0)
                pb, pe = total // 2, total - total // 2
            else:
                pb, pe = (0, 0) if p == "valid" else (p[axis], p[axis + 2])
            span = n + pb + pe - keff
            if ceil:
                m = -(-span // s) + 1 if span >= 0 else 0
                if m > 0 and (m - 1) * s >= n + pb:  # the last window must start inside
                    m -= 1
                formula = f"ceil(({n} + {pb + pe} - {kdesc})/{s}) + 1 = {m}"
            else:
                m = span // s + 1 if span >= 0 else 0
                formula = f"floor(({n} + {pb + pe} - {kdesc})/{s}) + 1 = {m}"
                dropped = span % s - pe if span >= 0 else 0
                if dropped > 0 and p != "same":
                    warnings.append((axis, dropped, formula))
            if pool_pads and max(pb, pe) >= keff and p != "same":
                raise ShapeError(
                    f"{ctx.written}: padding {max(pb, pe)} is not smaller than the kernel {keff}"
                )
        if m < 1:
            failures.append((axis, n, keff - pb - pe, formula))
        outs.append(m)
        begins.append(pb)
        ends.append(pe)
    if failures:
        need = [max(1, k) for k in (_need(failures, 0, h), _need(failures, 1, w))]
        notes = [f"{'height' if a == 0 else 'width'}: {f}" for a, _, _, f in failures]
        if len(failures) == 2 and failures[0][3] == failures[1][3]:
            notes = [f"height and width: {failures[0][3]}"]
        raise ShapeError(
            f"{ctx.written} needs an input of at least {need[0]}x{need[1]}, got {h}x{w}", notes
        )
    return (outs[0], outs[1]), (begins[0], begins[1], ends[0], ends[1]), _unused(warnings)


def _unused(dropped: list[tuple[int, int, str]]) -> list[str]:
    """Warnings for input rows/columns that no window reaches."""
    if len(dropped) == 2 and dropped[0][1:] == dropped[1][1:]:
        n, formula = dropped[0][1:]
        what = "row and column" if n == 1 else f"{n} rows and columns"
        return [f"{formula} leaves the last {what} of the input unused"]
    texts = []
    for axis, n, formula in dropped:
        side = ("row" if axis == 0 else "column") + ("s" if n > 1 else "")
        texts.append(
            f"{formula} leaves the last {f'{n} ' if n > 1 else ''}{side} of the input unused"
        )
    return texts


def _need(failures: list[tuple[int, int, int, str]], axis: int, n: int) -> int:
    return next((need for a, _, need, _ in failures if a == axis), n)


def _check_groups(ctx: Ctx, c_in: int, groups: int, c_out: int) -> None:
    if c_in % groups or c_out % groups:
        raise ShapeError(
            f"{ctx.written}: groups={groups} must divide both the input channels "
            f"({c_in}) and the output channels ({c_out})"
        )


def conv(ctx: Ctx) -> Out:
    c_in, h, w = _chw(ctx)
    a = ctx.attrs
    if "m" in a:  # depthwise
        groups, c_out = c_in, c_in * a["m"]
    else:
        groups, c_out = a["groups"], a["c"]
    _check_groups(ctx, c_in, groups, c_out)
    (oh, ow), pads, warnings = _axes(ctx, h, w)
    kh, kw = a["k"]
    bias = ctx.bias_default if a["bias"] is None else a["bias"]
    weights: tuple[Weight, ...] = (Weight("weight", (c_out, c_in // groups, kh, kw)),)
    weights += (Weight("bias", (c_out,)),) if bias else ()
    attrs = {
        "c": c_out,
        "k": a["k"],
        "s": a["s"],
        "d": a["d"],
        "pads": pads,
        "groups": groups,
        "bias": bias,
    }
    macs = c_out * oh * ow * (c_in // groups) * kh * kw
    window = Window("window", _eff(a), a["s"])
    return Out((c_out, oh, ow), attrs, weights, macs, window, warnings=tuple(warnings))


def deconv(ctx: Ctx) -> Out:
    c_in, h, w = _chw(ctx)
    a = ctx.attrs
    groups, c_out = a["groups"], a["c"]
    _check_groups(ctx, c_in, groups, c_out)
    (oh, ow), pads, _ = _axes(ctx, h, w, transposed=True)
    kh, kw = a["k"]
    bias = ctx.bias_default if a["bias"] is None else a["bias"]
    weights: tuple[Weight, ...] = (Weight("weight", (c_in, c_out // groups, kh, kw)),)
    weights += (Weight("bias", (c_out,)),) if bias else ()
    attrs = {
        "c": c_out,
        "k": a["k"],
        "s": a["s"],
        "d": a["d"],
        "pads": pads,
        "output_padding": a["output_padding"],
        "groups": groups,
        "bias": bias,
    }
    macs = c_in * h * w * (c_out // groups) * kh * kw
    return Out((c_out, oh, ow), attrs, weights, macs, Window("up", _eff(a), a["s"]))


def _eff(a: Mapping[str, Any]) -> tuple[int, int]:
    d = a.get("d", (1, 1))
    return d[0] * (a["k"][0] - 1) + 1, d[1] * (a["k"][1] - 1) + 1


def pool(ctx: Ctx) -> Out:
    c, h, w = _chw(ctx)
    (oh, ow), pads, warnings = _axes(ctx, h, w, ceil=ctx.attrs["ceil"], pool_pads=True)
    a = ctx.attrs
    attrs = {"k": a["k"], "s": a["s"], "pads": pads, "ceil": a["ceil"]}
    window = Window("window", a["k"], a["s"])
    return Out((c, oh, ow), attrs, window=window, warnings=tuple(warnings))


def global_pool(ctx: Ctx) -> Out:
    c, _, _ = _chw(ctx)
    return Out((c, 1, 1), {}, window=Window("global"))


def fc(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    n_in, n = math.prod(shape), ctx.attrs["n"]
    bias = ctx.attrs["bias"]
    weights = (Weight("weight", (n, n_in)),) + ((Weight("bias", (n,)),) if bias else ())
    note = f"flattens {dims(shape)} to {n_in}" if len(shape) == 3 and shape[1:] != (1, 1) else ""
    window = Window("global") if len(shape) == 3 else None
    return Out((n,), {"n": n, "bias": bias}, weights, n * n_in, window, note)


def flatten(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    window = Window("global") if len(shape) == 3 else None
    return Out((math.prod(shape),), {}, window=window)


def same_shape(ctx: Ctx) -> Out:
    return Out(ctx.inputs[0], dict(ctx.attrs))


def bn(ctx: Ctx) -> Out:
    c = ctx.inputs[0][0]
    weights = (
        Weight("scale", (c,)),
        Weight("bias", (c,)),
        Weight("mean", (c,), trainable=False),
        Weight("var", (c,), trainable=False),
    )
    return Out(ctx.inputs[0], dict(ctx.attrs), weights)


def lrn(ctx: Ctx) -> Out:
    _chw(ctx)
    return same_shape(ctx)


def add(ctx: Ctx) -> Out:
    first = ctx.inputs[0]
    for other in ctx.inputs[1:]:
        if other == first:
            continue
        if ctx.attrs.get("auto"):
            raise ShapeError(
                f"residual add: the body gives {dims(first)} but its input is {dims(other)}",
                [
                    f"a projection shortcut (1x1 conv, stride s) maps a size N to ceil(N/s): "
                    f"no stride turns {dims(other[1:])} into {dims(first[1:])}",
                    "write the shortcut yourself: res[body, shortcut=...]",
                ],
            )
        raise ShapeError(f"cannot add {dims(first)} and {dims(other)}: shapes must be equal")
    return Out(first, {})


def concat(ctx: Ctx) -> Out:
    first = ctx.inputs[0]
    for other in ctx.inputs[1:]:
        if len(other) != len(first) or other[1:] != first[1:]:
            shown = ", ".join(dims(s) for s in ctx.inputs)
            raise ShapeError(f"cannot concatenate {shown}: all but the channels must agree")
    return Out((sum(s[0] for s in ctx.inputs), *first[1:]), {})


def mul(ctx: Ctx) -> Out:
    x, gate = ctx.inputs
    if gate[0] != x[0] or math.prod(gate) != gate[0]:
        raise ShapeError(
            f"scale: the gate gives {dims(gate)}, but the input has {x[0]} "
            f"channels; the gate must give {x[0]} (or {x[0]}x1x1)"
        )
    return Out(x, {})


RULES: dict[str, Callable[[Ctx], Out]] = {
    "conv": conv,
    "dwconv": conv,
    "deconv": deconv,
    "maxpool": pool,
    "avgpool": pool,
    "gap": global_pool,
    "gmp": global_pool,
    "fc": fc,
    "flatten": flatten,
    "relu": same_shape,
    "leakyrelu": same_shape,
    "sigmoid": same_shape,
    "tanh": same_shape,
    "softmax": same_shape,
    "identity": same_shape,
    "dropout": same_shape,
    "bn": bn,
    "lrn": lrn,
    "add": add,
    "concat": concat,
    "mul": mul,
}
