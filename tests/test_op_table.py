"""The op index agrees with every table keyed by op: no op can be half-added.

For each op of `netdsl.ops.every_op()` a tiny net holding it is emitted, and the ONNX op types
its layer's nodes come out as are collected (nodes are named after their layer). Then: the op
has a shape rule (or a lowering into ops that have), an emitter, an initialisation for each of
its weights, a training rule for each op type of its training form (or a reasoned refusal), an
fp16 decision for each op type, and a TensorRT entry for each op type of its inference form.
The gradient column reads `backends/train/grad.py`'s table where that module exists.
"""

from __future__ import annotations

import importlib.util

import onnx
import pytest

import netdsl
from netdsl import ops, rules
from netdsl.backends.onnx import emit, weights
from netdsl.backends.passes import fp16
from netdsl.backends.tensorrt import support
from netdsl.backends.train import graph as train_graph

# op -> a tiny net that holds it (the op's layer is the last one written)
NETS = {
    "conv": "input 2x6x6\nconv3x3(2)",
    "dwconv": "input 2x6x6\ndwconv3x3",
    "sepconv": "input 2x6x6\nsepconv3x3(3)",
    "deconv": "input 2x6x6\ndeconv(2)",
    "maxpool": "input 2x7x7\nmaxpool3x3/2(ceil=true)",
    "avgpool": "input 2x7x7\navgpool3x3/2(p=1)",
    "gap": "input 2x6x6\ngap",
    "gmp": "input 2x6x6\ngmp",
    "fc": "input 2x6x6\nfc(3)",
    "flatten": "input 2x6x6\nflatten",
    "relu": "input 2x6x6\nrelu",
    "leakyrelu": "input 2x6x6\nleakyrelu",
    "sigmoid": "input 2x6x6\nsigmoid",
    "tanh": "input 2x6x6\ntanh",
    "softmax": "input 2x6x6\nsoftmax",
    "identity": "input 2x6x6\nidentity",
    "abs": "input 2x6x6\nabs",
    "bn": "input 2x6x6\nbn",
    "dropout": "input 2x6x6\ndropout(0.5)",
    "lrn": "input 2x6x6\nlrn(3)",
    "add": "input 2x6x6\nres[conv3x3(2)]",
    "concat": "input 2x6x6\n{conv1x1(2) | conv3x3(2)}",
    "mul": "input 4x6x6\nscale[gap -> fc(4) -> sigmoid]",
    "mean": "net m:\n    input x: 2x6x6\n    y = x -> conv1x1(2)\n    [x, y, x -> relu] -> mean",
    "sub": "net m:\n    input x: 2x6x6\n    y = x -> conv1x1(2)\n    [x, y] -> sub",
    "local": "input 2x6x6\nlocal3x3(3)",
    "reshape": "input 2x6x6\nreshape(4, -1)",
    "transpose": "input 2x6x6\ntranspose(3, 1, 2)",
    "upsample": "input 2x3x3\nupsample(2)",
    "crop": "input 2x6x6\ncrop(3)",
    "pad": "input 2x6x6\npad(1)",
    "channels": "input 4x6x6\nchannels(1, 3)",
    "adaptiveavgpool": "input 2x7x7\nadaptiveavgpool(3)",
    "adaptivemaxpool": "input 2x7x7\nadaptivemaxpool(3)",
    "gated": "input 4x6x6\ngated",
}

HAS_GRAD = importlib.util.find_spec("netdsl.backends.train.grad") is not None


def layers(net: netdsl.ShapedNet, op: str) -> set[str]:
    """The names of the net's layers that `op` became (a lowered op: its parts)."""
    return {n.name for n in net.nodes if n.op == op or n.name.split(".")[0].startswith(op)}


def op_types(model: onnx.ModelProto, names: set[str]) -> set[str]:
    """The ONNX op types of the nodes made for the layers `names` (`layer` or `layer.suffix`)."""
    return {
        node.op_type
        for node in model.graph.node
        if any(node.name == n or node.name.startswith(n + ".") for n in names)
    }


