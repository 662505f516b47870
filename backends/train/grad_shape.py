"""Gradient rules of the ONNX ops that move, cut, resize or multiply tensors (the layers of
`netdsl/rules_shape.py`): entries of `grad.GRADIENTS`.

Same contract as `grad.py`: a rule gets the output gradients and returns one gradient per input
in standard ONNX. Pad and Resize act on each spatial axis by a fixed linear map y = A x (A is
out x in, built here from the forward node's static sizes and attributes), so their input
gradient is A^T dy along that axis: one MatMul with the constant A per axis, which is exact for
constant and reflect padding, nearest and (half-pixel) linear resizing alike. A Slice's
gradient pads dy back with zeros; ReduceMax sends dy to every input equal to the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto

from netdsl.backends.train.reverse import Grad, Out, attr, first

Node = onnx.NodeProto


def transpose(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    perm = list(attr(node, "perm"))
    inverse = [perm.index(i) for i in range(len(perm))]
    return [g.add("Transpose", [first(dys)], perm=inverse)]


def _swap_last(g: Grad, x: str) -> str:
    rank = len(g.shape(x))
    return g.add("Transpose", [x], perm=[*range(rank - 2), rank - 1, rank - 2])


def matmul(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """Y = A B (batched, both at least 2-D): dA = dY B^T, dB = A^T dY, each summed over the
    batch axes it was broadcast along."""
    dy, out = first(dys), g.shape(node.output[0])
    a, b = node.input
    result: Out = [None, None]
    if want[0]:
        da = g.add("MatMul", [dy, _swap_last(g, b)])
        result[0] = g.unbroadcast(da, (*out[:-2], *g.shape(a)[-2:]), a)
    if want[1]:
        db = g.add("MatMul", [_swap_last(g, a), dy])
        result[1] = g.unbroadcast(db, (*out[:-2], *g.shape(b)[-2:]), b)
    return result


def slice_(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """Slice with constant starts, ends, axes and unit steps: dy padded back with zeros."""
    x = node.input[0]
    shape = g.shape(x)
    starts, ends = (list(g.consts[name]) for name in node.input[1:3])
    rank = len(shape)
    axes = list(g.consts[node.input[3]]) if len(node.input) > 3 else list(range(len(starts)))
    steps = list(g.consts[node.input[4]]) if len(node.input) > 4 else [1] * len(starts)
    assert all(s == 1 for s in steps), "slices with steps other than 1 are not emitted"
    pads = [0] * (2 * rank)
    for axis, begin, end in zip(axes, starts, ends, strict=True):
        axis = int(axis) % rank
        n = shape[axis]
        assert isinstance(n, int), "a slice along the batch axis is not emitted"
        begin, end = (min(max(int(v) + n if v < 0 else int(v), 0), n) for v in (begin, end))
        pads[axis], pads[axis + rank] = begin, n - end
    return [g.add("Pad", [first(dys), g.ints(*pads)]), *([None] * (len(node.input) - 1))]


def _along(g: Grad, dy: str, axis: int, rank: int, matrix: np.ndarray) -> str:
    """dy (with `axis` of length out) times the constant `matrix` [out, in] along `axis`."""
    if axis == rank - 1:
        return g.add("MatMul", [dy, g.const(matrix)])
    perm = [*range(axis), *range(axis + 1, rank), axis]  # the axis last
    moved = g.add("MatMul", [g.add("Transpose", [dy], perm=perm), g.const(matrix)])
    return g.add("Transpose", [moved], perm=[perm.index(i) for i in range(rank)])


def pad_matrix(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """A [n + begin + end, n]: which inputs each padded position copies."""
    a = np.zeros((n + begin + end, n), dtype=np.float32)
    for o in range(n + begin + end):
        i = o - begin
        if mode == "reflect":
            i = -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
        if 0 <= i < n:
            a[o, i] = 1.0
    return a


def pad(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    x, dy = node.input[0], first(dys)
    shape, mode = g.shape(x), attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = [int(p) for p in g.consts[node.input[1]]]
    rank = len(shape)
    for axis in range(rank):
        begin, end = pads[axis], pads[axis + rank]
        if begin or end:
            n = shape[axis]
            assert isinstance(n, int), "padding along the batch axis is not emitted"
            dy = _along(g, dy, axis, rank, pad_matrix(n, begin, end, mode))
    return [dy, *([None] * (len(node.input) - 1))]


def resize_matrix(n: int, scale: float, mode: str) -> np.ndarray:
    """A [n * scale, n] of ONNX Resize along one axis: nearest with asymmetric coordinates and
    floor (PyTorch's nearest), or linear with half-pixel coordinates (PyTorch's
    align_corners=False): source (o + 0.5) / scale - 0.5, clamped at the edges."""
    out = round(n * scale)
    a = np.zeros((out, n), dtype=np.float32)
    for o in range(out):
        if mode == "nearest":
            a[o, min(int(np.floor(o / scale)), n - 1)] = 1.0
            continue
        src = min(max((o + 0.5) / scale - 0.5, 0.0), n - 1.0)
        low = int(np.floor(src))
        high, w = min(low + 1, n - 1), src - low
        a[o, low] += 1.0 - w
        a[o, high] += w
    return a


def resize(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    x, dy = node.input[0], first(dys)
    shape, scales = g.shape(x), [float(s) for s in g.consts[node.input[2]]]
    mode = attr(node, "mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    rank = len(shape)
    for axis, scale in enumerate(scales):
        if scale != 1.0:
            n = shape[axis]
            assert isinstance(n, int), "resizing along the batch axis is not emitted"
            dy = _along(g, dy, axis, rank, resize_matrix(n, scale, mode))
    return [dy, *([None] * (len(node.input) - 1))]


def reduce_max(g: Grad, node: Node, dys: Out, want: list[bool]) -> Out:
    """dy goes to every input equal to its maximum (ties share it whole; PyTorch picks one)."""
    x, y, dy = node.input[0], node.output[0], first(dys)
    if not attr(node, "keepdims", 1):
        rank = len(g.shape(x))
        axes: Sequence[int] = attr(node, "axes") or list(range(rank))
        dy = g.add("Unsqueeze", [dy, g.ints(*sorted(int(a) % rank for a in axes))])
        y = g.add("Unsqueeze", [y, g.ints(*sorted(int(a) % rank for a in axes))])
    mask = g.add("Cast", [g.add("Equal", [x, y])], to=TensorProto.FLOAT)
    return [g.add("Mul", [mask, dy])]


RULES = {
    "MatMul": matmul,
    "Pad": pad,
    "ReduceMax": reduce_max,
    "Resize": resize,
    "Slice": slice_,
    "Transpose": transpose,
}
