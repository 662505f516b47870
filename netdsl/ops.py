"""The layer vocabulary: every op's parameters, their defaults and how their values are checked.

Used by `expand.py` to turn a call like `conv3x3/2(64, bias=false)` into a layer with normalised
attributes (`k=(3, 3)`, `s=(2, 2)`, `p="same"`, ...). `every_op()` (OPS and the STRUCTURAL ops)
is the index that shape rules (`rules.py`), emitters (`netdsl.backends.onnx.emit`) and every
backend table are keyed by; tests/test_op_table.py holds them to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Value = Any  # int | float | bool | str | tuple[Value, ...]


class ArgError(Exception):
    """A value that does not fit a parameter; expand.py adds the location."""


class Symbol(str):
    """A bare word that is not a bound name: `same`, `valid`."""


def _int(value: Value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgError(f"expected an integer, got {show(value)}")
    if value < lo:
        raise ArgError(f"expected an integer >= {lo}, got {value}")
    return value


def positive(value: Value) -> int:
    return _int(value, 1)


def non_negative(value: Value) -> int:
    return _int(value, 0)


class Each(tuple[int, ...]):
    """Sizes written as one value for every spatial axis (`3`, `conv3`, `p=1`): held for two
    axes, and fitted to the rank of what flows in once shapes are known (shapes.py), so `conv3`
    is 3 wide on a 1-D signal, 3x3 on an image and 3x3x3 on a volume."""


def pair(value: Value) -> tuple[int, ...]:
    """A size per spatial axis: `3` (every axis), `(3, 5)` (height, width), `(3, 3, 3)`
    (depth, height, width) or `(9,)` (length)."""
    if isinstance(value, Each):  # a shorthand's size (`conv0`): checked like any other
        return Each(positive(v) for v in value)
    if isinstance(value, tuple):
        if not 1 <= len(value) <= 3:
            raise ArgError(
                f"expected one integer or one per axis ((length,), (height, width) or "
                f"(depth, height, width)), got {show(value)}"
            )
        return tuple(positive(v) for v in value)
    v = positive(value)
    return Each((v, v))


def pair0(value: Value) -> tuple[int, ...]:
    if isinstance(value, tuple) and 1 <= len(value) <= 3 and not isinstance(value, Each):
        return tuple(non_negative(v) for v in value)
    if isinstance(value, Each):
        return Each(non_negative(v) for v in value)
    v = non_negative(value)
    return Each((v, v))


class Sides(tuple[int, ...]):
    """Padding written as two values, `(a, b)`: (height, width) on an image, held as its four
    sides; on a signal, where one axis has two sides, it is (begin, end) (shapes.py fits it)."""


def padding(value: Value) -> str | tuple[int, ...]:
    """`same`, `valid`, `p`, `(ph, pw)`, `(top, left, bottom, right)` (ONNX pads order), or
    for a volume `(pd, ph, pw)` or its six begins and ends."""
    if isinstance(value, Each):
        return Each(non_negative(v) for v in value)
    if isinstance(value, str):
        if value in ("same", "valid"):
            return str(value)
        raise ArgError(f"padding must be same, valid or an integer, got {show(value)}")
    if isinstance(value, tuple):
        if len(value) == 2:
            h, w = (non_negative(v) for v in value)
            return Sides((h, w, h, w))
        if len(value) == 4:
            t, left, b, r = (non_negative(v) for v in value)
            return t, left, b, r
        if len(value) in (3, 6):
            pads = tuple(non_negative(v) for v in value)
            return pads * 2 if len(pads) == 3 else pads
        raise ArgError(
            f"padding takes 1, 2 (height, width), 3 (depth, height, width), 4 (top, left, "
            f"bottom, right) or 6 integers, got {len(value)}"
        )
    p = non_negative(value)
    return Each((p, p, p, p))


def boolean(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    raise ArgError(f"expected true or false, got {show(value)}")


def number(value: Value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgError(f"expected a number, got {show(value)}")
    return float(value)


def probability(value: Value) -> float:
    p = number(value)
    if not 0.0 <= p < 1.0:
        raise ArgError(f"expected a probability in [0, 1), got {show(value)}")
    return p


def positive_number(value: Value) -> float:
    v = number(value)
    if v <= 0:
        raise ArgError(f"expected a number > 0, got {show(value)}")
    return v


def show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Symbol):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


REQUIRED: Any = object()
AUTO: Any = None  # decided by the shape pass (conv bias: off when a bn follows)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    check: Callable[[Value], Any]
    default: Any = REQUIRED
    implicit: Any = REQUIRED  # a documented fallback that `check` reports when used


@dataclass(frozen=True, slots=True)
class Op:
    name: str
    params: tuple[Param, ...]
    doc: str
    kernel: bool = False  # accepts `name3x3` and `/stride` shorthands

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_CONV = (
    Param("k", pair, 3),
    Param("s", pair, 1),
    Param("p", padding, "same"),
    Param("d", pair, 1),
)
_POOL = (Param("k", pair, 2), Param("s", pair, None), Param("p", padding, "valid"))


def _op(name: str, doc: str, *params: Param, kernel: bool = False) -> Op:
    return Op(name, tuple(params), doc, kernel)


def axis(value: Value) -> int:
    """An axis numbered as in PyTorch (0 is the batch); negative counts from the end."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgError(f"expected an axis number, got {show(value)}")
    return value


