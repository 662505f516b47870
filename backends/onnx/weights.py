"""Weights for the ONNX emitter: fresh initialisation, loading from a file, batch-norm folding.

Sits between the shaped net and `backends/onnx.py`: it turns the `Weight`s of every `Node` into
numpy arrays keyed by the initializer names the emitter uses (`stage2.bottleneck1.conv2.weight`).
Each tensor draws from its own generator, seeded by the seed and its name, so the same seed gives
the same bytes and adding a layer leaves the other layers' weights as they were. A file of
weights (`.npz` keyed by tensor name, or an `.onnx` by initializer name) replaces the tensors
whose names and shapes match; what did not match is reported, never silently dropped.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from netdsl.errors import WeightsMismatch
from netdsl.rules import Weight, dims
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError

if TYPE_CHECKING:
    import onnx

INITS = ("auto", "he", "glorot", "normal")
Params = dict[str, np.ndarray]


def tensor_name(node: Node, weight: Weight) -> str:
    return f"{node.name}.{weight.name}"


def choose_init(net: ShapedNet, init: str) -> str:
    """`auto` is He for nets with a ReLU, Glorot otherwise (LeNet-5's tanh)."""
    if init not in INITS:
        raise NetError(f"unknown init '{init}' (choose one of {', '.join(INITS)})")
    if init != "auto":
        return init
    return "he" if any(n.op in ("relu", "leakyrelu") for n in net.nodes) else "glorot"


def initialise(
    net: ShapedNet,
    init: str = "auto",
    seed: int = 0,
    provided: Mapping[str, np.ndarray] | None = None,
) -> Params:
    """Fresh weights: `he` or `glorot` normal, or `normal` N(0, 0.01) as in AlexNet and VGG;
    biases 0; batch norm scale 1, bias 0, mean 0, var 1. A tensor that `provided` holds with
    the right shape is left unfilled (`np.empty`): `merge` replaces it, and drawing it first
    would be wasted time (most of the emission time of a large net)."""
    init = choose_init(net, init)
    provided = provided or {}
    params: Params = {}
    for node in net.nodes:
        for weight in node.weights:
            name = tensor_name(node, weight)
            if name in provided and tuple(provided[name].shape) == weight.shape:
                params[name] = np.empty(weight.shape, dtype=np.float32)
            else:
                params[name] = _fresh(node, weight, init, [seed, zlib.crc32(name.encode())])
    return params


def _fresh(node: Node, weight: Weight, init: str, seed: list[int]) -> np.ndarray:
    if weight.name in CONSTANTS:
        return np.full(weight.shape, CONSTANTS[weight.name], dtype=np.float32)
    fans = FANS.get(node.op)
    if fans is None or weight.name != "weight":  # a new op must say how it is initialised
        raise KeyError(f"no initialiser for {node.op}'s {weight.name}: add it to FANS")
    fan_in, fan_out = fans(node, weight.shape)
    std = {"he": math.sqrt(2.0 / fan_in), "glorot": math.sqrt(2.0 / (fan_in + fan_out))}
    rng = np.random.default_rng(seed)
    sample = rng.standard_normal(weight.shape, dtype=np.float32)
    sample *= np.float32(std.get(init, 0.01))
    return sample


def _fc_fans(node: Node, shape: tuple[int, ...]) -> tuple[float, float]:
    return shape[1], shape[0]  # weight is (n, n_in)


def _conv_fans(node: Node, shape: tuple[int, ...]) -> tuple[float, float]:
    area, groups = math.prod(shape[2:]), node.attrs["groups"]  # (c_out, c_in/groups, *k)
    return shape[1] * area, shape[0] / groups * area


def _deconv_fans(node: Node, shape: tuple[int, ...]) -> tuple[float, float]:
    area, groups = math.prod(shape[2:]), node.attrs["groups"]  # (c_in, c_out/groups, *k)
    stride = math.prod(node.attrs["s"])  # the stride spreads each input over fewer outputs
    return max(shape[0] / groups * area / stride, 1.0), shape[1] * area / stride


# Per op with a `weight` tensor: how many inputs feed one output and how many outputs one input
# feeds (He and Glorot scale by them). tests/test_op_table.py checks that every op whose rule
# gives a weight is here, so a new weighted op must decide.
def _local_fans(node: Node, shape: tuple[int, ...]) -> tuple[float, float]:
    return shape[1], shape[2]  # weight is (positions, c_in*k*k, c_out): a conv's fans


FANS = {
    "conv": _conv_fans,
    "dwconv": _conv_fans,
    "deconv": _deconv_fans,
    "fc": _fc_fans,
    "local": _local_fans,
}
# every other tensor starts at a constant: biases 0, batch norm scale 1, mean 0, var 1
CONSTANTS = {"bias": 0.0, "scale": 1.0, "mean": 0.0, "var": 1.0}


# ---- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a weights file gave: how many tensors, and which names kept fresh values."""

    source: str  # 'path' (quoted) or "the given tensors"
    loaded: int
    total: int
    fresh: tuple[str, ...]
    unused: tuple[str, ...]
    skipped: tuple[str, ...]

    def describe(self) -> str:
        text = f"loaded {self.loaded} of {self.total} tensors from {self.source}"
        for label, names in (
            ("fresh", self.fresh),
            ("shape mismatch, kept fresh", self.skipped),
            ("unused", self.unused),
        ):
            if names:
                more = f" and {len(names) - 8} more" if len(names) > 8 else ""
                text += f"; {label}: {', '.join(names[:8])}{more}"
        return text


def shapes(net: ShapedNet) -> dict[str, tuple[int, ...]]:
    """Every tensor the net has, by initializer name: what a weights file is checked against."""
    return {tensor_name(n, w): tuple(w.shape) for n in net.nodes for w in n.weights}


def check_size(net: ShapedNet) -> None:
    """Refuse a net whose float32 weights could not be allocated, before any is: over
    `limits.MAX_WEIGHT_BYTES`, or more than this machine's memory."""
    from netdsl.backends.data import limits

    need = 4 * sum(math.prod(shape) for shape in shapes(net).values())
    what = f"{net.name}'s {need // 4:,} parameters (float32)"
    limits.check(what, need, limits.MAX_WEIGHT_BYTES)
    memory = _memory()
    if memory and need > memory:
        raise NetError(
            f"{what} would take {limits.size(need)}, more than this machine's "
            f"{limits.size(memory)} of memory"
        )


def _memory() -> int:
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def read(path: str | Path, expect: Mapping[str, tuple[int, ...]] | None = None) -> Params:
    """The tensors of a `.npz` (by key) or an `.onnx` file (by initializer name).

    With `expect` (name -> shape, e.g. `shapes(net)`), only tensors of those names and shapes
    are read; each other one is a read-only placeholder of its declared shape and dtype that
    takes no memory (`np.broadcast_to`), so the file's shapes can be reported without a lying
    or foreign file making netdsl allocate what the net does not need. Without `expect`, all
    tensors are read, up to `limits.MAX_WEIGHT_BYTES` together."""
    path = Path(path)
    from netdsl.backends.onnx import state_dict  # PyTorch's .pth/.pt, read without pickle

    readers = {
        ".npz": _read_npz,
        ".onnx": _read_onnx,
        ".pth": state_dict.read,
        ".pt": state_dict.read,
    }
    suffix = path.suffix.lower()
    if suffix not in readers:
        hint = "save a dict of arrays with numpy.savez(path, **{name: array})"
        what = "a .npz, an .onnx or a PyTorch .pth/.pt file"
        raise NetError(f"weights must be {what}, got '{path}'", None, [hint])
    if not path.is_file():
        raise NetError(f"cannot read weights '{path}': No such file")
    return readers[suffix](path, expect)


def _wanted(
    expect: Mapping[str, tuple[int, ...]] | None, name: str, shape: tuple[int, ...]
) -> bool:
    return expect is None or expect.get(name) == tuple(shape)


class Unread(np.ndarray):
    """A tensor of a weights file that was not read (its name or shape fits no tensor of the
    net): the declared shape and dtype, no data (a zero-stride view of one zero)."""


def _placeholder(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of `shape` that allocates nothing: reports read its shape, never its values."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape).view(Unread)


def _read_npz(path: Path, expect: Mapping[str, tuple[int, ...]] | None) -> Params:
    from netdsl.backends.data import limits, npy

    label = f"weights '{path}'"
    declared = npy.members(path, label)
    wanted = [k for k, m in declared.items() if _wanted(expect, k, m.shape)]
    arrays = npy.load(path, wanted, limit=limits.MAX_WEIGHT_BYTES, label=label)
    return {k: arrays.get(k, _placeholder(m.shape, m.dtype)) for k, m in declared.items()}


def _read_onnx(path: Path, expect: Mapping[str, tuple[int, ...]] | None) -> Params:
    from onnx import helper, numpy_helper

    from netdsl.backends.data import limits, onnxfile

    # external data checked to stay in the model's folder; nothing read from it yet
    model, external = onnxfile.load(path, f"weights '{path}'")
    outside = {id(e.tensor): e for e in external}
    chosen = [t for t in model.graph.initializer if _wanted(expect, t.name, tuple(t.dims))]
    need = sum(limits.nbytes(t.dims, _itemsize(t)) for t in chosen)
    limits.check(f"the weights in '{path}'", need, limits.MAX_WEIGHT_BYTES)
    tensors: Params = {}
    try:
        for t in model.graph.initializer:
            if not _wanted(expect, t.name, tuple(t.dims)):
                dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
                tensors[t.name] = _placeholder(tuple(t.dims), dtype)
                continue
            if id(t) in outside:
                onnxfile.load_data(outside[id(t)])
            tensors[t.name] = numpy_helper.to_array(t)
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # dims that lie, odd types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NetError(f"cannot read weights '{path}': tensor '{t.name}': {reason}") from None
    return tensors


def _itemsize(t: onnx.TensorProto) -> int:
    from onnx import helper

    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 8  # an unknown type: counted at the widest, refused later by merge


def given(
    path: str | Path | Mapping[str, np.ndarray],
    expect: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """The tensors of a weights file (or a mapping of arrays), and how to name their origin;
    `expect` as for `read` (pass `shapes(net)`)."""
    if isinstance(path, (str, Path)):
        return read(path, expect), f"'{path}'"
    return {k: np.asanyarray(v) for k, v in path.items()}, "the given tensors"


def merge(
    fresh: Params,
    path: str | Path | Mapping[str, np.ndarray],
    *,
    skip_mismatched: bool = False,
    where: str = "",
) -> tuple[Params, Loaded]:
    """Replace fresh tensors by those of the file (or the mapping of arrays) whose names and
    shapes match."""
    given_tensors, origin = given(path, {k: tuple(v.shape) for k, v in fresh.items()})
    where = where or origin
    tensors = given_tensors
    if not fresh:
        raise NetError(f"the net has no weights to load from {where}")
    common = [name for name in fresh if name in tensors]
    wrong = [name for name in common if tuple(tensors[name].shape) != fresh[name].shape]
    if not common:
        notes = [
            f"the file has {', '.join(repr(n) for n in list(tensors)[:3]) or 'no tensors'}",
            f"the net expects {', '.join(repr(n) for n in list(fresh)[:3])}",
        ]
        raise NetError(
            f"no tensor in {where} has a name of this net's {len(fresh)} tensors", None, notes
        )
    if wrong and not skip_mismatched:
        shown = "; ".join(
            f"{n} is {dims(tensors[n].shape)} in the file, the net wants {dims(fresh[n].shape)}"
            for n in wrong[:4]
        )
        more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
        raise WeightsMismatch(
            f"{len(wrong)} tensor(s) of {where} do not fit the net: {shown}{more}",
            None,
            ["skip_mismatched=True keeps fresh weights for them (to fine-tune with a new head)"],
        )
    merged = dict(fresh)
    for name in common:
        if name in wrong:
            continue
        value = tensors[name]
        if isinstance(value, Unread):  # read with other expectations (renamed since?)
            raise NetError(
                f"{where}: tensor {name} was not read (only its shape was, for another net); "
                "pass the file itself"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise NetError(f"{where}: tensor {name} holds {value.dtype} values, not floats")
        merged[name] = value.astype(np.float32, copy=False)
    report = Loaded(
        where,
        len(common) - len(wrong),
        len(fresh),
        tuple(n for n in fresh if n not in tensors),
        tuple(n for n in tensors if n not in fresh),
        tuple(wrong),
    )
    return merged, report


def save_npz(params: Mapping[str, np.ndarray], path: str | Path) -> None:
    """The tensors as an .npz keyed by name, written atomically."""
    from netdsl.backends.data import npy

    npy.save(dict(params), Path(path))
