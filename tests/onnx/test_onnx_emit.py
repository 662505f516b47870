"""The ONNX emitter, op by op: hand-computed examples, names, metadata, options.

Oracles: numbers worked out by hand (written into the tables below), onnxruntime and
`onnx.reference.ReferenceEvaluator` agreeing tensor by tensor, and ONNX shape inference
agreeing with netdsl's shapes for every tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

import netdsl
from netdsl.backends.onnx import emit
from netdsl.backends.runtime import ort
from netdsl.rules import RULES

GRID4 = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)  # 1..16, row-major
GRID5 = np.arange(1, 26, dtype=np.float32).reshape(1, 1, 5, 5)
MIXED = np.array([[1, 5, 2, 0], [3, 4, 8, 1], [0, 2, 7, 6], [9, 1, 3, 5]], np.float32)[None, None]
SMALL = np.array([[[[1, 2], [3, 4]]]], np.float32)
ONES3 = np.ones((1, 1, 3, 3), np.float32)
ASYM = np.array([[[[1, 2, 0], [0, 1, 0], [0, 0, -1]]]], np.float32)
K2 = np.array([[[[1, 2], [3, 4]]]], np.float32)


class LRN(OpRun):
    """onnx 1.17's reference LRN loops over the batch instead of the channels; this is the
    operator's definition (square sum over floor((size-1)/2) before, ceil((size-1)/2) after)."""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):  # type: ignore[no-untyped-def]
        square = np.zeros_like(x)
        before, after = (size - 1) // 2, -(-(size - 1) // 2)
        for c in range(x.shape[1]):
            lo, hi = max(0, c - before), min(x.shape[1], c + after + 1)
            square[:, c] = (x[:, lo:hi] ** 2).sum(axis=1)
        return ((x / (bias + alpha / size * square) ** beta).astype(x.dtype),)


def compile_text(
    text: str, tmp_path: Path, tensors: dict[str, np.ndarray] | None = None, **options: Any
) -> onnx.ModelProto:
    net = netdsl.parse(text)
    weights = None
    if tensors:
        weights = tmp_path / "w.npz"
        np.savez(weights, **tensors)
    return emit.to_onnx(net, weights=weights, **options)


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = ReferenceEvaluator(model, new_ops=[LRN]).run(None, {"input": x})[0]
    return out


# ---- the tables agree ------------------------------------------------------------------------


def test_emitters_mirror_the_shape_rules() -> None:
    assert list(emit.EMITTERS) == list(RULES)


# ---- hand-computed examples ------------------------------------------------------------------

