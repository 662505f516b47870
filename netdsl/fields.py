"""Receptive fields of the shaped net: what each output position of a layer sees of one input.

`shapes.py` walks the graph and asks, for each layer and each input of the net the layer
depends on, `field_on`: the union of the fields its paths bring (paths at different rates are
joined soundly, a gate of one position is broadcast), moved by the layer's window (a kernel, an
upsampling, or a global window that sees everything). The arithmetic of one axis (a `Reach`:
periodic first and last positions seen) is geometry.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from netdsl import geometry
from netdsl.geometry import Num, Reach
from netdsl.rules import Shape, Window


@dataclass(frozen=True, slots=True)
class Field:
    """A node's receptive field on one of the net's inputs, one entry per spatial axis of that
    input: what each output position sees of it (`reach`, see geometry.py) and the distance
    between neighbouring outputs in its pixels (`jump`)."""

    reach: tuple[Reach, ...]
    jump: tuple[Num, ...]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(r.size for r in self.reach)

    @property
    def stride(self) -> tuple[Fraction, ...]:
        return tuple(Fraction(j) for j in self.jump)


@dataclass(frozen=True, slots=True)
class Joined:
    """A field, and what joining its paths found: paths of different sizes met (`merged`), and
    their union is wider than each (`wider`: windows offset against each other)."""

    field: Field
    merged: bool = False
    wider: bool = False


def field_on(
    paths: list[tuple[int, Shape, Field]],
    main: int,
    main_shape: Shape,
    window: Window | None,
    shape: Shape,
) -> Joined:
    """The field on one input of a layer whose output is `shape`: `paths` are (node, its shape,
    its field on that input) for the layer's inputs that depend on it, in order; `main` is the
    layer's first input (whose shape the window moves over)."""
    first, first_shape, base = paths[0]
    if window is not None and len(main_shape) - 1 != len(base.reach):
        return Joined(base)  # after a reshape to another rank: the field (already whole) stays
    many = math.prod(shape[1:]) > 1
    if first != main and many and math.prod(first_shape[1:]) == 1:
        base = Field(tuple(_broadcast(r) for r in base.reach), (0,) * len(base.jump))
    reach, jump = base.reach, base.jump
    merged = wider = False
    for _, other_shape, other in paths[1:]:
        if other.size != paths[0][2].size:
            merged = True
        if math.prod(other_shape[1:]) == 1 and many:
            other = Field(tuple(_broadcast(r) for r in other.reach), jump)
        # the union runs over this node's outputs along each axis of the input; after a
        # change of rank (a reshape) the fields are whole and one output stands for all
        sizes = shape[1:] if len(shape) - 1 == len(reach) else (1,) * len(reach)
        joined = tuple(a.union(b, n) for a, b, n in zip(reach, other.reach, sizes, strict=True))
        pairs = zip(joined, reach, other.reach, strict=True)
        if any(u.size > max(a.size, b.size) for u, a, b in pairs):
            wider = True
        reach = joined
        jump = tuple(max(a, b) for a, b in zip(jump, other.jump, strict=True))
    return Joined(moved(Field(reach, jump), window, main_shape, shape), merged, wider)


def moved(field: Field, window: Window | None, into: Shape, shape: Shape) -> Field:
    """`field` after a layer's window, over an input of shape `into`, to an output `shape`."""
    reach, jump = field.reach, field.jump
    if window is None:
        return field
    if window.kind == "global":
        sizes = into[1:]
        wholes = [geometry.whole(r, n) for r, n in zip(reach, sizes, strict=True)]
        if len(shape) - 1 == len(reach):  # a reshape or transpose keeps many positions:
            wholes = [  # each may see all of the input, none further along than another
                replace(w, step=0) if m > 1 else w for w, m in zip(wholes, shape[1:], strict=True)
            ]
        return Field(
            tuple(wholes),
            tuple(_exact(Fraction(j) * n) for j, n in zip(jump, sizes, strict=True)),
        )
    out: list[Reach] = []
    jumps: list[Num] = []
    for axis, (r, j) in enumerate(zip(reach, jump, strict=True)):
        k, s = window.kernel[axis], window.stride[axis]
        d, begin = window.dilation[axis], window.begin[axis]
        if window.kind == "up":
            out.append(geometry.upsample(r, k, s, d, begin))
            jumps.append(_exact(Fraction(j) / s))
        else:
            out.append(geometry.window(r, k, s, d, begin))
            jumps.append(j * s)
    return Field(tuple(out), tuple(jumps))


def _broadcast(reach: Reach) -> Reach:
    """A gate of one position, seen by every output of the map it scales."""
    lo, hi = reach.at(0)
    return Reach(1, 0, (lo,), (hi,))


def _exact(value: Fraction) -> Num:
    return int(value) if value.denominator == 1 else value
