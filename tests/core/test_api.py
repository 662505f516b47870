"""The public API: `netdsl.__all__` is exactly what is documented, and parse, parse_all, load
and load_all behave as documented (text, a path, `path:net`, a zoo net's name or file stem)."""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import pytest

import netdsl

ROOT = Path(__file__).resolve().parents[2]
TWO = "net a(w=2):\n  input 3x8x8\n  conv1x1(w)\nnet b:\n  input 16\n  fc(3)\n"

# The documented API (netdsl/__init__.py and README): parse_all came with the multi-net files.
DOCUMENTED = {
    "parse",
    "parse_all",
    "load",
    "load_all",
    "NetError",
    "ShapedNet",
    "Node",
    "Diagnostic",
    "Span",
    "__version__",
    "summary",
}


def test_all_is_exactly_the_documented_api() -> None:
    assert set(netdsl.__all__) == DOCUMENTED
    assert len(netdsl.__all__) == len(DOCUMENTED)
    for name in netdsl.__all__:
        assert getattr(netdsl, name) is not None


def test_the_version_is_the_installed_one() -> None:
    assert netdsl.__version__ == metadata.version("netdsl")


def test_parse_gives_a_checked_net() -> None:
    net = netdsl.parse("input 1x28x28\nconv5x5(6) -> relu -> maxpool -> fc(10)")
    assert isinstance(net, netdsl.ShapedNet)
    assert (net.name, net.input_shape, net.output_shape) == ("net", (1, 28, 28), (10,))
    assert net.params == (25 * 6 + 6) + (6 * 14 * 14 * 10 + 10)
    assert net.macs == 6 * 28 * 28 * 25 + 6 * 14 * 14 * 10
    assert [(n.name, n.op, n.shape) for n in net.nodes] == [
        ("input", "input", (1, 28, 28)),
        ("conv1", "conv", (6, 28, 28)),
        ("relu1", "relu", (6, 28, 28)),
        ("maxpool1", "maxpool", (6, 14, 14)),
        ("fc1", "fc", (10,)),
    ]
    assert all(isinstance(n, netdsl.Node) for n in net.nodes)
    assert net.nodes[net.output] is net.nodes[-1]
    assert net.nodes[-1].note == "flattens 6x14x14 to 1176"


def test_nodes_keep_the_span_of_their_text() -> None:
    net = netdsl.parse("input 3x8x8\nconv3x3(4) -> relu", "spans.net")
    span = net.nodes[2].span
    assert isinstance(span, netdsl.Span)
    assert (span.source.name, span.line, span.column, span.end_column) == ("spans.net", 2, 15, 19)
    assert span.where == "spans.net:2:15"


def test_parse_picks_one_net_of_several_by_name() -> None:
    assert netdsl.parse(TWO, name="b").output_shape == (3,)
    assert netdsl.parse(TWO, name="a", overrides={"w": 5}).output_shape == (5, 8, 8)
    with pytest.raises(netdsl.NetError, match="holds 2 nets: a, b"):
        netdsl.parse(TWO)
    with pytest.raises(netdsl.NetError, match=r"has no net named 'c' \(it has: a, b\)"):
        netdsl.parse(TWO, name="c")


def test_parse_all_gives_every_net_in_order() -> None:
    nets = netdsl.parse_all(TWO)
    assert [(n.name, n.output_shape) for n in nets] == [("a", (2, 8, 8)), ("b", (3,))]


def test_overrides_are_checked() -> None:
    with pytest.raises(netdsl.NetError, match="net 'a' has no parameter 'ww'") as caught:
        netdsl.parse(TWO, name="a", overrides={"ww": 5})
    assert caught.value.diagnostics[0].notes == ("did you mean 'w'?",)


@pytest.mark.parametrize(
    ("target", "name", "output"),
    [
        ("resnet50", "resnet50", (1000,)),  # a zoo net's name
        ("lenet5", "lenet5", (10,)),  # a zoo file's stem that holds one net
        (str(ROOT / "nets" / "lenet5.net"), "lenet5", (10,)),  # a path
        (ROOT / "nets" / "alexnet.net", None, None),  # a Path to a file of two nets: refused
        (f"{ROOT}/nets/vgg.net:vgg11_bn", "vgg11_bn", (1000,)),  # path:net
    ],
)
def test_load_targets(target: str | Path, name: str | None, output: tuple[int, ...]) -> None:
    if name is None:
        with pytest.raises(netdsl.NetError, match="holds 2 nets"):
            netdsl.load(target)
        return
    net = netdsl.load(target)
    assert (net.name, net.output_shape) == (name, output)


