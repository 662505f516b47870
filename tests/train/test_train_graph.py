"""backends/train_graph.py: the training form of a net, checked against two oracles.

Forward: the training graph's logits against the emitter's own model run by onnxruntime (batch
norm in training mode, i.e. on batch statistics; dropout nets against the inference model with
a mask of ones). Backward: onnxruntime-training's gradients against central finite differences
of the same loss along a random direction. Each op the training form rewrites (bn, dropout,
lrn, gmp, avgpool with padding and ceil mode, add of three branches) appears in the table.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backends.onnx import weights as wt
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.train.graph import LOGITS, inference_model, training_graph, with_logits
from netdsl.backends.train.loop import _quiet_stderr, cross_entropy
from netdsl.source import NetError

ort = pytest.importorskip("onnxruntime")

NETS = {
    "bn_conv": "input 2x6x6\nconv3x3(4) -> bn -> relu -> fc(3) -> softmax",
    "bn_fc": "input 1x4x4\nflatten -> fc(6) -> bn -> tanh -> fc(3)",
    "lrn_gmp": "input 3x6x6\nconv3x3(8) -> lrn(size=3, alpha=0.5, beta=0.75, k=1) -> relu -> gmp "
    "-> fc(3)",
    "avgpool_ceil": "input 2x9x9\nconv3x3(4) -> avgpool3x3/2(p=1, ceil=true) -> fc(3) -> softmax",
    "avgpool_tiles": "input 1x9x9\nconv3x3(3) -> tanh -> avgpool -> fc(3) -> softmax",
    "branches": "input 2x6x6\nconv3x3(4) -> {conv1x1(4) | conv3x3(4) | identity}+ -> relu -> "
    "scale[gap -> fc(2) -> relu -> fc(4) -> sigmoid] -> maxpool3x3/2(p=1, ceil=true)"
    " -> fc(3) -> softmax",
    "dense_dw": "input 3x6x6\nconv3x3(4) -> dense[bn -> relu -> conv3x3(2)]*2 -> dwconv3x3 -> "
    "leakyrelu -> gap -> fc(3) -> softmax",
    "dropout": "input 1x6x6\nconv3x3(4) -> relu -> flatten -> dropout(p=0.3) -> fc(3) -> softmax",
}
BATCH = 5


def _setup(text: str) -> tuple[netdsl.ShapedNet, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = netdsl.parse(text)
    params = wt.initialise(net, "glorot", seed=1)
    rng = np.random.default_rng(2)
    for name in params:  # batch norm with non-trivial affine terms
        if name.endswith(".scale"):
            params[name] = (0.5 + rng.random(params[name].shape)).astype(np.float32)
        elif name.endswith(".bias"):
            params[name] = (0.1 * rng.standard_normal(params[name].shape)).astype(np.float32)
    x = rng.random((BATCH, *net.input_shape), dtype=np.float32)
    y = rng.integers(0, net.output_shape[0], BATCH)
    return net, params, x, y


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result: np.ndarray = sess.run([output], feeds)[0]
    return result


def _feeds(graph: object, x: np.ndarray) -> dict[str, np.ndarray]:
    masks = {m.input: np.ones((len(x), *m.shape), np.float32) for m in graph.masks}  # type: ignore[attr-defined]
    return {"input": x, **masks}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", NETS)
def test_forward_matches_the_emitter(name: str) -> None:
    net, params, x, _ = _setup(NETS[name])
    graph = training_graph(net, params)
    onnx.checker.check_model(graph.model, full_check=True)
    logits = _run(graph.model, _feeds(graph, x), LOGITS)
    mode = "inference" if graph.masks else "train"  # dropout: the mask of ones is the identity
    reference = to_onnx(net, mode=mode, seed=1)
    for tensor in reference.graph.initializer:
        tensor.CopyFrom(onnx.numpy_helper.from_array(params[tensor.name], tensor.name))
    expected = _run(reference, {"input": x}, "output")
    got = _softmax(logits) if net.nodes[net.output].op == "softmax" else logits
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NETS)
def test_gradients_match_finite_differences(name: str) -> None:
    """Per tensor, along a random direction. ReLU becomes tanh here: a kink between the two
    probes of a difference would make the difference wrong, not the gradient; max pools keep
    theirs, hence the small step."""
    from onnxruntime.training import artifacts
    from onnxruntime.training.api import CheckpointState, Module

    net, params, x, y = _setup(re.sub(r"\brelu\b", "tanh", NETS[name]))
    graph = training_graph(net, params)
    feeds = _feeds(graph, x)
    names = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights if w.trainable]
    with tempfile.TemporaryDirectory() as work, _quiet_stderr():
        artifacts.generate_artifacts(
            graph.model,
            requires_grad=names,
            loss=artifacts.LossType.CrossEntropyLoss,
            artifact_directory=work,
            loss_input_names=[LOGITS],
            additional_output_names=[LOGITS],
        )
        state = CheckpointState.load_checkpoint(str(Path(work) / "checkpoint"))
        module = Module(str(Path(work) / "training_model.onnx"), state)
        loss = float(module(*feeds.values(), y)[0])
        grads = {n: state.parameters[n].grad.copy() for n in names}

    def loss_at(values: dict[str, np.ndarray]) -> float:
        model = training_graph(net, values).model
        return float(cross_entropy(_run(model, feeds, LOGITS), y).mean())

    assert loss == pytest.approx(loss_at(params), rel=1e-5)
    rng = np.random.default_rng(3)
    eps = 1e-4 if "max" in NETS[name] or "gmp" in NETS[name] else 1e-3
    for n in names:
        d = rng.standard_normal(params[n].shape).astype(np.float32)
        ahead, behind = ({**params, n: params[n] + s * eps * d} for s in (1, -1))
        numeric = (loss_at(ahead) - loss_at(behind)) / (2 * eps)
        assert float((grads[n] * d).sum()) == pytest.approx(numeric, rel=1e-2, abs=2e-3), n


def test_batch_statistics_are_outputs() -> None:
    net, params, x, _ = _setup("input 2x3x3\nbn -> flatten -> fc(2)")
    graph = training_graph(net, params)
    (stats,) = graph.stats
    assert (stats.layer, stats.per_image, stats.momentum) == ("bn1", 9, 0.1)
    sess = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    mean, var = sess.run([stats.mean, stats.var], {"input": x})
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-4)


def test_training_graph_has_no_op_without_a_gradient() -> None:
    net, params, _, _ = _setup(NETS["lrn_gmp"] + "\n")
    ops = {n.op_type for n in training_graph(net, params).model.graph.node}
    assert not ops & {
        "LRN",
        "GlobalMaxPool",
        "ReduceMax",
        "AveragePool",
        "Sum",
        "Dropout",
        "BatchNormalization",
        "Softmax",
    }


def test_inference_model_takes_the_weights_and_shows_its_logits() -> None:
    net, params, x, _ = _setup(NETS["bn_conv"])
    params["bn1.mean"] = np.full(4, 0.3, np.float32)
    params["bn1.var"] = np.full(4, 2.0, np.float32)
    model = inference_model(net, params, {"trained": "yes"})
    got = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert got.keys() == params.keys()
    for name, value in got.items():
        np.testing.assert_array_equal(value, params[name])
    assert {p.key: p.value for p in model.metadata_props}["trained"] == "yes"
    evaluated, logits = with_logits(model)
    assert [o.name for o in model.graph.output] == ["output"]
    sess = ort.InferenceSession(evaluated.SerializeToString(), providers=["CPUExecutionProvider"])
    scores, z = sess.run(["output", logits], {"input": x})
    np.testing.assert_allclose(scores, _softmax(z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("input 3x8x8\nconv3x3(4) ->\n  deconv(4) -> fc(3)", "<string>:3:3: error: cannot train"),
        (
            "input 3x8x8\nconv3x3(4) -> relu",
            "must be a vector of at least 2 class scores, got 4x8x8",
        ),
        ("input 3x8x8\nflatten -> fc(1)", "must be a vector of at least 2 class scores, got 1"),
    ],
)
def test_untrainable_nets_are_refused_with_their_line(text: str, fragment: str) -> None:
    net = netdsl.parse(text)
    with pytest.raises(NetError) as error:
        training_graph(net, wt.initialise(net))
    assert fragment in str(error.value)
