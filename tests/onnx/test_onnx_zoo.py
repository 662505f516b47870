"""Every zoo net through the ONNX backend, against independent oracles.

For each net of `netdsl.zoo.entries()`, in inference form, at the smallest input size (of a few)
its text accepts, so that the reference evaluator can run it: `onnx.checker` (full check), ONNX
shape inference giving netdsl's shape for every layer's tensor, the parameter count summed from
the graph's initializers, and onnxruntime agreeing with `onnx.reference.ReferenceEvaluator` on
every intermediate tensor for a random (never zero) input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_resize import Resize as ReferenceResize

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.runtime import ort
from netdsl.zoo import entries
from tests.onnx.test_onnx_emit import LRN, all_outputs

INPUT = re.compile(r"^(\s*input\s+(?:\w+\s*:\s*)?\d+)x(\d+)x(\d+)", re.MULTILINE)  # `x: 3x...`
# a signal, `input 256x16000` or `input audio: 256x16000`: its length is reduced alike
SIGNAL = re.compile(r"^(\s*input\s+(?:\w+\s*:\s*)?\d+)x(\d+)(?![x\d])", re.MULTILINE)
# the inputs after the first of a line of several: `input rgb: 3x224x224, flow: 20x224x224`
MORE = re.compile(r"(,\s*\w+\s*:\s*(?:\d+|\([^()\n]*\)))x(\d+)x(\d+)")  # `(2*L)x224x224` too
# a shape check (`-> 512x7x7`) states the size at the written input, not at a reduced one
CHECK = re.compile(r"[ \t]*->[ \t]*\d+(?:x\d+)+(?=[ \t]*(?:->|\]|\n|$))")
SIZES = (16, 32, 64, 96, 128, 192, 256, 384)
REFERENCE_BUDGET = 2e9  # multiply-adds per image the reference evaluator gets through quickly


class Resize(ReferenceResize):
    """onnx 1.17's reference Resize interpolates each output element through the whole tensor
    (hours for a pyramid's 256-channel maps). With scales of 1 on the batch and channel axes,
    as netdsl emits it, each (batch, channel) plane is resized alone, the way the reference
    itself runs a Resize given `axes`; the interpolation is still the reference's."""

    def _run(self, x, roi, scales=None, sizes=None, **attrs):  # type: ignore[no-untyped-def,override]
        run = super()._run
        if scales is None or len(scales) < 3 or list(scales[:2]) != [1, 1]:
            return run(x, roi, scales, sizes, **attrs)
        planes = [run(p, roi, scales, sizes, **attrs)[0] for p in x.reshape(-1, 1, 1, *x.shape[2:])]
        return (np.concatenate(planes).reshape(*x.shape[:2], *planes[0].shape[2:]),)


@dataclass
class Case:
    net: netdsl.ShapedNet
    model: onnx.ModelProto

    def __repr__(self) -> str:  # a failing test must not print a model of 500 MB as text
        return f"Case({self.net.name})"


def reduced(name: str) -> netdsl.ShapedNet:
    """The zoo net at the smallest of SIZES its text accepts (never larger than written)."""
    entry = next(e for e in entries() if e.name == name)
    text = CHECK.sub("", entry.path.read_text("utf-8"))
    for size in SIZES:
        small = INPUT.sub(lambda m, s=size: f"{m[1]}x{min(s, int(m[2]))}x{min(s, int(m[3]))}", text)
        small = MORE.sub(lambda m, s=size: f"{m[1]}x{min(s, int(m[2]))}x{min(s, int(m[3]))}", small)
        small = SIGNAL.sub(lambda m, s=size: f"{m[1]}x{min(s, int(m[2]))}", small)
        try:
            return netdsl.parse(small, str(entry.path), name=name)
        except netdsl.NetError:
            continue
    return netdsl.load(name)


@pytest.fixture(scope="module", params=[e.name for e in entries()])
def case(request: pytest.FixtureRequest) -> Case:
    net = reduced(request.param)
    return Case(net, to_onnx(net, mode="inference", seed=1))


def test_checker(case: Case) -> None:
    onnx.checker.check_model(case.model, full_check=True)


def test_shape_inference_agrees_on_every_tensor(case: Case) -> None:
    bare = onnx.ModelProto()
    bare.CopyFrom(case.model)
    for tensor in bare.graph.initializer:  # shapes need the dims only
        tensor.ClearField("raw_data")
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True, data_prop=True)
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    produced = {name for node in case.model.graph.node for name in node.output}
    # ONNX infers a Resize's sizes as floor(size * scale), which the symbolic batch size N does
    # not survive: below a Resize the batch axis is unnamed (unk__0); the others are compared
    unnamed: set[str] = set()
    for onnx_node in case.model.graph.node:
        if onnx_node.op_type == "Resize" or unnamed.intersection(onnx_node.input):
            unnamed.update(onnx_node.output)
    outputs = {i: out for out, i in case.net.output_list}  # named after the net's outputs
    for i, node in enumerate(case.net.nodes[1:], 1):
        name = outputs.get(i, node.name)
        if name not in produced:
            # gone at inference, or a graph input (a net with several inputs)
            assert node.op in ("dropout", "input"), f"no tensor for layer {name}"
            continue
        batch = shapes[name][0]
        assert batch == "N" or (name in unnamed and str(batch).startswith("unk__")), name
        assert shapes[name][1:] == list(node.shape), name


def test_parameters_from_initializers(case: Case) -> None:
    sizes = {t.name: math.prod(t.dims) for t in case.model.graph.initializer}
    stats = {
        name
        for node in case.model.graph.node
        if node.op_type == "BatchNormalization"
        for name in node.input[3:5]
    }
    assert sum(n for name, n in sizes.items() if name not in stats) == case.net.params
    assert sum(sizes[name] for name in stats) == case.net.buffers


def test_onnxruntime_agrees_with_reference(case: Case) -> None:
    if case.net.macs > REFERENCE_BUDGET:
        pytest.skip(
            f"{case.net.name} needs {case.net.macs / 1e9:.0f} G multiply-adds even at "
            f"its smallest input; too slow for the reference evaluator"
        )
    model = all_outputs(case.model)
    # `input`, or the names a graph net gives its inputs; each input its own values (a
    # Siamese net fed one image twice would compare zeros)
    names = [v.name for v in model.graph.input][: len(case.net.inputs)]
    feed = {
        name: ort.random_input((2, *case.net.nodes[i].shape), seed=2 + k)
        for k, (name, i) in enumerate(zip(names, case.net.inputs, strict=True))
    }
    ours = ort.session(model).run(None, feed)
    theirs = ReferenceEvaluator(model, new_ops=[LRN, Resize]).run(None, feed)
    for out, a, b in zip(model.graph.output, ours, theirs, strict=True):
        assert a.shape == b.shape, out.name
        scale = max(float(np.abs(b).max()), 1e-6)
        assert float(np.abs(a - b).max()) < 1e-4 * scale, out.name
