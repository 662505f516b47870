"""Two artefacts, one input: how far apart are their outputs?

A consumer at the end of the pipeline, used by `netdsl compare A B`: each side is an ONNX model
(run by onnxruntime on a provider), a TensorRT engine (`trt.run_engine`), or a net compiled for
inference. Both get the same inputs: arrays given by input name, and seeded random ones, uniform
in [0, 1) like a scaled image, shaped as the first side's inputs with the batch asked for. Both
sides must take the same float inputs (one each of one shape, or the same names and shapes);
that is checked, and each random input's bytes against free memory, before anything runs. Every
output is compared, by position.

A trailing softmax hides differences: with random weights its output is nearly one-hot, and
two models that disagree by 1e-2 in their logits agree to 1e-26 after it. So where both ONNX
sides end in a Softmax, the tensor feeding it (the logits) is exposed as an extra output and
compared too, and it is what the verdict judges. The verdict (`Tolerance.failures`): the largest
absolute difference must stay within `atol + rtol * scale`, scale being the largest magnitude of
A's tensor, and top-1 agreement at least `agreement` where one is asked for. Without a
tolerance the default of the sides' precision applies (`default_tolerance`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import memory
from netdsl.backends.runtime.ort import MAX_PROTO
from netdsl.source import NetError


@dataclass(frozen=True, slots=True)
class Difference:
    output: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # largest absolute difference over the largest absolute reference value
    top1_agreement: float | None  # for N x classes outputs
    logits: bool = False  # the input of a trailing softmax, exposed to be compared
    scale: float = 0.0  # the largest magnitude of A's tensor

    def render(self) -> str:
        agree = (
            "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        )
        shape = "x".join(map(str, self.shape))
        what = (
            f"{self.output} (logits before the softmax, {shape})"
            if self.logits
            else (f"{self.output} ({shape})")
        )
        return f"{what}: max abs error {self.max_abs:.3e}, max rel error {self.max_rel:.3e}{agree}"

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["shape"] = list(self.shape)
        return found


# The default tolerances, relative to the scale of A's logits (or outputs), by the lower
# precision of the two sides. fp32 against fp32 differs only by the order of the sums; fp16
# keeps 11 bits; int8 quantizes every activation to 256 levels, so only the ranking is judged
# closely: top-1 agreement on most images, and a loose bound on the values.
DEFAULTS: dict[str, tuple[float, float, float | None]] = {  # precision: atol, rtol, agreement
    "fp32": (0.0, 1e-3, None),
    "fp16": (0.0, 1e-2, None),
    "int8": (0.0, 0.25, 0.5),
}
RANK = ("fp32", "fp16", "int8")
PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Cast", "Identity")  # after a softmax


@dataclass(frozen=True, slots=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0
    agreement: float | None = None  # the least fraction of images whose top-1 class agrees
    default: str | None = None  # the precision whose default this is; None: given

    def failures(self, found: Sequence[Difference]) -> list[str]:
        """What exceeds the tolerance: the logits where both sides have them, else every
        output; empty when the two sides agree."""
        judged = [d for d in found if d.logits] or list(found)
        out = []
        for d in judged:
            limit = self.atol + self.rtol * d.scale
            if not d.max_abs <= limit:  # NaN fails too
                out.append(
                    f"{d.output}: max abs error {d.max_abs:.3e} > {limit:.3e} "
                    f"(atol {self.atol:g} + rtol {self.rtol:g} x scale {d.scale:.3e})"
                )
            agree = d.top1_agreement
            if self.agreement is not None and agree is not None and agree < self.agreement:
                out.append(f"{d.output}: top-1 agreement {agree:.1%} < {self.agreement:.1%}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_tolerance(precisions: Sequence[str]) -> Tolerance:
    """The tolerance for two sides of these precisions (fp32, fp16, int8): the lower one's."""
    worst = max((p if p in RANK else "fp16" for p in precisions), key=RANK.index)
    atol, rtol, agreement = DEFAULTS[worst]
    return Tolerance(atol, rtol, agreement, worst)


def precision_of(side: Any) -> str:
    """fp32, fp16 or int8, from a compiled model's metadata; an engine counts as fp16 (its
    precision is not recorded), a model without the entry as fp32."""
    if _is_engine(side):
        return "fp16"
    proto = side if hasattr(side, "graph") else None
    if proto is None:
        from netdsl.backends.runtime import ort

        proto = ort.read_model(side)
    meta = {p.key: p.value for p in proto.metadata_props}
    word = meta.get("precision", "fp32").split()[0]
    return word if word in RANK else "fp32"


