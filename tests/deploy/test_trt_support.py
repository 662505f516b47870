"""The static TensorRT check: every zoo net compiles to a graph TensorRT's ONNX parser takes
(fp32 and fp16), and graphs it would refuse are refused with the layer and its `.net` line.

TensorRT itself cannot be installed here; the table is onnx-tensorrt's published operator list
(see backends/tensorrt/support.py). Problems are `netdsl.Diagnostic`s located through the
emitter's node -> span map."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

import netdsl
from netdsl.backends.onnx.emit import emit, layer_spans, locate, to_onnx
from netdsl.backends.tensorrt.support import check_model, check_nets
from netdsl.cli import main
from netdsl.zoo import entries


@pytest.mark.parametrize("name", [e.name for e in entries()])
def test_every_zoo_net_fits_tensorrt(name: str) -> None:
    assert [p.render() for p in check_nets([netdsl.load(name)])] == []


def test_training_form_is_refused_with_layer_and_line() -> None:
    net = netdsl.parse("input 3x8x8\nconv3x3(4) -> bn\n-> dropout(0.5) -> gap", "t.net")
    emitted = emit(net, mode="train")
    problems = check_model(emitted.model, spans=emitted.spans)
    assert all(isinstance(p, netdsl.Diagnostic) for p in problems)
    rendered = [p.render() for p in problems]
    assert any(
        r.startswith("t.net:2:15: error: bn1: batch norm in training mode") for r in rendered
    )
    assert any(
        r.startswith("t.net:3:4: error: dropout1: dropout in training mode") for r in rendered
    )
    # the caret points at the layer, as in every other error
    assert any(r.endswith("conv3x3(4) -> bn\n                ^^") for r in rendered)


def test_nodes_a_pass_added_are_located_at_their_layer() -> None:
    """The fp16 pass adds Casts named after a layer (`softmax1.cast_in0`); the map's prefix
    lookup finds the layer, and rebuilding the map from the net alone gives the same spans."""
    net = netdsl.parse("input 3x8x8\nconv3x3(4) -> softmax", "c.net")
    emitted = emit(net, mode="inference")
    assert {k: v for k, v in layer_spans(net).items() if k in emitted.spans} == {
        k: v for k, v in emitted.spans.items() if k in layer_spans(net)
    }
    cast = locate(emitted.spans, "softmax1.cast_in0")
    assert cast is not None and (cast.line, cast.column) == (2, 15)
    assert locate(emitted.spans, "nothing.here") is None


def edited(change: str) -> onnx.ModelProto:
    model = to_onnx(
        netdsl.parse("input 3x8x8\nconv3x3(4) -> maxpool -> gap", "e.net"), mode="inference"
    )
    node = next(
        n for n in model.graph.node if n.op_type == ("MaxPool" if change != "op" else "Conv")
    )
    if change == "op":
        node.op_type = "ConvInteger"
    elif change == "dilations":
        node.attribute.append(helper.make_attribute("dilations", [2, 2]))
    elif change == "rank4":
        kernel = next(a for a in node.attribute if a.name == "kernel_shape")
        kernel.ints[:] = [2, 2, 2, 2]
    elif change == "opset":
        model.opset_import[0].version = 21
    return model


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("op", "conv1: the ONNX op ConvInteger is not in TensorRT's supported-operator list"),
        ("dilations", "maxpool1: MaxPool dilations must be 1"),
        ("opset", "opset 21 is outside 9-20"),
        ("rank4", "maxpool1: MaxPool must be 1D, 2D or 3D"),
    ],
)
def test_what_tensorrt_would_refuse(change: str, fragment: str) -> None:
    assert any(fragment in p.render() for p in check_model(edited(change)))


def test_check_target_tensorrt_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--target", "tensorrt", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "tensorrt: every op, attribute and type fits" in out
