"""`load(..., input_shape=...)` (the CLI's `--input CxHxW`): the input line's sizes replaced,
the rank kept; every later shape follows, checked against onnxruntime running the model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import netdsl


@pytest.mark.parametrize(
    ("target", "shape", "output", "params"),
    [
        ("resnet18", (3, 64, 64), (1000,), 11_689_512),  # global pooling: params unchanged
        ("resnet18", (3, 97, 131), (1000,), 11_689_512),  # odd sizes, not square
        ("lenet5", (1, 36, 36), (10,), 61_706 + 120 * 4 * 84 - 120 * 84),  # fc1 sees 120x2x2
        ("lenet5", (3, 32, 32), (10,), 61_706 + 2 * 6 * 25),  # conv1 takes 3 channels
        ("fcn32s", (3, 64, 64), (21, 64, 64), None),  # a dense net follows its input
    ],
)
def test_the_input_line_is_replaced(
    target: str, shape: tuple[int, ...], output: tuple[int, ...], params: int | None
) -> None:
    net = netdsl.load(target, input_shape=shape)
    assert net.input_shape == shape and net.output_shape == output
    if params is not None:
        assert net.params == params


@pytest.mark.parametrize("target", ["resnet18", "lenet5"])
def test_onnxruntime_runs_the_net_at_the_new_size(target: str) -> None:
    pytest.importorskip("onnxruntime")
    from netdsl.backends.onnx.compile import CompileOptions, compile_net
    from netdsl.backends.runtime import ort

    shape = (3, 48, 40) if target == "resnet18" else (1, 40, 40)
    net = netdsl.load(target, input_shape=shape)
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    y = ort.run(compile_net(net, CompileOptions(mode="inference")), x)
    assert y.shape == (2, *net.output_shape)


@pytest.mark.parametrize(
    ("target", "shape", "fragment"),
    [
        ("resnet18", (64, 64), "input shape 64x64 has 2 dimension(s); resnet18's input line has 3"),
        ("lenet5", (1, 20, 20), "needs an input of at least"),  # too small, said where
    ],
)
def test_a_size_the_net_cannot_take_is_one_error(
    target: str, shape: tuple[int, ...], fragment: str
) -> None:
    with pytest.raises(netdsl.NetError, match=re.escape(fragment)) as caught:
        netdsl.load(target, input_shape=shape)
    assert caught.value.diagnostics[0].span is not None


def test_a_vector_input_takes_one_size(tmp_path: Path) -> None:
    (tmp_path / "mlp.net").write_text("input 20\nfc(16) -> relu -> fc(10)\n")
    net = netdsl.load(tmp_path / "mlp.net", input_shape=(30,))
    assert net.input_shape == (30,) and net.params == 30 * 16 + 16 + 16 * 10 + 10