def test_load_by_name_and_overrides() -> None:
    assert netdsl.load("vgg", name="vgg13").name == "vgg13"
    assert netdsl.load("resnet18", overrides={"classes": 10}).output_shape == (10,)


def test_load_of_a_file_resolves_its_imports(write_net) -> None:  # type: ignore[no-untyped-def]
    write_net("def blk(c) = conv3x3(c)\n", "blocks.net")
    path = write_net('import "blocks.net"\nnet one:\n  input 3x8x8\n  blk(4)\n', "one.net")
    assert netdsl.load(path).params == 112
    assert netdsl.load(f"{path}:one").name == "one"


def test_load_all() -> None:
    assert [n.name for n in netdsl.load_all("vgg")] == [
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "vgg19_bn",
    ]
    assert [n.name for n in netdsl.load_all("resnet18")] == ["resnet18"]  # a target naming one
    assert [n.name for n in netdsl.load_all(f"{ROOT}/nets/mnist.net:mnist_mlp")] == ["mnist_mlp"]


def test_every_zoo_net_loads_by_name() -> None:
    from netdsl.zoo import entries

    for entry in entries():
        net = netdsl.load(entry.name)
        assert net.name == entry.name and net.params > 0


@pytest.mark.parametrize(
    ("target", "message", "notes"),
    [
        (
            "resnt50",
            "no file or zoo net named 'resnt50'",
            (
                "did you mean 'resnet50' or 'se_resnet50' or 'resnet50_v1'?",
                "`netdsl zoo` lists the zoo's nets",
            ),
        ),
        (
            "nowhere/at/all.net",
            "no file or zoo net named 'nowhere/at/all.net'",
            ("`netdsl zoo` lists the zoo's nets",),
        ),
        (
            f"{ROOT}/nets/vgg.net:vgg17",
            f"'{ROOT}/nets/vgg.net' has no net named 'vgg17' (it has: "
            "vgg11, vgg13, vgg16, vgg19, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn)",
            (),
        ),
    ],
)
def test_load_errors(target: str, message: str, notes: tuple[str, ...]) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.load(target)
    assert (caught.value.message, caught.value.diagnostics[0].notes) == (message, notes)


def test_a_net_error_carries_its_diagnostics() -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse("input 3x8x8\nconv3x3(4) ->\n  nope -> conv3x3(bad)", "here.net")
    error = caught.value
    assert isinstance(error, Exception)
    assert all(isinstance(d, netdsl.Diagnostic) for d in error.diagnostics)
    assert [(d.severity, d.message, d.span.line, d.span.column) for d in error.diagnostics] == [
        ("error", "unknown layer 'nope'", 3, 3),
        ("error", "unknown name 'bad'", 3, 19),
    ]
    assert (error.message, error.span) == (error.diagnostics[0].message, error.diagnostics[0].span)
    assert str(error) == error.render() == "\n".join(d.render() for d in error.diagnostics)
    assert error.render().startswith("here.net:3:3: error: unknown layer 'nope'\n    nope")


def test_a_net_error_can_be_made_and_rendered_without_a_place() -> None:
    error = netdsl.NetError("something is off", notes=["a hint"])
    assert error.render() == "error: something is off\n  note: a hint"
    assert error.span is None


def test_warnings_are_diagnostics_on_the_net() -> None:
    net = netdsl.parse("input 1x7x7\nmaxpool", "w.net")
    (warning,) = net.warnings
    assert isinstance(warning, netdsl.Diagnostic) and warning.severity == "warning"
    assert warning.render().startswith("w.net:2:1: warning: maxpool: stride")


def test_shaped_nets_are_frozen() -> None:
    net = netdsl.load("lenet5")
    for obj, field in ((net, "name"), (net.nodes[1], "shape"), (net.nodes[1].span, "line")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)


def test_parsing_twice_gives_equal_nets() -> None:
    text = "def blk(c) = res[conv3x3(c) -> bn]\ninput 4x8x8\nblk(4)*2 -> gap -> fc(3)"
    a, b = netdsl.parse(text), netdsl.parse(text)
    assert [(n.name, n.shape, n.params, n.macs) for n in a.nodes] == [
        (n.name, n.shape, n.params, n.macs) for n in b.nodes
    ]


# ---- once in test_public_api.py


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
