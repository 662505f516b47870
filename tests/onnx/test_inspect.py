"""The summary of any ONNX file: multiply-adds against PyTorch's FLOP counter on graphs netdsl
did not write, per-layer and total agreement with netdsl's own summary for compiled zoo nets
(parameters, buffers, multiply-adds, and netdsl's shapes against onnx.shape_inference's), and
one clear NetError for every file that is not a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch.utils.flop_counter import FlopCounterMode

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.runtime.inspect import summarise_onnx
from netdsl.rules import dims

RNG = np.random.default_rng(0)


def one_node(op: str, x: tuple[int, ...], w: tuple[int, ...], **attrs: object) -> onnx.ModelProto:
    """A model of one `op` on input N x `x` with the weight `w`; the output's shape is left to
    shape inference."""
    weight = numpy_helper.from_array(RNG.standard_normal(w).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w"], ["y"], name="the_node", **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def torch_macs(run: object) -> int:
    with FlopCounterMode(display=False) as counter:
        run()  # type: ignore[operator]
    return counter.get_total_flops() // 2


# (op, input without batch, weight, attributes, the same computation in PyTorch at batch 1)
FOREIGN = [
    (
        "Conv",
        (8, 17, 17),
        (16, 4, 3, 3),
        {"group": 2, "strides": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
        lambda x, w: F.conv2d(x, w, stride=2, dilation=2, padding=1, groups=2),
    ),
    (
        "ConvTranspose",
        (8, 10, 10),
        (8, 4, 3, 3),
        {"group": 2, "strides": [2, 2]},
        lambda x, w: F.conv_transpose2d(x, w, stride=2, groups=2),
    ),
    ("Gemm", (64,), (10, 64), {"transB": 1}, lambda x, w: x @ w.T),
    ("Gemm", (64,), (64, 10), {}, lambda x, w: x @ w),
    ("MatMul", (3, 5, 7), (7, 4), {}, lambda x, w: x @ w),
    ("Conv", (2, 9, 11, 13), (6, 2, 3, 1, 5), {}, lambda x, w: F.conv3d(x, w)),
]


@pytest.mark.parametrize(("op", "x", "w", "attrs", "run"), FOREIGN, ids=lambda v: str(v)[:20])
def test_foreign_graphs_count_as_pytorch(
    tmp_path: Path, op: str, x: tuple[int, ...], w: tuple[int, ...], attrs: dict, run: object
) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(one_node(op, x, w, **attrs), path)
    (row,) = summarise_onnx(path).rows
    tx, tw = torch.randn(1, *x), torch.randn(*w)
    expected = run(tx, tw)  # type: ignore[operator]
    assert row["macs"] == torch_macs(lambda: run(tx, tw))  # type: ignore[operator]
    assert row["params"] == int(np.prod(w))
    assert row["output"] == "x".join(["N", *map(str, expected.shape[1:])])


ZOO = [
    "lenet5",
    "resnet18",
    "googlenet",
    "densenet121",
    "se_resnet50",
    "xception",
    "mnist_mlp",
]
UPSAMPLE = "net up:\n  input 3x32x32\n  conv3x3/2(16, p=1) -> relu -> deconv4x4/2(8, p=1) -> deconv2x2/2(4, groups=2)\n"


# inference form for every net; the training form (batch norm with its statistics as inputs
# of a training-mode node) for two
CASES = [(n, "inference") for n in [*ZOO, "up"]] + [("resnet18", "train"), ("up", "train")]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_compiled_nets_agree_with_netdsl(tmp_path: Path, name: str, mode: str) -> None:
    net = netdsl.parse(UPSAMPLE) if name == "up" else netdsl.load(name)
    path = tmp_path / "m.onnx"
    onnx.save(to_onnx(net, mode=mode), path)
    table = summarise_onnx(path)
    assert (table.totals["params"], table.totals["buffers"], table.totals["macs"]) == (
        net.params,
        net.buffers,
        net.macs,
    )
    by_name = {r["name"]: r for r in table.rows}
    for node in net.nodes:
        if node.op in ("conv", "dwconv", "deconv", "fc", "add", "concat", "maxpool"):
            row = by_name[node.name]
            assert row["output"] == f"Nx{dims(node.shape)}", node.name
            assert row["macs"] == node.macs, node.name


@pytest.mark.parametrize(
    ("precision", "target"),
    [("fp16", "onnxruntime"), ("int8", "onnxruntime"), ("int8", "tensorrt")],
)
def test_reduced_precision_models_count_the_same(
    tmp_path: Path, precision: str, target: str
) -> None:
    from netdsl.backends.onnx.compile import Calibration, CompileOptions, compile_net

    net = netdsl.load("lenet5")
    calibration = Calibration("digits", "pad", 32) if precision == "int8" else None
    options = CompileOptions(
        mode="inference", precision=precision, calibration=calibration, int8_target=target
    )  # type: ignore[arg-type]
    onnx.save(compile_net(net, options), tmp_path / "m.onnx")
    table = summarise_onnx(tmp_path / "m.onnx")
    assert (table.totals["params"], table.totals["macs"]) == (net.params, net.macs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"net a:\n  input 1x28x28\n  fc(10)\n",
            "is not an ONNX model: it starts with text ('net a:')",
        ),
        ("# ü\ninput 3x8x8\n".encode(), "it starts with text"),
        (b"", "is not an ONNX model (no graph"),
        (bytes(range(256)), "is not an ONNX model"),
        (b"\x08\x07\x12\x06netdsl" + b"\xff" * 40, "is not an ONNX model"),
    ],
)
def test_files_that_are_not_models_are_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(netdsl.NetError) as caught:
        summarise_onnx(path)
    assert message in caught.value.render()
    assert "\n" not in caught.value.render().strip()


def test_a_truncated_model_and_odd_paths_are_refused(tmp_path: Path) -> None:
    whole = to_onnx(netdsl.load("lenet5"), mode="inference").SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole[: len(whole) // 2])
    for path, message in [
        (cut, "is not an ONNX model"),
        (tmp_path, "is a folder"),
        (tmp_path / "absent.onnx", "no such file"),
    ]:
        with pytest.raises(netdsl.NetError) as caught:
            summarise_onnx(path)
        assert message in caught.value.render()


def test_the_table_reads_as_text_markdown_and_json(tmp_path: Path) -> None:
    path = tmp_path / "lenet5.onnx"
    onnx.save(to_onnx(netdsl.load("lenet5"), mode="inference"), path)
    table = summarise_onnx(path)
    text = str(table)
    assert text.startswith("lenet5.onnx: graph lenet5, opset ai.onnx 17, from netdsl")
    assert "inputs: input Nx1x32x32" in text and "outputs: output Nx10" in text
    assert "conv1" in table.to_markdown() and table.to_dict()["totals"]["macs"] == 416_520


def test_command_line_summarises_onnx_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from netdsl.cli import main

    path = tmp_path / "lenet5.onnx"
    onnx.save(to_onnx(netdsl.load("lenet5"), mode="inference"), path)
    assert main(["summary", str(path)]) == 0
    assert capsys.readouterr().out.startswith("lenet5.onnx: graph lenet5")
    assert main(["summary", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["macs"] == 416_520
    text = tmp_path / "lenet5.net.onnx"
    text.write_text("net a:\n  input 1x28x28\n  fc(10)\n")
    assert main(["summary", str(text)]) == 1
    err = capsys.readouterr().err
    assert "is not an ONNX model: it starts with text" in err and "UnicodeDecodeError" not in err


def test_external_weights_are_counted_and_never_followed_out_of_the_folder(tmp_path: Path) -> None:
    net = netdsl.load("lenet5")
    path = tmp_path / "ext.onnx"
    onnx.save(
        to_onnx(net, mode="inference"),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    assert summarise_onnx(path).totals["params"] == net.params
    sneaky = onnx.load(str(path), load_external_data=False)
    for tensor in sneaky.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(sneaky, tmp_path / "sneaky.onnx")
    with pytest.raises(netdsl.NetError, match="etc/passwd"):
        summarise_onnx(tmp_path / "sneaky.onnx")