def differences(
    a: list[np.ndarray], b: list[np.ndarray], names: list[str], logits: Sequence[str] = ()
) -> list[Difference]:
    if len(a) != len(b):
        raise NetError(f"the two artefacts have {len(a)} and {len(b)} outputs")
    found = []
    for name, x, y in zip(names, a, b, strict=True):
        if x.shape != y.shape:
            raise NetError(f"output {name}: shapes differ, {x.shape} and {y.shape}")
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        diff = float(np.abs(x64 - y64).max()) if x.size else 0.0
        scale = float(np.abs(x64).max()) if x.size else 0.0
        agree = float((x.argmax(1) == y.argmax(1)).mean()) if x.ndim == 2 and x.size else None
        rel = diff / scale if scale else diff
        found.append(Difference(name, tuple(x.shape), diff, rel, agree, name in logits, scale))
    return found


def with_logits(side: Any) -> tuple[Any, str | None]:
    """The side with the input of its trailing Softmax as an extra output, and that tensor's
    name; an engine, a model without a final Softmax, or one too large to rewrite, unchanged."""
    import onnx

    if _is_engine(side):
        return side, None
    if hasattr(side, "graph"):
        proto = onnx.ModelProto()
        proto.CopyFrom(side)
    else:
        from netdsl.backends.runtime import ort

        proto = ort.read_model(side, data=True)
        if proto.ByteSize() >= MAX_PROTO:
            return side, None
    outputs = [o.name for o in proto.graph.output]
    made = {out: n for n in proto.graph.node for out in n.output}
    node = made.get(outputs[0]) if len(outputs) == 1 else None
    while node is not None and node.op_type in PASS_THROUGH:  # int8's Q/DQ, fp16's Cast
        node = made.get(node.input[0])
    if node is None or node.op_type != "Softmax" or node.input[0] in outputs:
        return side, None
    name = node.input[0]
    proto.graph.output.append(onnx.ValueInfoProto(name=name))  # its type is inferred
    return proto, name


def _is_engine(side: Any) -> bool:
    return isinstance(side, (str, Path)) and Path(side).suffix.lower() == ".engine"


def image_shape(side: Any, provider: str) -> tuple[int, ...]:
    """The input shape of a side of one input, without the batch; fixed sizes only."""
    shapes = input_shapes(side, provider)
    if len(shapes) != 1:
        raise NetError(f"the model takes {len(shapes)} inputs ({', '.join(shapes)})")
    return next(iter(shapes.values()))


def input_shapes(side: Any, provider: str) -> dict[str, tuple[int, ...]]:
    """Every input of one side by name, its shape without the batch; fixed sizes only."""
    if _is_engine(side):
        from netdsl.backends.tensorrt.engine import engine_input_shape

        return {"input": engine_input_shape(side)}
    from netdsl.backends.runtime import ort

    found = {}
    for name, shape in ort.input_shapes(ort.session(side, provider=provider)).items():
        rest = [d for d in shape[1:] if isinstance(d, int)]
        if not shape or len(rest) != len(shape) - 1:
            raise NetError(
                f"compare needs models with a fixed input size besides the batch, got "
                f"{'x'.join(map(str, shape)) or 'a scalar'} for {name}"
            )
        found[name] = tuple(rest)
    return found


