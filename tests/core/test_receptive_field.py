"""Receptive fields against an independent computation: which outputs of the emitted ONNX change
when one input row (or column) is lit.

The oracle runs the model netdsl emits, made to show reachability exactly: every weight a
positive constant, biases and batch-norm shifts zero, every pointwise op (activations, batch
norm, LRN, softmax over channels) the identity and a gate's product a sum, so an output is
nonzero exactly where some path reaches a lit input. A batch lights each input row in turn;
onnxruntime runs it once, and the rows that reach output position o give its observed field.
netdsl's field (`Node.rf`, per axis: output o sees input positions `reach.at(o)` on an
unbounded input) must then (1) contain what is observed, clipped to the image, for every output
position, (2) equal it wherever it lies inside the image, and (3) report as `rf_size` the
largest such field over output positions (checked where every phase has an inside position).

A net of several inputs has a field per input (`Node.fields`): the rows of one input are lit
while the others stay zero, each layer's field on that input is checked as above, and a layer
with no field on it must not change at all.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.summary import row_fields, rows, table, to_json
from netdsl.zoo import find

ort = pytest.importorskip("onnxruntime")

POINTWISE = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LRN", "BatchNormalization"}


def reachability_model(net: netdsl.ShapedNet, names: list[str]) -> onnx.ModelProto:
    params = {}
    for node in net.nodes:
        for w in node.weights:
            name = f"{node.name}.{w.name}"
            if w.name == "weight":
                params[name] = np.full(w.shape, 1.0 / math.prod(w.shape[1:]), np.float32)
            else:
                params[name] = np.full(w.shape, 1.0 if w.name in ("scale", "var") else 0.0)
    model = to_onnx(net, mode="inference", weights=params or None)
    for node in model.graph.node:
        if node.op_type in POINTWISE:
            node.op_type = "Identity"
            del node.input[1:]
            del node.attribute[:]
        elif node.op_type == "Mul":  # a gate: reachable through either factor
            node.op_type = "Add"
    outputs = {o.name for o in model.graph.output}
    for name in names:
        if name not in outputs:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def observed(
    net: netdsl.ShapedNet, axes: tuple[int, ...], source: int = 0
) -> dict[tuple[str, int], np.ndarray]:
    """(layer, axis) -> a boolean map [input position, output position]: does lighting that
    row (axis 0) or column (axis 1) of input `source` (its place among the net's inputs)
    change that output? The other inputs are zero."""
    model = reachability_model(net, [])
    made = {o for node in model.graph.node for o in node.output}  # dropout leaves no tensor
    tensor = {n.name: n.name for n in net.nodes}
    tensor.update({net.nodes[i].name: out for out, i in net.output_list})  # renamed outputs
    outputs = {i for _, i in net.output_list}
    nodes = [
        n
        for i, n in enumerate(net.nodes)
        if n.op != "input" and (len(n.shape) > 1 or i in outputs) and tensor[n.name] in made
    ]
    names = [tensor[n.name] for n in nodes]
    model = reachability_model(net, names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    lit_input = net.nodes[net.inputs[source]]
    c, *sizes = lit_input.shape
    found: dict[tuple[str, int], np.ndarray] = {}
    for axis in axes:
        lit = np.zeros((sizes[axis], c, *sizes), np.float32)
        for i in range(sizes[axis]):
            index = [i, slice(None)] + [slice(None)] * len(sizes)
            index[2 + axis] = i
            lit[tuple(index)] = 1e10
        feeds = {
            net.nodes[j].name: np.zeros((sizes[axis], *net.nodes[j].shape), np.float32)
            for j in net.inputs
        }
        feeds[lit_input.name] = lit
        results = session.run(names, feeds)
        for node, y in zip(nodes, results, strict=True):
            y = np.abs(y) > 0
            if y.ndim == 2:  # a vector: one output position that sees everything it sees
                found[(node.name, axis)] = y.any(axis=1)[:, None]
            else:
                other = tuple(a for a in range(1, y.ndim) if a != 2 + axis)
                found[(node.name, axis)] = y.any(axis=other)
    return found


def check(net: netdsl.ShapedNet, axes: tuple[int, ...] = (0, 1), source: int = 0) -> int:
    """Compare every layer's field on input `source` with the observed one; returns how many
    exact comparisons (output positions whose field lies inside the image) were made."""
    exact = 0
    lit = net.nodes[net.inputs[source]]
    for (name, axis), seen in observed(net, axes, source).items():
        node = next(n for n in net.nodes if n.name == name)
        assert node.rf == next(iter(node.fields.values())), f"{name}: rf is the first field"
        if lit.name not in node.fields:
            assert not seen.any(), f"{net.name}: {name} has no field on {lit.name}, but sees it"
            continue
        field = node.fields[lit.name]
        reach, n_in = field.reach[axis], lit.shape[1 + axis]
        inside_phases = set()
        for o in range(seen.shape[1]):
            rows = np.flatnonzero(seen[:, o])
            lo, hi = reach.at(o)
            where = f"{net.name}: {name} axis {axis} output {o}: netdsl [{lo}, {hi}]"
            if lo > hi:
                assert rows.size == 0, f"{where} sees nothing, but rows {rows} reach it"
                continue
            if rows.size:  # at a border the taps may all fall outside the map: nothing
                assert lo <= rows[0] and rows[-1] <= hi, f"{where}, observed {rows}"
            # inside the image, the unbounded field is the finite one; not for a field that a
            # global gate made the same everywhere (step 0): its windows over padding see nothing
            if lo >= 0 and hi < n_in and reach.step != 0:
                assert rows.size, f"{where}, but no input row reaches it"
                assert (rows[0], rows[-1]) == (lo, hi), f"{where}, observed {rows[0]}..{rows[-1]}"
                inside_phases.add(o % reach.period)
                exact += 1
        if len(node.shape) > 1 and len(inside_phases) == reach.period:
            assert field.size[axis] == max(
                math.ceil(h - lo) + 1 for lo, h in zip(reach.lo, reach.hi, strict=True)
            )
    return exact


def test_the_transposed_convolution_of_the_issue_sees_9_pixels() -> None:
    net = netdsl.parse("input 1x1x256\nconv1x5/4(1, p=valid) -> deconv1x8/4(1)", "i.net")
    assert net.nodes[-1].rf_size == (1, 9)
    assert check(net, axes=(1,)) > 100


# (layers on a 2x24x24 input, the field by hand, what the summary's last line adds)
BY_HAND = [
    ("conv3x3(2) -> conv3x3/2(2) -> conv3x3(2)", 9, ""),
    ("deconv4x4/2(2) -> conv3x3(2)", 3, ""),  # 3 inputs of the deconv, not 1 + 5/2 -> 4
    ("deconv(2, k=2, s=4)", 1, ""),  # half the outputs see nothing: only the bias
    ("{conv1x1(2) | conv5x5(2)}", 5, ", the largest over all paths"),
    # windows offset against each other: the union (3) is wider than either path (2)
    ("{conv2x2(2, p=(0, 0, 1, 1)) | conv2x2(2, p=(1, 1, 0, 0))}", 3, ", the union of all paths"),
    ("res[conv3x3(2) -> conv3x3(2)]", 5, ", the largest over all paths"),
    # paths at different strides (2 and 1) that happen to give the same size: joined soundly
    ("{conv1x1/2(2) | conv13x13(2, p=valid)}", 13, ", the largest over all paths"),
    # a reshape keeps many positions, each of which may see all of the input (and the padding
    # of the conv before it: 24 + 2)
    ("conv3x3(4) -> reshape(2, 2, -1)", 26, ""),
    ("conv3x3(4) -> transpose(1, 3, 2) -> conv3x3(2)", 26, ""),
]


@pytest.mark.parametrize(("layers", "size", "note"), BY_HAND)
def test_fields_by_hand_agree_with_the_emitted_model(layers: str, size: int, note: str) -> None:
    net = netdsl.parse(f"input 2x24x24\n{layers}", "h.net")
    assert net.nodes[-1].rf_size == (size, size)
    assert check(net) > 0
    stride = net.nodes[-1].rf_stride[0]
    assert table(net).splitlines()[-2].endswith(f"(stride {stride:g}{note})")


def zoo_net(name: str, size: int) -> netdsl.ShapedNet:
    """A zoo net with its input made `size` x `size`, so the oracle runs in milliseconds (and
    without its shape checks, `-> 512x7x7`, which hold at the paper's size)."""
    path, _ = find(name)
    text = path.read_text()
    start = text.index(f"net {name}(")
    head, body = text[:start], text[start:]
    body = re.sub(r"input (\d+)x\d+x\d+", rf"input \1x{size}x{size}", body, count=1)
    body = re.sub(r"->\s*\d+(?:x\d+)+(?![\w(])", "-> identity", body)
    return next(n for n in netdsl.parse_all(head + body, str(path)) if n.name == name)


ZOO = [
    ("lenet5", 32),
    ("mnist_conv", 28),
    ("resnet18", 32),
    ("googlenet", 32),
    ("densenet121", 32),
    ("context_module", 40),
]


@pytest.mark.parametrize(("name", "size"), ZOO)
def test_zoo_fields_agree_with_the_emitted_model(name: str, size: int) -> None:
    net = zoo_net(name, size)
    check(net, axes=(0,))  # square kernels and inputs: both axes agree


LAYERS = [
    "conv{k}x{k2}/{s}(2, p={p})",
    "conv{k}x{k}(2, d={d})",
    "maxpool{k}x{k}/{s}(ceil=true)",
    "avgpool{k}x{k2}/{s}(p={q})",
    "deconv(2, k=({k}, {k2}), s=({s}, {s2}), p={q})",
    "deconv(2, k={k}, s={s}, d={d})",
    "res[conv{k}x{k}(2) -> relu]",
    "{{conv1x1(2) | conv{k}x{k}(2) | maxpool{k}x{k}/1(p=same)}}",
    "{{conv2x2(2, p=(0, 0, 1, 1)) | conv{k}x{k2}(2, p=(1, 1, 0, 0))}}",
    "dwconv{k}x{k}/{s}",
    "sepconv{k}x{k}/{s}(2, d={d})",
    "scale[gap -> fc(2) -> sigmoid]",
]


def random_nets(count: int, seed: int = 8) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < count:
        chain = []
        for _ in range(rng.randint(2, 4)):
            layer = rng.choice(LAYERS)
            values = {
                "k": rng.randint(1, 5),
                "k2": rng.randint(1, 5),
                "s": rng.randint(1, 3),
                "s2": rng.randint(1, 3),
                "d": rng.randint(1, 3),
                "p": rng.choice(["same", "valid", "1", "(0, 2)", "(2, 1, 0, 1)"]),
                "q": rng.choice(["valid", "0", "1", "(1, 0)"]),
            }
            chain.append(layer.format(**values))
        size = rng.randint(12, 30)
        text = f"input 2x{size}x{size + rng.randint(0, 5)}\n" + " -> ".join(chain)
        try:
            netdsl.parse(text, "random.net")
        except netdsl.NetError:
            continue
        texts.append(text)
    return texts


@pytest.mark.parametrize("text", random_nets(40))
def test_random_nets_agree_with_the_emitted_model(text: str) -> None:
    check(netdsl.parse(text, "random.net"))


# ---- any number of spatial axes: the language writes 2-D layers, the rules and the emitter
# take any; a graph built directly gives 1-D and 3-D nets to the same oracle --------------------


def conv(k: tuple[int, ...], s: tuple[int, ...], p: Any, d: tuple[int, ...]) -> dict[str, Any]:
    return {"c": 2, "k": k, "s": s, "p": p, "d": d, "groups": 1, "bias": True}


def deconv(k: tuple[int, ...], s: tuple[int, ...], p: Any) -> dict[str, Any]:
    ones = (1,) * len(k)
    return {**conv(k, s, p, ones), "output_padding": (0,) * len(k), "c": 2}


def pool(k: tuple[int, ...], s: tuple[int, ...], p: Any, ceil: bool) -> dict[str, Any]:
    return {"k": k, "s": s, "p": p, "ceil": ceil}


RANKS = [
    (
        (2, 40),
        [
            ("conv", conv((3,), (2,), "same", (1,))),
            ("maxpool", pool((3,), (2,), "valid", True)),
            ("deconv", deconv((4,), (2,), (1, 1))),
            ("conv", conv((3,), (1,), (2, 2), (2,))),
        ],
    ),
    (
        (1, 9, 11, 12),
        [
            ("conv", conv((3, 1, 3), (1, 2, 1), "same", (1, 1, 2))),
            ("avgpool", pool((2, 2, 2), (2, 1, 2), (0, 0, 1, 0, 1, 0), True)),
            ("deconv", deconv((2, 3, 4), (2, 1, 2), "valid")),
        ],
    ),
]


@pytest.mark.parametrize(("shape", "layers"), RANKS, ids=["1-D", "3-D"])
def test_fields_at_any_rank_agree_with_the_emitted_model(
    shape: tuple[int, ...], layers: list[tuple[str, dict[str, Any]]]
) -> None:
    from netdsl.graph import Graph, Layer
    from netdsl.shapes import infer_shapes
    from netdsl.source import Source, Span

    span = Span(Source("rank.net", "rank\n"), 1, 1, 1, 5)
    built = [Layer("input", "input", {}, (), span)]
    for i, (op, attrs) in enumerate(layers, 1):
        built.append(Layer(f"{op}{i}", op, attrs, (i - 1,), span))
    net = infer_shapes(Graph("rank", shape, tuple(built), len(built) - 1, (), span))
    assert all(len(n.rf_size) == len(shape) - 1 for n in net.nodes)
    assert check(net, axes=tuple(range(len(shape) - 1))) > 0


# ---- the envelope: bounded work, never an under-reported field --------------------------------


@pytest.mark.parametrize(
    "layers",
    [
        [("up", 8, 4, 1, 0)],
        [("up", 3, 5, 1, 1), ("win", 3, 2, 1, 1)],
        [("up", 4, 2, 1, 1), ("up", 5, 3, 2, 0), ("win", 2, 3, 1, 0)],
    ],
)
def test_the_envelope_holds_every_phase(layers: list[tuple[str, int, int, int, int]]) -> None:
    from netdsl import geometry as g

    reach = g.POINT
    for kind, k, s, d, begin in layers:
        reach = (g.upsample if kind == "up" else g.window)(reach, k, s, d, begin)
    wide = g.envelope(reach)
    assert wide.period == 1
    for o in range(3 * reach.period):
        lo, hi = reach.at(o)
        if lo <= hi:
            first, last = wide.at(o)
            assert first <= lo and hi <= last


def test_past_the_work_bound_a_transposed_convolution_is_bounded_from_above() -> None:
    from netdsl import geometry as g

    exact = g.upsample(g.POINT, 40, 8, 1, 0)
    assert exact.period == 8
    wide = g.upsample(g.window(g.POINT, 1, 1024, 1, 0), 40_000, 1024, 1, 0)  # 40 M taps
    assert wide.period == 1 and wide.size >= 40  # bounded from above, computed at once


# ---- nets of several inputs: a field per input, each checked by lighting that input alone ----

# (net, {layer: {input: RF/stride as the summary writes it}} worked by hand)
SEVERAL = [
    (  # two inputs of different sizes, a block shared by both, merged by a concat
        "net siamese:\n  input a: 1x30x30, b: 3x16x16\n"
        "  tower = [conv3x3(4, p=valid) -> relu -> maxpool2x2]\n"
        "  ya = a -> conv1x1(3) -> tower\n  yb = b -> tower -> upsample(to=ya)\n"
        "  output d: [ya, yb] -> concat -> conv3x3(2)\n",
        {
            "tower.maxpool1": {"a": "4/2"},
            "tower@2.maxpool1": {"b": "4/2"},
            "yb.upsample1": {"b": "4/1"},  # nearest: output o repeats input floor(o/2)
            "d.conv1": {"a": "8/2", "b": "6/1"},
        },
    ),
    (  # different strides meeting in an add: each input keeps its own stride
        "net add:\n  input a: 2x20x20, b: 2x10x10\n"
        "  output y: [a -> conv3x3/2(2), b -> conv5x5(2)] -> add -> conv3x3(2)\n",
        {"y.add1": {"a": "3/2", "b": "5/1"}, "y.conv3": {"a": "7/2", "b": "7/1"}},
    ),
    (  # one input on two paths (their union), another on a third
        "net three:\n  input a: 2x16x16, b: 2x16x16\n"
        "  y = [a -> conv1x1(2), a -> conv5x5(2), b -> conv3x3/2(2) -> upsample] -> concat\n"
        "  output z: y -> maxpool2x2\n",
        # b: a pool over the nearest upsample's pairs sees 3 rows, not the sliding formula's 4
        {"y.concat1": {"a": "5/1", "b": "3/1"}, "z.maxpool1": {"a": "6/2", "b": "3/2"}},
    ),
    (  # a gate from another input: every output sees all of what the gate sees (stride 0)
        "net gate:\n  input v: 2x12x12, w: 1x20x20\n"
        "  g = w -> conv3x3/2(2) -> gap -> fc(2) -> sigmoid\n"
        "  output y: [v -> conv3x3(2), g] -> mul -> conv3x3(2)\n",
        {"y.mul1": {"v": "3/1", "w": "21/0"}, "y.conv2": {"v": "5/1", "w": "21/0"}},
    ),
    (  # a cropped skip: the tensor it is cropped to gives sizes only, no field
        "net skip:\n  input x: 1x20x20, y: 1x12x12\n"
        "  u = y -> conv3x3(2, p=valid) -> upsample\n"
        "  output o: [x -> conv3x3(2) -> crop(to=u), u] -> concat -> conv1x1(2)\n",
        {"o.crop1": {"x": "3/1"}, "o.conv2": {"x": "3/1", "y": "3/0.5"}},
    ),
    (  # a signal and an image: fields of different ranks, joined once both are vectors
        "net mix:\n  input s: 1x40, i: 2x12x12\n"
        "  ys = s -> conv5/2(2) -> gap -> flatten\n"
        "  yi = i -> conv3x3(2) -> maxpool2x2 -> gap -> flatten\n"
        "  output y: [ys, yi] -> concat -> fc(3)\n",
        {
            "ys.conv1": {"s": "5/2"},
            "yi.maxpool1": {"i": "4/2"},
            "y.fc1": {"s": "43/40", "i": "14/12"},
        },
    ),
    (  # a volume and an image, and a signal gating an image
        "net mix3:\n  input v: 1x6x10x10, i: 1x12x12, s: 2x16\n"
        "  yv = v -> conv3(2) -> maxpool2 -> gap -> flatten\n"
        "  g = s -> conv3(2) -> gap -> flatten -> sigmoid\n"
        "  yi = [i -> conv3x3(2), g] -> mul -> gap -> flatten\n"
        "  output y: [yv, yi] -> concat -> fc(2)\n",
        {
            "yv.gap1": {"v": "8x12x12/6x10x10"},
            "yi.mul1": {"i": "3/1", "s": "18/0"},
            "y.fc1": {"v": "8x12x12/6x10x10", "i": "14/12", "s": "18/0"},
        },
    ),
]


@pytest.mark.parametrize(("text", "by_hand"), SEVERAL, ids=[t[0].split(":")[0] for t in SEVERAL])
def test_fields_per_input_agree_with_the_emitted_model(
    text: str, by_hand: dict[str, dict[str, str]]
) -> None:
    net = netdsl.parse(text, "several.net")
    shown = {r.name: f for r, f in zip(rows(net), row_fields(net), strict=True)}
    for layer, fields in by_hand.items():
        assert shown[layer] == fields, layer
    for source, i in enumerate(net.inputs):
        for node in net.nodes:  # a field per input the node depends on, in the inputs' order
            assert list(node.fields) == [n for n in net.input_names if n in node.fields]
            assert all(
                len(f.reach) == len(net.nodes[j].shape) - 1
                for j in net.inputs
                for f in [node.fields.get(net.nodes[j].name)]
                if f is not None
            )
        rank = len(net.nodes[i].shape) - 1
        assert check(net, axes=tuple(range(min(rank, 2))), source=source) > 0


def test_the_summary_of_several_inputs_has_a_field_column_per_input() -> None:
    net = netdsl.parse(SEVERAL[0][0], "several.net")
    lines = table(net).splitlines()
    assert lines[2].endswith("MACs  RF/stride a  RF/stride b    memory")
    at = {line.split()[0]: line for line in lines[4:-7]}
    column = lines[2].index("RF/stride a")
    cells = {name: line[column : column + 26].split() for name, line in at.items()}
    assert cells["tower.conv1"] == ["3/1"]  # blank where a layer does not see the input
    assert cells["tower@2.conv1"] == ["3/1"] and at["tower@2.conv1"][column] == " "
    assert cells["d.concat1"] == ["4/2", "4/1"]
    assert lines[-2] == (
        "receptive field: 8 pixels of a at d.conv1 (stride 2); 6 pixels of b at d.conv1 (stride 1)"
    )
    notebook = netdsl.summary(net)
    assert [c for c in notebook.columns if c.startswith("rf")] == ["rf a", "rf b"]
    assert "| RF/stride a | RF/stride b |" in notebook.to_markdown()
    assert notebook.rows[2]["rf a"] == "1/1" and notebook.rows[2]["rf b"] == ""


def test_several_inputs_in_json_fit_the_schema() -> None:
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")

    schema = json.loads((Path(netdsl.__file__).parent / "schemas" / "summary.json").read_text())
    for text, _ in SEVERAL:
        net = netdsl.parse(text, "several.net")
        for depth in (None, 1):
            data = json.loads(json.dumps(to_json(net, depth)))
            jsonschema.validate(data, schema)
        conv = next(x for x in data["layers"] if x["name"] == net.nodes[-1].name)
        assert list(conv["fields"]) == list(net.nodes[-1].fields)
        assert conv["rf"] == next(iter(conv["fields"].values()))["rf"]
    assert data["total"]["fields"] == {
        "v": {"layer": "yv.maxpool1", "rf": [4, 4, 4], "rf_stride": [2.0, 2.0, 2.0]},
        "i": {"layer": "yi.mul1", "rf": [3, 3], "rf_stride": [1.0, 1.0]},
        "s": {"layer": "yi.mul1", "rf": [18], "rf_stride": [0.0]},
    }
    assert [b["fields"] for b in data["blocks"]][-1] == {
        "v": "8x12x12/6x10x10",
        "i": "14/12",
        "s": "18/0",
    }
    one = to_json(netdsl.parse("input 3x8x8\nconv3x3(4)"), 1)
    assert one["layers"][1]["fields"] == {"input": {"rf": [3, 3], "rf_stride": [1.0, 1.0]}}
    assert "fields" not in one["blocks"][1]  # one input: its field is `rf`, as before
    jsonschema.validate(one, schema)
