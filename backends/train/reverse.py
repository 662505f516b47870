"""Reverse-mode differentiation of an ONNX graph, node by node: the engine under `grad.py`.

Sits between the forward graph that `backends/onnx/emit.py` writes and the training step that
`step.py` assembles. `backward` walks the forward nodes from last to first and asks the rule
registered for each node's ONNX op type (`grad.GRADIENTS`) for the gradients of its inputs,
given those of its outputs; gradients that reach one tensor along several paths are summed.
Because the backward pass is derived from the very nodes the forward pass runs, the two cannot
disagree, and a net op is differentiable exactly when every ONNX op its emitter writes has a rule.
The rules build their nodes through `Grad`, which knows every forward tensor's static shape (the
batch dimension stays symbolic) and the values of the forward graph's constants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Dim = int | str
Shape = tuple[Dim, ...]


@dataclass
class Grad:
    """The backward graph being built, and what the rules may ask of the forward one."""

    shapes: dict[str, Shape]
    consts: dict[str, np.ndarray]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)  # forward tensor -> node
    prefix: str = "grad"
    count: int = 0
    _shape_of: dict[str, str] = field(default_factory=dict)
    _consts: dict[tuple[bytes, str, tuple[int, ...]], str] = field(default_factory=dict)

    def add(self, op: str, inputs: Sequence[str], outputs: int = 1, **attrs: Any) -> str:
        """Append a node; return its first output."""
        return self.add_n(op, inputs, outputs, **attrs)[0]

    def add_n(self, op: str, inputs: Sequence[str], outputs: int, **attrs: Any) -> list[str]:
        self.count += 1
        name = f"{self.prefix}/{op}{self.count}"
        names = [name] if outputs == 1 else [f"{name}:{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=name, **attrs))
        return names

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        """A constant tensor (shared between rules when equal)."""
        array = np.asarray(value, dtype=dtype)
        key = (array.tobytes(), array.dtype.str, array.shape)
        if key not in self._consts:  # initializers, not Constant nodes: fewer nodes to run
            name = f"const/{len(self._consts)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self.shapes[name] = array.shape
            self._consts[key] = name
        return self._consts[key]

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def shape(self, name: str) -> Shape:
        return self.shapes[name]

    def shape_of(self, name: str) -> str:
        """The runtime shape of a forward tensor: a constant when it is static."""
        dims = self.shapes.get(name)
        if dims is not None and all(isinstance(d, int) for d in dims):
            return self.ints(*(int(d) for d in dims))
        if name not in self._shape_of:
            self._shape_of[name] = self.add("Shape", [name])
        return self._shape_of[name]

    def rename(self, tensor: str, name: str) -> str:
        """Call a tensor built here `name` (a graph output) when `finish` runs: no copy."""
        self.renames[tensor] = name
        return name

    def finish(self) -> list[onnx.NodeProto]:
        """The nodes, with the renames applied (an Identity names a tensor built elsewhere)."""
        built = {o for n in self.nodes for o in n.output}
        for tensor, name in self.renames.items():
            if tensor not in built:
                self.nodes.append(helper.make_node("Identity", [tensor], [name], name=name))
        moved = {t: n for t, n in self.renames.items() if t in built}
        for node in self.nodes:
            for names in (node.input, node.output):
                for k, value in enumerate(names):
                    if value in moved:
                        names[k] = moved[value]
        return self.nodes

    def like(self, dy: str, x: str) -> str:
        """`dy` reshaped to the shape of forward tensor `x`."""
        return self.add("Reshape", [dy, self.shape_of(x)])

    def count_of(self, big: str, small: str) -> str:
        """How many elements of `big` each element of `small` stands for, as a float scalar:
        a constant, times the batch size where `big` has the batch dimension and `small` not."""
        a, b = self.shapes[big], self.shapes[small]
        static = [int(np.prod([d for d in s if isinstance(d, int)])) for s in (a, b)]
        symbols = [[d for d in s if isinstance(d, str)] for s in (a, b)]
        ratio = self.const(float(static[0] // max(static[1], 1)))
        if symbols[0] == symbols[1]:
            return ratio
        if len(symbols[0]) == 1 and not symbols[1] and a[0] == symbols[0][0]:
            key = f"count:{a[0]}"
            if key not in self._shape_of:  # the batch size, once per graph
                first = self.add("Slice", [self.add("Shape", [big]), self.ints(0), self.ints(1)])
                self._shape_of[key] = self.add("Cast", [first], to=TensorProto.FLOAT)
            if f"{key}:{ratio}" not in self._shape_of:
                self._shape_of[f"{key}:{ratio}"] = self.add("Mul", [self._shape_of[key], ratio])
            return self._shape_of[f"{key}:{ratio}"]
        sizes = [
            self.add("Cast", [self.add("Size", [t])], to=TensorProto.FLOAT) for t in (big, small)
        ]
        return self.add("Div", sizes)

    def unbroadcast(self, dy: str, out: Shape, x: str) -> str:
        """Sum `dy` (of broadcast shape `out`) down to the shape of input `x`."""
        shape = self.shapes[x]
        lead = len(out) - len(shape)
        axes = list(range(lead))
        axes += [lead + i for i, d in enumerate(shape) if d == 1 and out[lead + i] != 1]
        if not axes:
            return dy
        summed = self.add("ReduceSum", [dy, self.ints(*axes)], keepdims=1)
        return self.like(summed, x) if lead else summed

    def scalar(self, name: str, default: float) -> float:
        """The value of a constant scalar input of the forward graph."""
        if not name:
            return default
        return float(np.asarray(self.consts[name]).reshape(()))


Rule = Callable[[Grad, onnx.NodeProto, list[str | None], list[bool]], list[str | None]]
Out = list[str | None]  # a rule's result: one gradient (or None) per input


def first(dys: list[str | None]) -> str:
    """The gradient of a node's first output (a rule runs only when it exists)."""
    dy = dys[0]
    assert dy is not None
    return dy


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def shapes_of(model: onnx.ModelProto) -> dict[str, Shape]:
    """Every tensor's shape by ONNX's strict shape inference (symbolic dims as names)."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    g = inferred.graph
    shapes: dict[str, Shape] = {}
    for v in (*g.input, *g.value_info, *g.output):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = tuple(
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims
        )
    for t in g.initializer:
        shapes[t.name] = tuple(t.dims)
    return shapes


def constants(nodes: Sequence[onnx.NodeProto]) -> dict[str, np.ndarray]:
    return {
        n.output[0]: numpy_helper.to_array(attr(n, "value"))
        for n in nodes
        if n.op_type == "Constant" and attr(n, "value") is not None
    }


def backward(
    g: Grad,
    nodes: Sequence[onnx.NodeProto],
    seeds: dict[str, str],
    wrt: Sequence[str],
    rules: dict[str, Rule],
) -> dict[str, str]:
    """The gradients of the tensors `wrt`, given those of some forward tensors (`seeds`)."""
    g.producers = {o: node for node in nodes for o in node.output}
    live = set(wrt)
    for node in nodes:
        if any(i in live for i in node.input):
            live.update(node.output)
    parts: dict[str, list[str]] = {k: [v] for k, v in seeds.items()}
    for node in reversed(nodes):
        dys = [_total(g, parts, o) for o in node.output]
        want = [i in live and bool(i) for i in node.input]
        if all(d is None for d in dys) or not any(want):
            continue
        g.prefix = f"{node.name or node.output[0]}.grad"
        results = rules[node.op_type](g, node, dys, want)
        for name, wanted, result in zip(node.input, want, results, strict=False):
            if wanted and result is not None:
                parts.setdefault(name, []).append(result)
    g.prefix = "grad"
    grads = {}
    for name in wrt:
        total = _total(g, parts, name)
        if total is None:  # does not reach the loss: a zero gradient
            total = g.add("ConstantOfShape", [g.shape_of(name)])
        grads[name] = total
    return grads


def _total(g: Grad, parts: dict[str, list[str]], name: str) -> str | None:
    terms = parts.get(name)
    if not terms:
        return None
    if len(terms) > 1:
        parts[name] = [g.add("Sum", terms)]
    return parts[name][0]