HAND = [
    # (text, weights, input, expected output), every expected number worked out by hand
    (
        "conv valid: out[i][j] = 12i + 3j",
        "input 1x4x4\nconv3x3(1, p=valid, bias=false)",
        {"conv1.weight": ASYM},
        GRID4,
        [[0, 3], [12, 15]],
    ),
    (
        "conv p=1: sums of 3x3 neighbourhoods",
        "input 1x4x4\nconv3x3(1, p=1, bias=false)",
        {"conv1.weight": ONES3},
        GRID4,
        [[14, 24, 30, 22], [33, 54, 63, 45], [57, 90, 99, 69], [46, 72, 78, 54]],
    ),
    (
        "conv same, bias 0.5: as p=1",
        "input 1x4x4\nconv3x3(1, bias=true)",
        {"conv1.weight": ONES3, "conv1.bias": np.array([0.5], np.float32)},
        GRID4,
        [
            [14.5, 24.5, 30.5, 22.5],
            [33.5, 54.5, 63.5, 45.5],
            [57.5, 90.5, 99.5, 69.5],
            [46.5, 72.5, 78.5, 54.5],
        ],
    ),
    (
        "conv stride 2, p=1: every other window of p=1",
        "input 1x4x4\nconv3x3/2(1, p=1, bias=false)",
        {"conv1.weight": ONES3},
        GRID4,
        [[14, 30], [57, 99]],
    ),
    (
        "conv stride 2, same: the odd padding pixel goes at the end",
        "input 1x4x4\nconv3x3/2(1, bias=false)",
        {"conv1.weight": ONES3},
        GRID4,
        [[54, 45], [72, 54]],
    ),
    (
        "conv dilation 2: 40i + 10j + 78",
        "input 1x4x4\nconv2x2(1, d=2, p=valid, bias=false)",
        {"conv1.weight": K2},
        GRID4,
        [[78, 88], [118, 128]],
    ),
    (
        "deconv 2x2/2 scatters k * x into 2x2 blocks",
        "input 1x2x2\ndeconv2x2/2(1, bias=false)",
        {"deconv1.weight": K2},
        SMALL,
        [[1, 2, 2, 4], [3, 4, 6, 8], [3, 6, 4, 8], [9, 12, 12, 16]],
    ),
    (
        "deconv 2x2/1 overlaps",
        "input 1x2x2\ndeconv2x2/1(1, bias=false)",
        {"deconv1.weight": np.ones((1, 1, 2, 2), np.float32)},
        SMALL,
        [[1, 3, 2], [4, 10, 6], [3, 7, 4]],
    ),
    ("maxpool 2x2/2", "input 1x4x4\nmaxpool", {}, MIXED, [[5, 8], [9, 7]]),
    ("avgpool 2x2/2", "input 1x4x4\navgpool", {}, MIXED, [[3.25, 2.75], [3, 5.25]]),
    (
        "avgpool 3x3/1 p=1 does not count the padding",
        "input 1x2x2\navgpool3x3/1(p=1)",
        {},
        SMALL,
        [[2.5, 2.5], [2.5, 2.5]],
    ),
    (
        "maxpool ceil keeps the partial last window",
        "input 1x5x5\nmaxpool(ceil=true)",
        {},
        GRID5,
        [[7, 9, 10], [17, 19, 20], [22, 24, 25]],
    ),
    ("maxpool floor drops it", "input 1x5x5\nmaxpool", {}, GRID5, [[7, 9], [17, 19]]),
    (
        "avgpool ceil averages what the partial window holds",
        "input 1x5x5\navgpool(ceil=true)",
        {},
        GRID5,
        [[4, 6, 7.5], [14, 16, 17.5], [21.5, 23.5, 25]],
    ),
    (
        "maxpool ceil: no window starts past the input (6 -> 2, not 3)",
        "input 1x1x6\nmaxpool(k=(1, 2), s=(1, 3), ceil=true)",
        {},
        np.array([[[[1, 9, 2, 3, 8, 4]]]], np.float32),
        [[9, 8]],
    ),
    ("gap", "input 1x2x2\ngap", {}, SMALL, [[2.5]]),
    ("gmp", "input 1x2x2\ngmp", {}, SMALL, [[4]]),
]


@pytest.mark.parametrize(
    ("text", "weights", "x", "expected"), [c[1:] for c in HAND], ids=[c[0] for c in HAND]
)
def test_hand_computed(
    text: str,
    weights: dict[str, np.ndarray],
    x: np.ndarray,
    expected: list[list[float]],
    tmp_path: Path,
) -> None:
    model = compile_text(text, tmp_path, weights, mode="inference")
    want = np.array(expected, np.float32)[None, None]
    np.testing.assert_allclose(ort.run(model, x), want, rtol=1e-6)
    np.testing.assert_allclose(reference(model, x), want, rtol=1e-6)