def _listed(shapes: Mapping[str, tuple[int, ...]]) -> str:
    count = f"{len(shapes)} input{'s' if len(shapes) != 1 else ''}"
    return f"{count} ({', '.join(f'{n} {_dims(s)}' for n, s in shapes.items())})"


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def feeds_for(
    a: Any,
    b: Any,
    providers: Sequence[str],
    batch: int,
    seed: int = 0,
    given: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """What both sides are fed, by the first side's input names: the `given` arrays (a batch
    each, or one sample), seeded random ones of `batch` samples, uniform in [0, 1), for the
    rest (input k from seed + k). Both sides must take the same inputs: one each of one shape
    (their names may differ), or the same names and shapes."""
    if batch < 1:
        raise NetError(f"the batch must hold at least one image, not {batch}")
    one, two = (input_shapes(side, p) for side, p in zip((a, b), providers, strict=True))
    same = list(one.values()) == list(two.values()) and (len(one) == 1 or one == two)
    if not same:
        if len(one) == len(two) == 1:
            raise NetError(
                "the two artefacts take different inputs: "
                f"{_dims(next(iter(one.values())))} and {_dims(next(iter(two.values())))}"
            )
        raise NetError(
            f"the two artefacts take different inputs: A takes {_listed(one)}, "
            f"B takes {_listed(two)}"
        )
    given = dict(given or {})
    unknown = [n for n in given if n not in one]
    if unknown:
        raise NetError(f"no input '{unknown[0]}' to feed: the models take {_listed(one)}")
    feeds: dict[str, np.ndarray] = {}
    for name, array in given.items():
        x = np.asarray(array)
        x = x[None] if x.ndim == len(one[name]) else x
        if x.dtype.kind != "f" or tuple(x.shape[1:]) != one[name]:
            raise NetError(
                f"input {name}: expected float values of shape N x {_dims(one[name])}, "
                f"got {x.dtype} {_dims(np.asarray(array).shape)}"
            )
        feeds[name] = np.ascontiguousarray(x, dtype=np.float32)
    sizes = {len(x) for x in feeds.values()}
    if len(sizes) > 1:
        raise NetError(f"the given inputs hold different batches: {sorted(sizes)}")
    n = sizes.pop() if sizes else batch
    for k, (name, sample) in enumerate(one.items()):
        if name not in feeds:
            shape = (n, *sample)
            memory.check_fits(shape, f"a random input of {_dims(shape)} floats")
            feeds[name] = np.random.default_rng(seed + k).random(shape, dtype=np.float32)
    return {name: feeds[name] for name in one}


def compare(
    a: Any,
    b: Any,
    providers: Sequence[str],
    batch: int,
    seed: int = 0,
    given: Mapping[str, np.ndarray] | None = None,
) -> tuple[list[Difference], tuple[int, ...]]:
    """Run both sides on the same inputs (`feeds_for`: `given` arrays by input name, seeded
    random ones of `batch` samples for the others); the differences of all their outputs and
    the first input's shape."""
    found, shapes = compare_inputs(a, b, providers, batch, seed, given)
    return found, next(iter(shapes.values()))


def compare_inputs(
    a: Any,
    b: Any,
    providers: Sequence[str],
    batch: int,
    seed: int = 0,
    given: Mapping[str, np.ndarray] | None = None,
) -> tuple[list[Difference], dict[str, tuple[int, ...]]]:
    """`compare`, with the shape of every input fed, by name."""
    feeds = feeds_for(a, b, providers, batch, seed, given)
    (a2, name_a), (b2, name_b) = with_logits(a), with_logits(b)
    if name_a is None or name_b is None:  # logits on one side only: outputs alone
        a2, b2, name_a = a, b, None
    out_a, names = run_side(a2, providers[0], feeds)
    out_b, names_b = run_side(b2, providers[1], feeds)
    if name_a is not None:  # the two logits may carry other names: pair them as the last output
        names = [*names[:-1], name_a]
        if names_b[-1] != name_b:
            raise NetError(f"the logits of the second side ({name_b}) did not come back")
    found = differences(out_a, out_b, names, () if name_a is None else (name_a,))
    return found, {name: tuple(x.shape) for name, x in feeds.items()}


def run_side(
    side: Any, provider: str, x: np.ndarray | Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], list[str]]:
    """Outputs of one side on `x` (an array for a side of one input, or the arrays by input
    name; a side of one input takes the only one whatever its name): an engine path, or an
    ONNX model (path or ModelProto)."""
    feeds = dict(x) if isinstance(x, Mapping) else {"input": x}
    if _is_engine(side):
        from netdsl.backends.tensorrt.engine import run_engine

        if len(feeds) != 1:
            raise NetError(f"an engine takes one input, not {len(feeds)}")
        return [run_engine(side, next(iter(feeds.values())))], ["output"]
    from netdsl.backends.runtime import ort

    sess = ort.session(side, provider=provider)
    wanted = list(ort.input_shapes(sess))
    if len(wanted) == 1 and len(feeds) == 1:
        feeds = {wanted[0]: next(iter(feeds.values()))}
    if set(feeds) != set(wanted):
        raise NetError(f"the model takes {', '.join(wanted)}; given {', '.join(feeds)}")
    names = [o.name for o in sess.get_outputs()]
    if len(wanted) == 1:
        feeds[wanted[0]] = ort.check_input(sess, feeds[wanted[0]])
    try:
        outputs = sess.run(names, feeds)
    except Exception as error:  # onnxruntime's own failures (a node that cannot run)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NetError(f"onnxruntime failed to run the model: {first}") from None
    return [np.asarray(y) for y in outputs], names


def check_inputs_fit(model: Any, batches: Sequence[int]) -> None:
    """Refuse batch sizes whose random input would not fit in memory, before any is made."""
    from netdsl.backends.runtime import ort

    if not batches:
        return
    proto = model if hasattr(model, "graph") else ort.read_model(model)
    if not proto.graph.input:
        raise NetError("the model has no input")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    if not shape:
        raise NetError("the model's input is a scalar; netdsl feeds a batch of images")
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    largest = max(batches)
    memory.check_fits(
        (largest, *fixed), f"a batch of {largest:,} inputs of {'x'.join(map(str, shape[1:]))}"
    )
