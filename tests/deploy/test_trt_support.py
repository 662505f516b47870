"""The static TensorRT check: every zoo net compiles to a graph TensorRT's ONNX parser takes
(fp32 and fp16), and graphs it would refuse are refused with the layer and its `.net` line.

TensorRT itself cannot be installed here; the table is onnx-tensorrt's published operator list
(see backends/trt_support.py)."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.tensorrt.support import check_model, check_nets
from netdsl.cli import main
from netdsl.zoo import entries


@pytest.mark.parametrize("name", [e.name for e in entries()])
def test_every_zoo_net_fits_tensorrt(name: str) -> None:
    assert [p.render() for p in check_nets([netdsl.load(name)])] == []


def test_training_form_is_refused_with_layer_and_line() -> None:
    net = netdsl.parse("input 3x8x8\nconv3x3(4) -> bn\n-> dropout(0.5) -> gap", "t.net")
    problems = check_model(to_onnx(net, mode="train"))
    rendered = [p.render() for p in problems]
    assert any(
        r.startswith("t.net:2:15: error: bn1: batch norm in training mode") for r in rendered
    )
    assert any(
        r.startswith("t.net:3:4: error: dropout1: dropout in training mode") for r in rendered
    )


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
    elif change == "opset":
        model.opset_import[0].version = 21
    return model


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("op", "conv1: the ONNX op ConvInteger is not in TensorRT's supported-operator list"),
        ("dilations", "maxpool1: MaxPool dilations must be 1"),
        ("opset", "opset 21 is outside 9-20"),
    ],
)
def test_what_tensorrt_would_refuse(change: str, fragment: str) -> None:
    assert any(fragment in p.render() for p in check_model(edited(change)))


def test_check_target_tensorrt_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--target", "tensorrt", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "tensorrt: every op, attribute and type fits" in out