def test_lrn_by_hand(tmp_path: Path) -> None:
    """Channels 1, 2, 3 at one pixel, size 3, alpha 3 (so alpha/size = 1), beta 1, k 1: the
    square sums are 1+4, 1+4+9, 4+9, so y = 1/6, 2/15, 3/14 (ONNX and PyTorch divide alpha by
    the size)."""
    model = compile_text("input 3x1x1\nlrn(3, alpha=3, beta=1, k=1)", tmp_path)
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    want = np.array([1 / 6, 2 / 15, 3 / 14], np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(ort.run(model, x), want, rtol=1e-6)
    np.testing.assert_allclose(reference(model, x), want, rtol=1e-6)


def test_scale_gate_broadcasts_per_channel(tmp_path: Path) -> None:
    """scale[gap -> sigmoid]: each channel times the sigmoid of its own mean."""
    model = compile_text("input 2x2x2\nscale[gap -> flatten -> sigmoid]", tmp_path)
    x = np.array([[[1, 1], [1, 1]], [[-2, -2], [-2, -2]]], np.float32)[None]
    gate = 1 / (1 + np.exp(-np.array([1.0, -2.0])))
    np.testing.assert_allclose(ort.run(model, x), x * gate.reshape(1, 2, 1, 1), rtol=1e-6)
    assert [n.op_type for n in model.graph.node] == [
        "GlobalAveragePool",
        "Flatten",
        "Sigmoid",
        "Constant",
        "Unsqueeze",
        "Mul",
    ]


def test_softmax_is_over_channels(tmp_path: Path) -> None:
    model = compile_text("input 2x1x3\nsoftmax", tmp_path)
    x = np.array([[[0, 1, 2]], [[0, 1, 2]]], np.float32)[None]
    np.testing.assert_allclose(ort.run(model, x), np.full((1, 2, 1, 3), 0.5), rtol=1e-6)


# ---- every op, in several configurations: runtimes and shape inference agree -----------------

OPS = [
    "input 3x9x9\nconv3x3(4, s=2, d=2, p=(1, 0, 2, 1)) -> relu",
    "input 4x8x8\nconv3x3(6, groups=2) -> leakyrelu(0.2)",
    "input 4x7x7\ndwconv3x3(m=2) -> sigmoid",
    "input 4x8x8\nsepconv3x3(5) -> tanh",
    "input 3x5x5\ndeconv3x3/2(4, p=1, output_padding=1) -> relu",
    "input 4x5x5\ndeconv4x4/2(4, p=same)",  # grouped deconv: the reference gets it wrong
    "input 2x7x7\nmaxpool3x3/2(ceil=true) -> avgpool3x3/2(p=1, ceil=true)",
    "input 2x8x8\navgpool3x3/2(p=1) -> maxpool2x2(p=(0, 0, 1, 1))",
    "input 3x4x4\ngmp -> flatten -> fc(5) -> softmax",
    "input 3x4x4\nfc(6, bias=false) -> bn -> dropout(0.3) -> identity",
    "input 3x6x6\nconv3x3(8) -> bn(eps=0.001) -> relu -> lrn(3)",
    "input 4x6x6\nres[conv3x3(4) -> relu -> conv3x3(4)] -> relu",
    "input 4x6x6\nres[conv3x3/2(8) -> bn] -> {conv1x1(2) | conv3x3(3) | maxpool3x3/1(p=1)}",
    "input 4x6x6\n{conv1x1(4) | conv3x3(4) | identity}+",
    "input 4x6x6\ndense[bn -> relu -> conv3x3(2)]*3",
    "input 8x4x4\nscale[gap -> fc(2) -> relu -> fc(8) -> sigmoid]",
]


def shape_check(model: onnx.ModelProto, net: netdsl.ShapedNet) -> None:
    """ONNX shape inference gives netdsl's shape for every layer's output tensor."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    found = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    produced = {name for node in model.graph.node for name in node.output}
    for i, node in enumerate(net.nodes[1:], 1):
        name = "output" if i == net.output else node.name
        if name in produced:  # not a dropout at inference, nor the layer that writes `output`
            assert found[name] == ["N", *node.shape], name


def all_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every intermediate tensor as an output too, so each one is compared."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.extend(v for v in inferred.graph.value_info if v.name not in ("output",))
    return out


@pytest.mark.parametrize("text", OPS)
@pytest.mark.parametrize("mode", ["inference", "train"])
def test_ops_agree_with_reference(text: str, mode: str) -> None:
    net = netdsl.parse(text)
    model = emit.to_onnx(net, mode=mode, seed=1)
    onnx.checker.check_model(model, full_check=True)
    shape_check(model, net)
    if mode == "train" and any(n.op in ("bn", "dropout") for n in net.nodes):
        return  # random masks; onnxruntime's training-mode batch norm: see test_ort_run.py
    wide = all_outputs(model)
    x = ort.random_input((2, *net.input_shape), seed=3)
    ours = ort.session(wide).run(None, {"input": x})
    theirs = ReferenceEvaluator(wide, new_ops=[LRN]).run(None, {"input": x})
    for out, a, b in zip(wide.graph.output, ours, theirs, strict=True):
        assert np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1e-3), out.name


# ---- names, metadata, structure --------------------------------------------------------------

SE = """net se(classes=10):
    input 3x16x16
    conv3x3(8) -> bn -> relu
    -> res[conv3x3(8) -> bn -> scale[gap -> fc(2) -> relu -> fc(8) -> sigmoid]] -> relu
    -> dropout(0.2) -> fc(classes) -> softmax
"""


def test_names_follow_the_net(tmp_path: Path) -> None:
    net = netdsl.parse(SE, "se.net")
    model = emit.to_onnx(net)
    g = model.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 16, 16]
    assert {t.name for t in g.initializer} == {
        f"{n.name}.{w.name}" for n in net.nodes for w in n.weights
    }
    layers = {n.name for n in net.nodes[1:]}
    for node in g.node:
        assert node.name.split(".")[0] in {name.split(".")[0] for name in layers}
        if node.name in layers and node.name != net.nodes[net.output].name:
            assert node.output[0] == node.name
    assert g.node[-1].name == "softmax1" and g.node[-1].output[0] == "output"
    assert "fc1.flatten" in [n.name for n in g.node]  # fc on a spatial input flattens first


def test_doc_strings_point_at_the_source() -> None:
    net = netdsl.parse(SE, "se.net")
    docs = {n.name: n.doc_string for n in emit.to_onnx(net).graph.node}
    assert docs["bn1"] == "se.net:3:19: conv3x3(8) -> bn -> relu"
    assert docs["fc1"].startswith("se.net:4:45: -> res[conv3x3(8)")
    meta = {p.key: p.value for p in emit.to_onnx(net).metadata_props}
    assert meta["source"] == "se.net" and meta["net"] == "se"
    assert meta["netdsl_version"] == netdsl.__version__


@pytest.mark.skipif(
    not hasattr(netdsl.ShapedNet, "to_onnx"),
    reason="ShapedNet.to_onnx is the lead's to add (netdsl/shapes.py)",
)
def test_shaped_net_method() -> None:
    net = netdsl.parse(SE)
    method = net.to_onnx(seed=3, mode="inference")  # type: ignore[attr-defined]
    assert method == emit.to_onnx(net, seed=3, mode="inference")


def test_model_versions_and_batch() -> None:
    model = emit.to_onnx(netdsl.parse(SE), batch=4)
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [4, 10]


def test_inference_mode_drops_dropout_and_batch_statistics() -> None:
    net = netdsl.parse(SE)
    train, infer = emit.to_onnx(net), emit.to_onnx(net, mode="inference")
    ops = [n.op_type for n in infer.graph.node]
    assert "Dropout" not in ops and "Dropout" in [n.op_type for n in train.graph.node]
    bns = [n for n in train.graph.node if n.op_type == "BatchNormalization"]
    assert all({a.name: a.i for a in n.attribute}.get("training_mode") == 1 for n in bns)
    momentum = {a.name: a.f for a in bns[0].attribute}["momentum"]
    assert momentum == pytest.approx(0.9)  # netdsl's (PyTorch's) 0.1, ONNX's convention
    assert len(bns[0].output) == 3


def test_net_that_is_only_its_input() -> None:
    model = emit.to_onnx(netdsl.parse("input 2x3x3\ndropout"), mode="inference")
    assert [(n.op_type, list(n.input), list(n.output)) for n in model.graph.node] == [
        ("Identity", ["input"], ["output"])
    ]
    x = ort.random_input((1, 2, 3, 3))
    np.testing.assert_array_equal(ort.run(model, x), x)


# ---- initialisation --------------------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    net = netdsl.parse(SE)
    a = emit.to_onnx(net, seed=7).SerializeToString()
    assert a == emit.to_onnx(net, seed=7).SerializeToString()
    assert a != emit.to_onnx(net, seed=8).SerializeToString()


@pytest.mark.parametrize(
    ("init", "std"),
    [
        ("he", (2 / (64 * 9)) ** 0.5),
        ("glorot", (2 / (64 * 9 + 128 * 9)) ** 0.5),
        ("normal", 0.01),
        ("auto", (2 / (64 * 9)) ** 0.5),
    ],
)
def test_init_scales(init: str, std: float) -> None:
    net = netdsl.parse("input 64x8x8\nconv3x3(128) -> bn -> relu")
    tensors = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in emit.to_onnx(net, init=init).graph.initializer
    }
    w = tensors["conv1.weight"]
    assert w.std() == pytest.approx(std, rel=0.02) and abs(w.mean()) < std / 20
    assert (tensors["bn1.scale"] == 1).all() and (tensors["bn1.var"] == 1).all()
    assert (tensors["bn1.bias"] == 0).all() and (tensors["bn1.mean"] == 0).all()


def test_auto_init_is_glorot_without_relu() -> None:
    model = emit.to_onnx(netdsl.parse("input 1x8x8\nconv3x3(4) -> tanh"))
    assert {p.key: p.value for p in model.metadata_props}["init"] == "glorot (seed 0)"


@pytest.mark.parametrize("opset", [13, 14, 15, 16, 17])
def test_opsets(opset: int) -> None:
    net = netdsl.parse(SE)
    model = emit.to_onnx(net, opset=opset, mode="inference")
    onnx.checker.check_model(model, full_check=True)
    assert ort.run(model, ort.random_input((2, 3, 16, 16))).shape == (2, 10)
    if opset == 13:
        with pytest.raises(netdsl.NetError, match="training form of batch norm needs opset 14"):
            emit.to_onnx(net, opset=opset)
    else:
        onnx.checker.check_model(emit.to_onnx(net, opset=opset), full_check=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"opset": 11}, "opset 11 is not supported"),
        ({"batch": 0}, "batch must be"),
        ({"mode": "eval"}, "mode must be"),
        ({"fold_bn": True}, "needs inference mode"),
        ({"init": "xavier"}, "unknown init 'xavier'"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(netdsl.NetError, match=message):
        emit.to_onnx(netdsl.parse(SE), **options)