def tiny(op: str) -> tuple[netdsl.ShapedNet, set[str]]:
    net = netdsl.parse(NETS[op], f"{op}.net")
    names = layers(net, op)
    assert names, f"the tiny net for {op} holds no {op} layer"
    return net, names


def test_the_index_and_the_tables_name_the_same_ops() -> None:
    every = set(ops.every_op())
    assert set(NETS) == every, "give every op a tiny net in NETS"
    assert set(rules.RULES) | set(rules.LOWERINGS) == every
    assert set(emit.EMITTERS) == set(rules.RULES)
    assert set(train_graph.TRAINING_EMITTERS) <= set(rules.RULES)
    assert set(train_graph.REFUSED) <= every


@pytest.mark.parametrize("op", ops.every_op())
def test_shape_rule_and_emitter(op: str) -> None:
    net, names = tiny(op)
    for node in net.nodes:
        if node.name in names:
            assert node.op in rules.RULES and node.op in emit.EMITTERS
    assert op in rules.RULES or op in rules.LOWERINGS
    inference = emit.to_onnx(net, mode="inference")
    onnx.checker.check_model(inference)
    assert op_types(inference, names) or op in ("identity", "dropout")  # those two vanish


@pytest.mark.parametrize("op", ops.every_op())
def test_every_weight_has_an_initialiser(op: str) -> None:
    net, names = tiny(op)
    for node in net.nodes:
        for w in node.weights if node.name in names else ():
            assert w.name in weights.CONSTANTS or (w.name == "weight" and node.op in weights.FANS)
    drawn = weights.initialise(net)  # draws every tensor, or fails on an undecided one
    assert set(drawn) == {f"{n.name}.{w.name}" for n in net.nodes for w in n.weights}


@pytest.mark.parametrize("op", ops.every_op())
def test_a_training_rule_or_a_reasoned_refusal(op: str) -> None:
    """onnxruntime-training's form (train/graph.py) trains the op or refuses it with a reason;
    the native step (train/step.py, where it exists) has a gradient rule for every ONNX op type
    the op's training forms are written in, and builds the whole step."""
    net, names = tiny(op)
    classifier = netdsl.parse(NETS[op] + " -> fc(2)", f"{op}.net")
    types = op_types(emit.to_onnx(net, mode="train"), names)
    refused = {node.op for node in net.nodes if node.name in names} & set(train_graph.REFUSED)
    if refused:
        assert all(len(train_graph.REFUSED[o]) > 20 for o in refused)  # says why
        with pytest.raises(netdsl.NetError, match="cannot train"):
            train_graph.check_trainable(net)
    else:
        form = train_graph.training_graph(classifier, weights.initialise(classifier))
        types |= op_types(form.model, names)
    assert types or op in ("identity", "softmax")
    if not HAS_GRAD:
        pytest.skip("backends/train/grad.py (gradients per ONNX op type) does not exist yet")
    from netdsl.backends.train import grad

    missing = {t for t in types if t not in grad.GRADIENTS and t not in grad.REFUSED}
    assert not missing, f"{op}: no gradient rule for {sorted(missing)}"
    if importlib.util.find_spec("netdsl.backends.train.step") is not None:
        from netdsl.backends.train.step import to_training_step

        assert to_training_step(classifier).model.graph.node  # the backward walk covers it


@pytest.mark.parametrize("op", ops.every_op())
def test_an_fp16_decision(op: str) -> None:
    net, names = tiny(op)
    types = op_types(emit.to_onnx(net, mode="inference"), names)
    types |= op_types(emit.to_onnx(net, mode="train"), names)
    missing = types - set(fp16.PRECISION)
    assert not missing, f"{op}: fp16.PRECISION has no decision for {sorted(missing)}"


@pytest.mark.parametrize("op", ops.every_op())
def test_a_tensorrt_entry(op: str) -> None:
    net, names = tiny(op)
    types = op_types(emit.to_onnx(net, mode="inference"), names)
    missing = types - set(support.SUPPORTED)
    assert not missing, f"{op}: TensorRT's table has no entry for {sorted(missing)}"
    assert [d.render() for d in support.check_nets([net])] == []
