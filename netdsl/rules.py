"""Shape rules: one small pure function per op, collected in `RULES`, keyed by op name.

Used by `shapes.py`. A rule takes the layer's normalised attributes and its input shapes and
returns the output shape, the fully resolved attributes a backend needs (explicit pads that
already include ceil mode's end padding, groups, bias), the weight tensors, the multiply-adds
and how the layer moves the receptive field. It raises `ShapeError` with the formula and its
numbers when the shapes do not fit. Rules work on any number of spatial axes (the arithmetic of
one axis is `geometry.py`). The layers that are made of other layers are decided here too: the
projection shortcut (`projection`) and the lowering of a separable convolution (`LOWERINGS`).
Every backend reads these attributes and computes no geometry of its own; the op index
(`ops.py`) and tests/test_op_table.py check that every op has its rule and backend entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netdsl import geometry

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
    """How a layer moves the receptive field: a sliding window, a transposed one, or global;
    one entry per spatial axis (`begin`: the begin pads, which place the window)."""

    kind: str  # "window" | "up" | "global"
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    begin: tuple[int, ...] = ()


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


LAYOUTS = {1: "CxL", 2: "CxHxW", 3: "CxDxHxW"}
AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
SLICES = {1: ("position",), 2: ("row", "column"), 3: ("plane", "row", "column")}


def _spatial(ctx: Ctx) -> tuple[int, tuple[int, ...]]:
    """The channels and the spatial sizes of the (first) input; refuses a vector, and an input
    whose number of spatial axes differs from the layer's kernel."""
    shape = ctx.inputs[0]
    kernel = ctx.attrs.get("k")  # lrn's k is a number, not a kernel
    rank = len(kernel) if isinstance(kernel, tuple) else len(shape) - 1
    if len(shape) < 2:
        raise ShapeError(
            f"{ctx.written} needs a {LAYOUTS.get(rank, 'CxHxW')} input, "
            f"got a vector of {dims(shape)}",
            ["a flatten or fc earlier in the chain turned the image into a vector"],
        )
    if len(shape) - 1 != rank:
        raise ShapeError(
            f"{ctx.written} is a {rank}-D layer, but its input {dims(shape)} has "
            f"{len(shape) - 1} spatial axes"
        )
    return shape[0], tuple(shape[1:])


def _axes(
    ctx: Ctx,
    sizes: tuple[int, ...],
    *,
    transposed: bool = False,
    ceil: bool = False,
    pool_pads: bool = False,  # pooling refuses a pad as large as the window (all padding)
) -> tuple[tuple[int, ...], tuple[int, ...], list[str]]:
    """Output sizes, explicit ONNX pads (all begins, then all ends; in ceil mode the ends
    include the padding the last window needs) and warnings, for any number of axes."""
    a, rank, p = ctx.attrs, len(sizes), ctx.attrs["p"]
    slides: list[geometry.Slide] = []
    for axis, n in enumerate(sizes):
        k, s, d = a["k"][axis], a["s"][axis], a["d"][axis] if "d" in a else 1
        keff = geometry.effective(k, d)
        pads = p if isinstance(p, str) else (p[axis], p[axis + rank])
        if transposed:
            extra = a["output_padding"][axis]
            if extra >= max(s, d):
                raise ShapeError(
                    f"{ctx.written}: output_padding {extra} must be smaller than the "
                    f"stride {s} or the dilation {d}"
                )
            if p == "same" and keff + extra < s:
                raise ShapeError(f"{ctx.written}: 'same' needs a kernel of at least {s}")
            slides.append(geometry.transposed(n, k, s, d, pads, extra))
            continue
        slides.append(geometry.slide(n, k, s, d, pads, ceil))
        widest = 0 if isinstance(pads, str) else max(pads)
        if pool_pads and widest >= keff:
            raise ShapeError(
                f"{ctx.written}: padding {widest} is not smaller than the kernel {keff}"
            )
    failed = [axis for axis, sl in enumerate(slides) if sl.size < 1]
    if failed:
        names = AXES.get(rank, tuple(f"axis {i + 1}" for i in range(rank)))
        need = [max(1, slides[i].need) if i in failed else n for i, n in enumerate(sizes)]
        notes = [f"{names[i]}: {slides[i].formula}" for i in failed]
        if rank > 1 and len(failed) == rank and len({slides[i].formula for i in failed}) == 1:
            notes = [f"{' and '.join(names)}: {slides[0].formula}"]
        raise ShapeError(
            f"{ctx.written} needs an input of at least {dims(tuple(need))}, got {dims(sizes)}",
            notes,
        )
    pads_out = tuple(sl.begin for sl in slides) + tuple(sl.end for sl in slides)
    dropped = [(axis, sl.dropped, sl.formula) for axis, sl in enumerate(slides) if sl.dropped]
    return tuple(sl.size for sl in slides), pads_out, _unused(dropped, rank)


