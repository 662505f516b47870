"""ONNX for nets that are graphs: several inputs and outputs, shared weights, `crop(to=...)`.

Oracles: onnx's checker (full check) and strict shape inference, onnxruntime against
`onnx.reference.ReferenceEvaluator` output by output, and a PyTorch twin given the same weights.
Stages that cannot take such nets yet refuse them with one NetError.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import netdsl
from netdsl.backends.onnx import emit

SIAMESE = """
net siamese:
    input a: 1x20x20, b: 1x20x20
    tower = [conv3x3(4) -> relu -> maxpool2x2 -> conv3x3(8, p=valid) -> relu]
    ya = a -> tower
    yb = b -> tower
    output d: [ya, yb] -> concat -> gap -> fc(3)
"""

NETS = [
    SIAMESE,
    """
net heads:
    input x: 3x16x16
    trunk = x -> conv3x3(8) -> relu
    output cls: trunk -> conv1x1(9)
    output box: trunk -> conv1x1(36)
    output same: trunk
    output raw: x
""",
    """
net unet_step:
    input x: 1x28x28
    d1 = x -> conv3x3(4, p=valid) -> relu
    u1 = d1 -> maxpool2x2 -> conv3x3(8, p=valid) -> relu -> upconv2x2/2(4)
    output y: [d1 -> crop(to=u1), u1] -> concat -> conv1x1(2)
""",
    """
net gated:
    input x: 4x8x8, y: 4x8x8
    g = y -> gap -> fc(4) -> sigmoid
    s = [x, y] -> add
    output z: [s, g] -> mul
""",
    """
net l1:
    input a: 2x8x8, b: 2x8x8
    tower = [conv3x3(4) -> relu -> maxpool2x2]
    ya = a -> tower
    yb = b -> tower
    output d: [ya, yb] -> sub -> abs -> fc(3)
    output m: [a, b, a -> conv1x1(2)] -> mean
""",
]


def feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for value in model.graph.input:
        shape = [2, *(d.dim_value for d in value.type.tensor_type.shape.dim[1:])]
        out[value.name] = rng.random(shape, dtype=np.float32)
    return out


@pytest.mark.parametrize("text", NETS, ids=["siamese", "heads", "unet_step", "gated", "l1_mean"])
def test_checked_and_runs_as_the_reference(text: str) -> None:
    import onnxruntime

    net = netdsl.parse(text)
    model = emit.to_onnx(net, mode="inference")
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[1:]]
        for v in inferred.graph.output
    }
    assert shapes == {name: list(net.nodes[i].shape) for name, i in net.output_list}
    assert [v.name for v in model.graph.input] == list(net.input_names)
    names = [t.name for t in model.graph.initializer]
    assert len(names) == len(set(names))
    x = feeds(model)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, x)
    want = ReferenceEvaluator(model).run(None, x)
    assert len(got) == len(net.output_list)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_shared_tower_is_one_set_of_initializers() -> None:
    model = emit.to_onnx(netdsl.parse(SIAMESE))
    names = [t.name for t in model.graph.initializer]
    assert names == [
        "tower.conv1.weight",
        "tower.conv1.bias",
        "tower.conv2.weight",
        "tower.conv2.bias",
        "d.fc1.weight",
        "d.fc1.bias",
    ]
    users = [n.name for n in model.graph.node if "tower.conv1.weight" in n.input]
    assert users == ["tower.conv1", "tower@2.conv1"]


def test_siamese_equals_its_pytorch_twin() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime

    nn = torch.nn
    torch.manual_seed(0)
    tower = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3), nn.ReLU()
    )
    fc = nn.Linear(16, 3)
    weights = {
        "tower.conv1.weight": tower[0].weight,
        "tower.conv1.bias": tower[0].bias,
        "tower.conv2.weight": tower[3].weight,
        "tower.conv2.bias": tower[3].bias,
        "d.fc1.weight": fc.weight,
        "d.fc1.bias": fc.bias,
    }
    arrays = {k: v.detach().numpy() for k, v in weights.items()}
    model = emit.to_onnx(netdsl.parse(SIAMESE), weights=arrays, mode="inference")
    x = feeds(model, seed=1)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, x)
    with torch.no_grad():
        a, b = (tower(torch.from_numpy(x[k])) for k in ("a", "b"))
        want = fc(torch.cat([a, b], 1).mean((2, 3))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


SHARED_BN = """
net s:
    input a: 1x8x8, b: 1x8x8
    t = [conv3x3(4) -> bn -> relu]
    ya = a -> t
    output d: [ya, b -> t] -> add -> gap -> fc(10)
