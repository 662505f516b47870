"""Window arithmetic along one spatial axis: output sizes, explicit pads, receptive fields.

Used by the shape rules (`rules.py`) and by `shapes.py`; nothing else computes geometry. Every
function works on one axis, so a layer with any number of spatial axes (1-D, 2-D, 3-D) applies
it per axis, tinygrad-style: kernels, strides, dilations and pads are tuples with one entry per
axis, pads in ONNX order (all begins, then all ends).

The receptive field is the exact set of input positions one output position can see, on an
input large enough that no border is reached (the textbook convention). Along one axis it is
kept as a `Reach`: output `o = q*period + r` sees input positions `lo[r] + q*step` to
`hi[r] + q*step`. Sliding windows keep the period at 1 (`lo = o*jump + c`); a transposed
convolution with stride s splits it into s phases, because neighbouring outputs see different
numbers of inputs: output u of `deconv(k, s)` is fed by the inputs i with 0 <= u - s*i <= k' - 1,
that is at most floor((k' - 1)/s) + 1 consecutive inputs, not the (k' - 1)/s + 1 of the sliding
formula (`conv1x5/4 -> deconv1x8/4` sees 5 + 1*4 = 9 pixels, not 12).

Exactness has a price that a hostile file could raise without bound (stacked transposed
convolutions multiply the periods; a huge kernel multiplies the work per phase), so past
`MAX_PERIOD` phases or `WORK` window taps a reach is replaced by its `envelope`: one period that
holds every phase. The field is then bounded from above, never under-reported, and the work stays
small whatever the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

Num = int | Fraction  # a step is a fraction only after global pooling of an odd-sized map

MAX_PERIOD = 4096  # phases kept exactly
WORK = 200_000  # window taps (or map positions) visited for one layer, at most


@dataclass(frozen=True, slots=True)
class Slide:
    """One axis of a sliding or transposed window: the output size, the explicit pads, the
    smallest input that gives one output, the unused tail, and what the formula shown in
    messages is made of (written only when a message needs it)."""

    size: int
    begin: int
    end: int
    need: int
    dropped: int
    kind: str  # "floor" | "ceil" | "transposed"
    n: int
    k: int
    s: int
    d: int
    padding: int  # begin + end, as written (before ceil mode's growth)
    extra: int = 0  # output_padding
    value: int = 0  # the formula's value (the size before clamping at 0)

    @property
    def formula(self) -> str:
        keff = effective(self.k, self.d)
        k = f"{keff}" if self.d == 1 else f"{keff} (k'=d(k-1)+1 with k={self.k}, d={self.d})"
        if self.kind == "transposed":
            return f"{self.s}*({self.n} - 1) + {k} - {self.padding} + {self.extra} = {self.value}"
        return f"{self.kind}(({self.n} + {self.padding} - {k})/{self.s}) + 1 = {self.value}"


def effective(k: int, d: int) -> int:
    """The dilated kernel's extent: k' = d(k - 1) + 1."""
    return d * (k - 1) + 1


def _pads(pads: tuple[int, int] | str) -> tuple[int, int]:
    return (0, 0) if isinstance(pads, str) else pads  # `valid`; `same` is decided by the caller


def slide(n: int, k: int, s: int, d: int, pads: tuple[int, int] | str, ceil: bool) -> Slide:
    """A convolution or pooling window along an axis of n positions. `pads` is (begin, end),
    `same` (ceil(n/s) outputs, the odd pixel of padding at the end) or `valid`. In ceil mode
    the end pad grows until the last window fits, and the returned `end` includes that growth
    (what ONNX, PyTorch and every emitter need), but the last window must start inside the input
    or its begin padding."""
    keff = effective(k, d)
    if pads == "same":
        total = max((-(-n // s) - 1) * s + keff - n, 0)
        pb, pe = total // 2, total - total // 2
    else:
        pb, pe = _pads(pads)
    span = n + pb + pe - keff
    if ceil:
        m = -(-span // s) + 1
        if m > 0 and (m - 1) * s >= n + pb:  # the last window must start inside
            m -= 1
        need = keff - pb - pe - s + 1  # ceil(span/s) + 1 >= 1 iff span > -s
        end = max(pe, (m - 1) * s + keff - n - pb) if m > 0 else pe
        return Slide(max(m, 0), pb, end, need, 0, "ceil", n, k, s, d, pb + pe, value=m)
    m = span // s + 1 if span >= 0 else 0
    dropped = max(span % s - pe, 0) if span >= 0 and pads != "same" else 0
    return Slide(m, pb, pe, keff - pb - pe, dropped, "floor", n, k, s, d, pb + pe, value=m)


def transposed(n: int, k: int, s: int, d: int, pads: tuple[int, int] | str, extra: int) -> Slide:
    """A transposed convolution along an axis: s(n - 1) + k' - P + output_padding outputs;
    `same` gives n*s."""
    keff = effective(k, d)
    if pads == "same":
        total = s * (n - 1) + keff + extra - n * s
        pb, pe = total // 2, total - total // 2
    else:
        pb, pe = _pads(pads)
    m = s * (n - 1) + keff - pb - pe + extra
    # s(N - 1) + k' - P + op >= 1  <=>  N >= 1 + ceil((P + 1 - k' - op)/s)
    need = 1 + -(-(pb + pe + 1 - keff - extra) // s)
    return Slide(m, pb, pe, need, 0, "transposed", n, k, s, d, pb + pe, extra, m)


# ---- receptive fields ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reach:
    """What the outputs along one axis see of the input (see the module's docstring). A phase
    that sees nothing (between the taps of a transposed convolution whose stride exceeds its
    kernel) has lo > hi."""

    period: int
    step: Num
    lo: tuple[Num, ...]
    hi: tuple[Num, ...]
    size: int = field(init=False, repr=False, compare=False)  # input positions seen, at most

    def __post_init__(self) -> None:
        extents = (math.ceil(h - lo) + 1 for lo, h in zip(self.lo, self.hi, strict=True))
        object.__setattr__(self, "size", max(extents, default=1))

    def at(self, o: int) -> tuple[Num, Num]:
        """The first and last input position output `o` sees (lo > hi: none)."""
        q, r = divmod(o, self.period)
        return self.lo[r] + q * self.step, self.hi[r] + q * self.step

    @property
    def stride(self) -> Fraction:
        return Fraction(self.step) / self.period

    def union(self, other: Reach, n: int = 1) -> Reach:
        """Both reaches together (a merge of paths) over a map of n outputs: exact where they
        advance at the same rate, as paths into an add or a concat do. Paths that advance at
        different rates (a broadcast gate; or unusual padding that gives two strides the same
        output size) are not periodic together: the wider reach is widened until it holds both
        at each of the n outputs."""
        if self == other:
            return self
        if self.step * other.period != other.step * self.period:  # different strides
            if n * max(self.period, other.period) > WORK:
                a, b = envelope(self), envelope(other)  # linear in o: its ends decide
                outputs: range | tuple[int, int] = (0, max(n - 1, 0))
            else:
                a, b, outputs = self, other, range(n)
            base = max(a, b, key=lambda r: (r.size, r.stride))
            low, high = list(base.lo), list(base.hi)
            for o in outputs:
                q, r = divmod(o, base.period)
                for first, last in (a.at(o), b.at(o)):
                    if first <= last:
                        empty, shift = low[r] > high[r], q * base.step
                        low[r] = first - shift if empty else min(low[r], first - shift)
                        high[r] = last - shift if empty else max(high[r], last - shift)
            return Reach(base.period, base.step, tuple(low), tuple(high))
        period = math.lcm(self.period, other.period)
        if period > MAX_PERIOD:
            return envelope(self).union(envelope(other), n)
        a, b = self.unroll(period), other.unroll(period)
        lo = tuple(min(x, y) for x, y in zip(a.lo, b.lo, strict=True))
        hi = tuple(max(x, y) for x, y in zip(a.hi, b.hi, strict=True))
        return Reach(period, a.step, lo, hi)

    def unroll(self, period: int) -> Reach:
        """The same reach written with a period that is a multiple of this one's."""
        if period == self.period:
            return self
        spans = [self.at(o) for o in range(period)]
        step = self.step * (period // self.period)
        return Reach(period, step, tuple(s[0] for s in spans), tuple(s[1] for s in spans))


POINT = Reach(1, 1, (0,), (0,))  # the input: each position sees itself


def envelope(reach: Reach) -> Reach:
    """One period that holds every phase of `reach`: output o sees at least what it saw."""
    if reach.period == 1:
        return reach
    stride = Fraction(reach.step) / reach.period
    spans = [
        (lo - r * stride, hi - r * stride)
        for r, (lo, hi) in enumerate(zip(reach.lo, reach.hi, strict=True))
        if lo <= hi
    ]
    if not spans:
        return Reach(1, _normal(stride), (0,), (-1,))
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    return Reach(1, _normal(stride), (_normal(lo),), (_normal(hi),))


def _normal(value: Num) -> Num:
    return int(value) if isinstance(value, Fraction) and value.denominator == 1 else value


def window(reach: Reach, k: int, s: int, d: int, begin: int) -> Reach:
    """A sliding window (convolution, pooling): output o reads inputs o*s - begin + t*d."""
    if reach.period > 1 and reach.period * k > WORK:
        reach = envelope(reach)
    period = reach.period // math.gcd(reach.period, s)
    step = reach.step * s * period // reach.period
    if reach.period == 1:  # the common case, in closed form
        first, last = -begin * reach.step, (effective(k, d) - 1 - begin) * reach.step
        return Reach(1, step, (reach.lo[0] + first,), (reach.hi[0] + last,))
    lo, hi = [], []
    for r in range(period):
        spans = [reach.at(r * s - begin + t * d) for t in range(k)]
        seen = [sp for sp in spans if sp[0] <= sp[1]]
        lo.append(min((sp[0] for sp in seen), default=spans[0][0]))
        hi.append(max((sp[1] for sp in seen), default=spans[0][0] - 1))
    return Reach(period, step, tuple(lo), tuple(hi))


def upsample(reach: Reach, k: int, s: int, d: int, begin: int) -> Reach:
    """A transposed convolution: output o (o + begin before cropping) is fed by the inputs i
    with o + begin - s*i in {0, d, ..., (k - 1)d}."""
    period, lo, hi = reach.period * s, [], []
    if period > MAX_PERIOD or period * k > WORK:  # inputs from (o+b-(k'-1))/s to (o+b)/s
        e, step = envelope(reach), Fraction(envelope(reach).step) / s
        first, last = e.lo[0] + (begin - effective(k, d) + 1) * step, e.hi[0] + begin * step
        return Reach(1, _normal(step), (_normal(first),), (_normal(last),))
    for r in range(period):
        u = r + begin
        feeding = [(u - t * d) // s for t in range(k) if (u - t * d) % s == 0]
        spans = [reach.at(i) for i in feeding]
        seen = [sp for sp in spans if sp[0] <= sp[1]]
        if seen:
            lo.append(min(sp[0] for sp in seen))
            hi.append(max(sp[1] for sp in seen))
        else:  # no input feeds this output: only the bias does
            lo.append(0)
            hi.append(-1)
    return Reach(period, reach.step, tuple(lo), tuple(hi))


def whole(reach: Reach, n: int) -> Reach:
    """Global pooling (or a fully connected layer) over n positions: one output that sees what
    all of them see. Its step keeps the map's extent, n times the stride."""
    if reach.period > 1 and n > WORK:
        reach = envelope(reach)
    spans = [reach.at(o) for o in range(n)] if reach.period > 1 else [reach.at(0), reach.at(n - 1)]
    seen = [sp for sp in spans if sp[0] <= sp[1]] or spans[:1]
    lo, hi = min(sp[0] for sp in seen), max(sp[1] for sp in seen)
    step = _normal(Fraction(reach.step) * n / reach.period)
    return Reach(1, step, (lo,), (hi,))