def _unused(dropped: list[tuple[int, int, str]], rank: int) -> list[str]:
    """Warnings for input rows/columns that no window reaches."""
    names = SLICES.get(rank, tuple(f"slice {i + 1}" for i in range(rank)))
    if rank > 1 and len(dropped) == rank and len({d[1:] for d in dropped}) == 1:
        n, formula = dropped[0][1:]
        plural = [f"{name}s" if n > 1 else name for name in names]
        what = ", ".join(plural[:-1]) + " and " + plural[-1]
        return [f"{formula} leaves the last {f'{n} ' if n > 1 else ''}{what} of the input unused"]
    texts = []
    for axis, n, formula in dropped:
        side = names[axis] + ("s" if n > 1 else "")
        texts.append(
            f"{formula} leaves the last {f'{n} ' if n > 1 else ''}{side} of the input unused"
        )
    return texts


def _check_groups(ctx: Ctx, c_in: int, groups: int, c_out: int) -> None:
    if c_in % groups or c_out % groups:
        raise ShapeError(
            f"{ctx.written}: groups={groups} must divide both the input channels "
            f"({c_in}) and the output channels ({c_out})"
        )


def conv(ctx: Ctx) -> Out:
    c_in, sizes = _spatial(ctx)
    a = ctx.attrs
    if "m" in a:  # depthwise
        groups, c_out = c_in, c_in * a["m"]
    else:
        groups, c_out = a["groups"], a["c"]
    _check_groups(ctx, c_in, groups, c_out)
    outs, pads, warnings = _axes(ctx, sizes)
    bias = ctx.bias_default if a["bias"] is None else a["bias"]
    weights: tuple[Weight, ...] = (Weight("weight", (c_out, c_in // groups, *a["k"])),)
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
    macs = c_out * math.prod(outs) * (c_in // groups) * math.prod(a["k"])
    window = Window("window", a["k"], a["s"], a["d"], pads[: len(sizes)])
    return Out((c_out, *outs), attrs, weights, macs, window, warnings=tuple(warnings))


def deconv(ctx: Ctx) -> Out:
    c_in, sizes = _spatial(ctx)
    a = ctx.attrs
    groups, c_out = a["groups"], a["c"]
    _check_groups(ctx, c_in, groups, c_out)
    outs, pads, _ = _axes(ctx, sizes, transposed=True)
    bias = ctx.bias_default if a["bias"] is None else a["bias"]
    weights: tuple[Weight, ...] = (Weight("weight", (c_in, c_out // groups, *a["k"])),)
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
    macs = c_in * math.prod(sizes) * (c_out // groups) * math.prod(a["k"])
    window = Window("up", a["k"], a["s"], a["d"], pads[: len(sizes)])
    return Out((c_out, *outs), attrs, weights, macs, window)


def pool(ctx: Ctx) -> Out:
    """Max and average pooling. `pads` already hold the end padding that ceil mode adds, so a
    backend writes them as they are (and keeps `ceil` only as a record of what was written)."""
    c, sizes = _spatial(ctx)
    outs, pads, warnings = _axes(ctx, sizes, ceil=ctx.attrs["ceil"], pool_pads=True)
    a = ctx.attrs
    attrs = {"k": a["k"], "s": a["s"], "pads": pads, "ceil": a["ceil"]}
    window = Window("window", a["k"], a["s"], (1,) * len(sizes), pads[: len(sizes)])
    return Out((c, *outs), attrs, window=window, warnings=tuple(warnings))


def global_pool(ctx: Ctx) -> Out:
    c, sizes = _spatial(ctx)
    return Out((c, *(1 for _ in sizes)), {}, window=Window("global"))


def fc(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    n_in, n = math.prod(shape), ctx.attrs["n"]
    bias = ctx.attrs["bias"]
    weights = (Weight("weight", (n, n_in)),) + ((Weight("bias", (n,)),) if bias else ())
    spatial = len(shape) > 1
    note = f"flattens {dims(shape)} to {n_in}" if spatial and math.prod(shape[1:]) > 1 else ""
    window = Window("global") if spatial else None
    return Out((n,), {"n": n, "bias": bias}, weights, n * n_in, window, note)


def flatten(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    window = Window("global") if len(shape) > 1 else None
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
    _spatial(ctx)
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


def _equal(ctx: Ctx, failed: str) -> Out:
    """An element-wise merge of tensors of one shape (`mean`, `sub`); `failed` says what could
    not be done, with the shapes in their listed order."""
    first = ctx.inputs[0]
    if all(other == first for other in ctx.inputs[1:]):
        return Out(first, {})
    notes = []
    spatial = list(dict.fromkeys(s[1:] for s in ctx.inputs))  # in listed order, once each
    if len({len(s) for s in ctx.inputs}) == 1 and len(first) > 1 and len(spatial) > 1:
        smallest = min(spatial, key=math.prod)
        if all(all(n >= m for n, m in zip(s, smallest, strict=True)) for s in spatial):
            larger = ", ".join(dims(s) for s in spatial if s != smallest)
            notes.append(
                f"crop the larger map ({larger}) to {dims(smallest)} first: "
                f"[a -> crop(to=b), b] -> {ctx.written}"
            )
    raise ShapeError(f"{failed}: shapes must be equal", notes)


def mean(ctx: Ctx) -> Out:
    return _equal(ctx, f"cannot average {', '.join(dims(s) for s in ctx.inputs)}")


def sub(ctx: Ctx) -> Out:
    a, b = ctx.inputs
    return _equal(ctx, f"cannot subtract {dims(b)} from {dims(a)}")


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


# ---- layers made of other layers: their geometry is decided here too ------------------------


def projection(have: Shape, want: Shape) -> dict[str, Any] | None:
    """The attributes of He et al.'s projection shortcut, a 1x1 convolution (then a batch norm)
    that maps a residual block's input `have` to its body's output `want`: stride s per axis with
    ceil(N/s) = M, as a 1x1 convolution with stride s gives. None where the shapes agree, or
    where no stride fits (the add then reports the mismatch)."""
    if want == have or len(want) != len(have) or len(want) < 2:
        return None
    strides = tuple(-(-n // m) for n, m in zip(have[1:], want[1:], strict=True))
    if any(-(-n // s) != m for n, s, m in zip(have[1:], strides, want[1:], strict=True)):
        return None
    ones = (1,) * len(strides)
    return {
        "c": want[0],
        "k": ones,
        "s": strides,
        "p": "valid",
        "d": ones,
        "groups": 1,
        "bias": False,
    }


def sepconv(attrs: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """A separable convolution as the two layers it is: a depthwise convolution with the
    written kernel, stride, padding and dilation (no bias), then a pointwise 1x1 convolution to
    c channels with the written bias. Returned as (name suffix, op, attributes)."""
    ones = (1,) * len(attrs["k"])
    dw = {k: v for k, v in attrs.items() if k != "c"} | {"m": 1, "bias": False}
    pw = {"c": attrs["c"], "k": ones, "s": ones, "p": "valid", "d": ones, "groups": 1}
    return [("dw", "dwconv", dw), ("pw", "conv", pw | {"bias": attrs["bias"]})]


# ops that expand.py lowers into other ops, by the function that gives those ops
LOWERINGS: dict[str, Callable[[Mapping[str, Any]], list[tuple[str, str, dict[str, Any]]]]] = {
    "sepconv": sepconv,
}

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
    "abs": same_shape,
    "dropout": same_shape,
    "bn": bn,
    "lrn": lrn,
    "add": add,
    "concat": concat,
    "mul": mul,
    "mean": mean,
    "sub": sub,
}

# the layers that move, cut, resize or regroup a tensor, the locally connected layer, and
# avgpool's count_pad (rules_shape.py uses the helpers above, hence the import at the end)
from netdsl import rules_shape  # noqa: E402

RULES.update(rules_shape.RULES)