"""


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda: __import__("netdsl.backends.train.graph", fromlist=["x"]).check_trainable(
                netdsl.parse(SHARED_BN)
            ),
            "training does not handle",
        ),
        (
            lambda: __import__("netdsl.backends.passes.int8", fromlist=["x"]).quantize_int8(
                emit.to_onnx(netdsl.parse(SIAMESE)), np.zeros((1, 1, 20, 20), np.float32)
            ),
            "calibration feeds a; this model takes a, b",
        ),
    ],
    ids=["train", "int8"],
)
def test_refused_with_the_reason(call: object, fragment: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        call()  # type: ignore[operator]
    assert fragment in caught.value.render()


def test_a_shared_batch_norm_folds_once_into_the_shared_conv() -> None:
    """Both uses of the block read one folded conv (weight and new bias); no batch norm is
    left; the outputs equal the unfolded inference model's."""
    import onnxruntime

    net = netdsl.parse(SHARED_BN)
    rng = np.random.default_rng(0)
    weights = {
        "t.bn1.scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "t.bn1.bias": rng.normal(size=4).astype(np.float32),
        "t.bn1.mean": rng.normal(size=4).astype(np.float32),
        "t.bn1.var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
    }
    plain = emit.to_onnx(net, weights=weights, mode="inference", seed=4)
    folded = emit.to_onnx(net, weights=weights, mode="inference", fold_bn=True, seed=4)
    assert not [n for n in folded.graph.node if n.op_type == "BatchNormalization"]
    convs = [n for n in folded.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and len({tuple(n.input[1:]) for n in convs}) == 1
    assert {t.name for t in folded.graph.initializer} >= {"t.conv1.weight", "t.conv1.bias"}
    x = feeds(plain, seed=2)
    want, got = (
        onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, x
        )[0]
        for m in (plain, folded)
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "batch"), [("siamese", 2), ("two_stream", 1)])
def test_zoo_graph_equals_its_pytorch_twin(name: str, batch: int) -> None:
    if name == "two_stream" and not os.environ.get("NETDSL_SLOW_TESTS"):
        pytest.skip("slow (181 M parameters, 16 s): set NETDSL_SLOW_TESTS=1")
    """The zoo's Siamese net (L1 distance: sub, abs) and two-stream net (mean of two softmaxes)
    compute what their twins in bench/peers_streams.py compute, given the twins' weights (in
    the same order, shape by shape)."""
    torch = pytest.importorskip("torch")
    import onnxruntime

    from bench import peers_streams

    torch.manual_seed(0)
    twin, shapes = getattr(peers_streams, name)()
    twin.eval()
    net = netdsl.load(name)
    tensors = [(n.name, w) for n in net.nodes if not n.shares for w in n.weights]
    theirs = list(twin.state_dict().values())
    assert [tuple(w.shape) for _, w in tensors] == [tuple(t.shape) for t in theirs]
    arrays = {f"{n}.{w.name}": t.numpy() for (n, w), t in zip(tensors, theirs, strict=True)}
    model = emit.to_onnx(net, weights=arrays, mode="inference")
    rng = np.random.default_rng(3)
    names = [v.name for v in model.graph.input]
    x = {n: rng.random((batch, *s), dtype=np.float32) for n, s in zip(names, shapes, strict=True)}
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (got,) = session.run(None, x)
    with torch.no_grad():
        want = twin(*(torch.from_numpy(a) for a in x.values())).numpy()
    assert got.shape == want.shape
    # default initialisation squashes the outputs together (a sigmoid near 0.5, softmaxes near
    # 1/101), so the error is held to a small part of their spread as well
    error, spread = float(np.abs(got - want).max()), float(np.ptp(want))
    assert error < 1e-6 and error < 0.01 * spread, (error, spread)