def extent(value: Value) -> int:
    """A size in reshape: a positive integer, or -1 for 'whatever is left'."""
    if value == -1 and not isinstance(value, bool):
        return -1
    return positive(value)


def sizes(value: Value) -> tuple[int, ...]:
    """One positive size for every spatial axis, or one per axis: `7` or `(6, 7)`; the shape
    rule matches the count to the input's rank."""
    if isinstance(value, tuple):
        if not value:
            raise ArgError("expected at least one size")
        return tuple(positive(v) for v in value)
    return (positive(value),)


def sides(value: Value) -> tuple[int, ...]:
    """Padding: `p`, one per spatial axis, or every begin then every end (ONNX's order)."""
    if isinstance(value, tuple):
        if not value:
            raise ArgError("expected at least one padding")
        return tuple(non_negative(v) for v in value)
    return (non_negative(value),)


class Words:
    """A parameter that takes one of a few bare words (`mode=bilinear`)."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, value: Value) -> str:
        if isinstance(value, str) and value in self.choices:
            return str(value)
        raise ArgError(f"expected {' or '.join(self.choices)}, got {show(value)}")


# layers that move, cut, resize or regroup a tensor (and the locally connected layer): their
# rules are in rules_shape.py, their emitters in backends/onnx/layers_shape.py
_DIMS = tuple(Param(f"n{i}", extent, None) for i in range(1, 5))
_PERM = tuple(Param(f"a{i}", positive, None) for i in range(1, 5))
SHAPE_OPS = (
    _op(
        "local",
        "locally connected: a convolution with an unshared weight (and bias) per output position",
        Param("c", positive, implicit=64),
        Param("k", pair, 3),
        Param("s", pair, 1),
        Param("p", padding, "valid"),
        Param("bias", boolean, True),
        kernel=True,
    ),
    _op("reshape", "reshape the non-batch axes: sizes of axes 1, 2, ... (one may be -1)", *_DIMS),
    _op("transpose", "reorder the non-batch axes: the axis (1, 2, ...) each place takes", *_PERM),
    _op(
        "upsample",
        "upsample by an integer factor per spatial axis (nearest or bilinear, PyTorch's)",
        Param("f", sizes, 2),
        Param("mode", Words("nearest", "bilinear", "linear"), "nearest"),
    ),
    _op("crop", "centre crop of the spatial axes to a size", Param("size", sizes)),
    _op(
        "pad",
        "pad the spatial axes (constant or reflect)",
        Param("pads", sides, 1),
        Param("mode", Words("constant", "reflect"), "constant"),
        Param("value", number, 0.0),
    ),
    _op(
        "channels",
        "channels [start, end) of the input (end excluded, as in Python)",
        Param("start", non_negative),
        Param("end", positive),
    ),
    _op("adaptiveavgpool", "average pooling to a given output size", Param("size", sizes, 1)),
    _op("adaptivemaxpool", "max pooling to a given output size", Param("size", sizes, 1)),
    _op("gated", "WaveNet's gated unit: the 2c channels in, tanh(first c) * sigmoid(last c)"),
)


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        _op(
            "conv",
            "convolution",
            Param("c", positive, implicit=64),
            *_CONV,
            Param("groups", positive, 1),
            Param("bias", boolean, AUTO),
            kernel=True,
        ),
        _op(
            "dwconv",
            "depthwise convolution (one filter per input channel, times m)",
            *_CONV,
            Param("m", positive, 1),
            Param("bias", boolean, AUTO),
            kernel=True,
        ),
        _op(
            "sepconv",
            "separable convolution: depthwise k x k, then pointwise 1x1 to c channels",
            Param("c", positive, implicit=64),
            *_CONV,
            Param("bias", boolean, AUTO),
            kernel=True,
        ),
        _op(
            "deconv",
            "transposed convolution",
            Param("c", positive, implicit=64),
            Param("k", pair, 2),
            Param("s", pair, None),
            Param("p", padding, "valid"),
            Param("output_padding", pair0, 0),
            Param("d", pair, 1),
            Param("groups", positive, 1),
            Param("bias", boolean, AUTO),
            kernel=True,
        ),
        _op("maxpool", "max pooling", *_POOL, Param("ceil", boolean, False), kernel=True),
        _op(
            "avgpool",
            "average pooling (padding is not counted unless count_pad=true, as in Caffe)",
            *_POOL,
            Param("ceil", boolean, False),
            Param("count_pad", boolean, False),
            kernel=True,
        ),
        _op("gap", "global average pooling"),
        _op("gmp", "global max pooling"),
        _op(
            "fc",
            "fully connected (flattens a spatial input)",
            Param("n", positive, implicit=10),
            Param("bias", boolean, True),
        ),
        _op("flatten", "flatten to a vector"),
        _op("relu", "rectified linear unit"),
        _op("leakyrelu", "leaky ReLU", Param("alpha", number, 0.01)),
        _op("sigmoid", "logistic sigmoid"),
        _op("tanh", "hyperbolic tangent"),
        _op(
            "softmax",
            "softmax along one axis (numbered as in PyTorch: 0 is the batch, 1 the channels)",
            Param("axis", axis, 1),
        ),
        _op("identity", "passes its input through"),
        _op("abs", "absolute value, element by element"),
        _op(
            "bn",
            "batch normalisation",
            Param("eps", positive_number, 1e-5),
            Param("momentum", probability, 0.1),
        ),
        _op("dropout", "dropout (training only)", Param("p", probability, 0.5)),
        _op(
            "lrn",
            "local response normalisation across channels (AlexNet's k=2 by default)",
            Param("size", positive, 5),
            Param("alpha", number, 1e-4),
            Param("beta", number, 0.75),
            Param("k", number, 2.0),
        ),
        *SHAPE_OPS,
    )
}

# Ops the language writes as structure, not as calls: `res[...]` adds, `{a | b}` and
# `dense[...]` concatenate, `scale[...]` multiplies by a gate, and `[a, b] -> NAME` merges
# listed tensors (expand_graph.MERGES). With OPS they are the index of
# every op: each has a shape rule (rules.RULES, or a lowering in rules.LOWERINGS), an ONNX
# emitter, an initialisation, a training decision, an fp16 decision and a TensorRT entry;
# tests/test_op_table.py checks every one, so an op cannot be half-added.
STRUCTURAL = {
    "add": "sum of a residual block's body and shortcut, or of summed branches",
    "concat": "concatenation of branches on channels",
    "mul": "a gate broadcast over space, times its input",
    "mean": "element-wise mean of listed tensors of one shape: `[a, b] -> mean`",
    "sub": "difference a - b of two listed tensors of one shape: `[a, b] -> sub`",
}


def every_op() -> list[str]:
    """The index: every op a shaped net can hold, layers first."""
    return [*OPS, *STRUCTURAL]


ALIASES = {
    "pool": "maxpool",
    "linear": "fc",
    "batchnorm": "bn",
    "upconv": "deconv",
    "convt": "deconv",
    "gavgpool": "gap",
    "gmaxpool": "gmp",
    "lc": "local",
    "locallyconnected": "local",
    "locally_connected": "local",
    "slice": "channels",
    "adaptiveavg": "adaptiveavgpool",
    "adaptivemax": "adaptivemaxpool",
}


def refused(name: str) -> str | None:
    """Why a layer name is refused, or None (no spelling is refused at present; budget.py and
    expand.py ask)."""
    return None


_SHORTHAND = re.compile(r"^([a-z]+?)(\d+)((?:x\d+){0,2})$")


def resolve(name: str) -> tuple[Op, tuple[int, ...] | None] | None:
    """`conv3x3` -> (conv, (3, 3)); `conv3x3x3` -> (conv, (3, 3, 3)); `conv3` -> (conv, 3 on
    every axis: `Each`); `pool` -> (maxpool, None); unknown -> None."""
    if name in OPS:
        return OPS[name], None
    if name in ALIASES:
        return OPS[ALIASES[name]], None
    match = _SHORTHAND.match(name)
    if match and len(match.group(0)) < 40:  # no kernel has 30 digits; int() has limits
        base, first, rest = match.group(1), int(match.group(2)), match.group(3)
        op = OPS.get(ALIASES.get(base, base))
        if op is not None and op.kernel:
            sizes = (first, *(int(k) for k in rest.split("x")[1:]))
            return op, Each((first, first)) if len(sizes) == 1 else sizes
    return None


def known_names() -> list[str]:
    return [*OPS, *ALIASES]
