"""The public API is what `netdsl.__all__` says, and it behaves as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl

ROOT = Path(__file__).resolve().parents[2]


def test_all_is_the_documented_api() -> None:
    assert sorted(netdsl.__all__) == sorted(
        [
            "Diagnostic",
            "NetError",
            "Node",
            "ShapedNet",
            "Span",
            "__version__",
            "load",
            "load_all",
            "parse",
            "parse_all",
            "summary",
        ]
    )
    for name in netdsl.__all__:
        assert hasattr(netdsl, name)


def test_parse_returns_a_checked_net() -> None:
    net = netdsl.parse("input 1x28x28\nconv5x5(6) -> relu -> maxpool -> fc(10)")
    assert (net.output_shape, net.params) == ((10,), 6 * 26 + 6 * 14 * 14 * 10 + 10)
    assert [n.name for n in net.nodes] == ["input", "conv1", "relu1", "maxpool1", "fc1"]


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("resnet50", "resnet50"),
        (ROOT / "nets" / "lenet5.net", "lenet5"),
        (f"{ROOT}/nets/vgg.net:vgg11_bn", "vgg11_bn"),
    ],
)
def test_load_by_zoo_name_path_and_path_net(target: object, name: str) -> None:
    assert netdsl.load(str(target)).name == name


def test_load_all_and_parse_all_give_every_net() -> None:
    assert [n.name for n in netdsl.load_all("resnet")][:3] == ["resnet18", "resnet34", "resnet50"]
    text = "net a:\n input 4\n fc(2)\nnet b:\n input 4\n fc(3)\n"
    assert [n.output_shape for n in netdsl.parse_all(text)] == [(2,), (3,)]
    assert netdsl.parse(text, name="b").output_shape == (3,)


def test_overrides_set_net_parameters() -> None:
    assert netdsl.load("resnet18", overrides={"classes": 10}).output_shape == (10,)
    with pytest.raises(netdsl.NetError, match="has no parameter 'clases'"):
        netdsl.load("resnet18", overrides={"clases": 10})


def test_errors_carry_their_location() -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse("input 3x8x8\nconv3x3(4) ->\n  nope", "here.net")
    span = caught.value.span
    assert span is not None and (span.source.name, span.line, span.column) == ("here.net", 3, 3)
    assert caught.value.diagnostics[0].message == "unknown layer 'nope'"


def test_a_shaped_net_is_frozen() -> None:
    net = netdsl.load("lenet5")
    with pytest.raises(AttributeError):
        net.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        net.nodes[1].shape = (1,)  # type: ignore[misc]
