"""Shape rules of the layers that move, cut, resize or regroup a tensor, and of the locally
connected layer: merged into `rules.RULES` (this module is imported by `rules.py`, never alone).

Same contract as `rules.py`: a rule takes the layer's attributes and input shapes and returns
the output shape, the resolved attributes a backend needs (crop offsets, pads per side, the
bins of an adaptive pool), the weights, the multiply-adds and the receptive-field window, or
raises `ShapeError` with the formula and its numbers. Shapes exclude the batch axis; axes in
attributes (`softmax(axis=...)`, `transpose`) are numbered as in PyTorch, the batch being 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from netdsl.rules import Ctx, Out, ShapeError, Weight, Window, _axes, _spatial, dims, pool


def _per_axis(ctx: Ctx, name: str, values: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """One value for every spatial axis, or one per axis."""
    if len(values) == 1:
        return values * rank
    if len(values) != rank:
        raise ShapeError(
            f"{ctx.written}: {name} gives {len(values)} sizes for an input with {rank} "
            f"spatial axes ({dims(ctx.inputs[0])})"
        )
    return values


def _mixed(shape: tuple[int, ...]) -> Window | None:
    """A reshape or transpose mixes positions: every output may depend on the whole input."""
    return Window("global") if len(shape) > 1 else None


def local(ctx: Ctx) -> Out:
    """Locally connected (DeepFace's L4-L6): a convolution whose weights differ at every output
    position. Weights [positions, c_in*k*k, c_out] (one c_in*k*k -> c_out map per position)
    and, as DeepFace counts them, a bias per output unit [c_out, *output sizes]."""
    c_in, sizes = _spatial(ctx)
    a = ctx.attrs
    outs, pads, warnings = _axes(ctx, sizes)
    positions, fan_in = math.prod(outs), c_in * math.prod(a["k"])
    weights: tuple[Weight, ...] = (Weight("weight", (positions, fan_in, a["c"])),)
    weights += (Weight("bias", (a["c"], *outs)),) if a["bias"] else ()
    attrs = {"c": a["c"], "k": a["k"], "s": a["s"], "pads": pads, "bias": a["bias"]}
    rank = len(sizes)
    window = Window("window", a["k"], a["s"], (1,) * rank, pads[:rank])
    macs = positions * fan_in * a["c"]
    return Out((a["c"], *outs), attrs, weights, macs, window, warnings=tuple(warnings))


def softmax(ctx: Ctx) -> Out:
    shape, axis = ctx.inputs[0], ctx.attrs["axis"]
    rank = len(shape) + 1  # with the batch
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{ctx.written}: axis {axis} is outside the {rank} axes of N{'x'}{dims(shape)} "
            f"(0 is the batch, 1 the channels)"
        )
    if axis % rank == 0:
        raise ShapeError(f"{ctx.written}: a softmax over the batch axis (0) mixes examples")
    return Out(shape, {"axis": axis % rank})


def reshape(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    given = [ctx.attrs[f"n{i}"] for i in range(1, 5)]
    want = [n for n in given if n is not None]
    total = math.prod(shape)
    written = ctx.written
    if not want or given[: len(want)] != want:
        raise ShapeError(f"{ctx.written}: give the sizes of axes 1, 2, ... in order")
    if want.count(-1) > 1:
        raise ShapeError(f"{written}: only one size may be -1 (the rest of {total} values)")
    known = math.prod(n for n in want if n != -1)
    if -1 in want:
        if total % known:
            raise ShapeError(
                f"{written} of {dims(shape)}: {total} values do not divide into "
                f"{known} x -1 ({total} / {known} = {total / known:g})"
            )
        want = [total // known if n == -1 else n for n in want]
    elif known != total:
        raise ShapeError(
            f"{written} holds {known} values, but its input {dims(shape)} holds {total}"
        )
    return Out(tuple(want), {"shape": tuple(want)}, window=_mixed(shape))


def transpose(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    perm = [ctx.attrs[f"a{i}"] for i in range(1, 5) if ctx.attrs[f"a{i}"] is not None]
    if sorted(perm) != list(range(1, len(shape) + 1)):
        axes = ", ".join(map(str, range(1, len(shape) + 1)))
        raise ShapeError(
            f"{ctx.written}: give each of the axes {axes} of "
            f"{dims(shape)} once (the batch, axis 0, stays first)"
        )
    window = None if perm == sorted(perm) else _mixed(shape)
    return Out(tuple(shape[p - 1] for p in perm), {"perm": (0, *perm)}, window=window)


def upsample(ctx: Ctx) -> Out:
    c, sizes = _spatial(ctx)
    f = _per_axis(ctx, "f", ctx.attrs["f"], len(sizes))
    mode = "nearest" if ctx.attrs["mode"] == "nearest" else "linear"
    rank = len(sizes)
    window = Window("up", f, f, (1,) * rank, (0,) * rank)
    outs = tuple(n * k for n, k in zip(sizes, f, strict=True))
    return Out((c, *outs), {"f": f, "mode": mode}, window=window)


def upsample_to(have: tuple[int, ...], target: tuple[int, ...]) -> dict[str, object]:
    """The attributes of `upsample` that bring `have` to the spatial sizes of `target` (for
    `upsample(to=name)`): an integer factor per axis, or ShapeError."""
    if len(have) != len(target):
        raise ShapeError(f"upsample: cannot bring {dims(have)} to {dims(target)}: ranks differ")
    f = tuple(t // n for n, t in zip(have[1:], target[1:], strict=True))
    if any(n * k != t for n, k, t in zip(have[1:], f, target[1:], strict=True)):
        raise ShapeError(
            f"upsample: {dims(target[1:])} is not an integer multiple of {dims(have[1:])}"
        )
    return {"f": f}


def crop(ctx: Ctx) -> Out:
    """Centre crop: the first kept index of an axis is floor((N - M) / 2)."""
    c, sizes = _spatial(ctx)
    size = _per_axis(ctx, "size", ctx.attrs["size"], len(sizes))
    if any(m > n for n, m in zip(sizes, size, strict=True)):
        raise ShapeError(
            f"{ctx.written}: cannot crop {dims(sizes)} to {dims(size)}: the crop is larger"
        )
    begin = tuple((n - m) // 2 for n, m in zip(sizes, size, strict=True))
    rank = len(sizes)
    window = Window("window", (1,) * rank, (1,) * rank, (1,) * rank, tuple(-b for b in begin))
    return Out((c, *size), {"begin": begin, "size": size}, window=window)


def crop_to(have: tuple[int, ...], target: tuple[int, ...]) -> dict[str, object]:
    """The attributes of `crop` that cut `have` to the spatial sizes of `target` (a U-Net skip:
    `crop(to=name)`)."""
    if len(have) != len(target):
        raise ShapeError(f"crop: cannot crop {dims(have)} to {dims(target)}: ranks differ")
    return {"size": tuple(target[1:])}


def pad(ctx: Ctx) -> Out:
    c, sizes = _spatial(ctx)
    rank, p = len(sizes), ctx.attrs["pads"]
    if len(p) in (1, rank):
        p = _per_axis(ctx, "pads", p, rank) * 2
    elif len(p) != 2 * rank:
        raise ShapeError(
            f"{ctx.written}: pads takes 1, {rank} or {2 * rank} (every begin, then every end) "
            f"values for {dims(sizes)}, got {len(p)}"
        )
    if ctx.attrs["mode"] == "reflect":
        for axis, n in enumerate(sizes):
            if max(p[axis], p[axis + rank]) >= n:
                raise ShapeError(
                    f"{ctx.written}: reflect padding {max(p[axis], p[axis + rank])} must be "
                    f"smaller than the input size {n}"
                )
    outs = tuple(n + p[i] + p[i + rank] for i, n in enumerate(sizes))
    attrs = {"pads": p, "mode": ctx.attrs["mode"], "value": ctx.attrs["value"]}
    window = Window("window", (1,) * rank, (1,) * rank, (1,) * rank, p[:rank])
    return Out((c, *outs), attrs, window=window)


def channels(ctx: Ctx) -> Out:
    shape, a = ctx.inputs[0], ctx.attrs
    if not a["start"] < a["end"] <= shape[0]:
        raise ShapeError(
            f"{ctx.written}: channels [start, end) need "
            f"0 <= start < end <= {shape[0]} (the input's channels)"
        )
    return Out((a["end"] - a["start"], *shape[1:]), {"start": a["start"], "end": a["end"]})


def bins(n: int, m: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive pooling bins: [floor(i*N/M), ceil((i+1)*N/M)) for i < M."""
    return tuple((i * n // m, -(-(i + 1) * n // m)) for i in range(m))


MAX_BINS = 1024  # uneven adaptive bins per axis: each is a node of its own in ONNX


def adaptive_pool(ctx: Ctx) -> Out:
    """Adaptive pooling to a given output size (PyTorch's bins; a larger size repeats
    positions). Uneven bins are emitted one by one, so at most MAX_BINS of them per axis, and
    they are listed only after that check (a size of 2^31 - 1 would list gigabytes)."""
    c, sizes = _spatial(ctx)
    size = _per_axis(ctx, "size", ctx.attrs["size"], len(sizes))
    uneven = [n for n, m in zip(sizes, size, strict=True) if n % m]
    for n, m in zip(sizes, size, strict=True):
        if uneven and m > MAX_BINS:
            raise ShapeError(
                f"{ctx.written}: {m:,} bins from {n:,} positions where the bins are uneven, "
                f"more than the {MAX_BINS:,} netdsl emits one by one",
                [f"choose sizes that divide the input's, or at most {MAX_BINS:,}"],
            )
    if uneven:  # the bins of every axis (the emitter slices each one)
        edges = tuple(bins(n, m) for n, m in zip(sizes, size, strict=True))
        widest = tuple(max(e - b for b, e in axis) for axis in edges)
    else:  # even bins: one pooling window n/m, nothing to list
        edges = tuple(() for _ in sizes)
        widest = tuple(n // m for n, m in zip(sizes, size, strict=True))
    stride = tuple(max(1, n // m) for n, m in zip(sizes, size, strict=True))
    rank = len(sizes)
    window = Window("window", widest, stride, (1,) * rank, (0,) * rank)
    note = "uneven bins: the receptive field shown is the widest bin's" if uneven else ""
    return Out((c, *size), {"size": size, "bins": edges}, window=window, note=note)


def avgpool(ctx: Ctx) -> Out:
    """Average pooling; `count_pad=true` divides by the whole window, padding included
    (Caffe's and PyTorch's count_include_pad)."""
    out = pool(ctx)
    count = bool(ctx.attrs.get("count_pad", False))
    if count and ctx.attrs["ceil"] and out.attrs["pads"] != _axes(ctx, ctx.inputs[0][1:])[1]:
        raise ShapeError(
            f"{ctx.written}: count_pad=true with ceil=true: the window past the end would "
            f"count padding that PyTorch and Caffe do not count; pad the input instead"
        )
    attrs = {**out.attrs, "count_pad": count}
    return Out(out.shape, attrs, window=out.window, warnings=out.warnings)


def gated(ctx: Ctx) -> Out:
    shape = ctx.inputs[0]
    if shape[0] % 2:
        raise ShapeError(
            f"{ctx.written} needs an even number of channels (a tanh half and a sigmoid "
            f"half), got {shape[0]}",
            ["feed it a convolution to 2c channels: conv(2*c) -> gated"],
        )
    return Out((shape[0] // 2, *shape[1:]), {})


RULES: dict[str, Callable[[Ctx], Out]] = {
    "local": local,
    "softmax": softmax,
    "reshape": reshape,
    "transpose": transpose,
    "upsample": upsample,
    "crop": crop,
    "pad": pad,
    "channels": channels,
    "adaptiveavgpool": adaptive_pool,
    "adaptivemaxpool": adaptive_pool,
    "avgpool": avgpool,
    "gated": gated,
}
