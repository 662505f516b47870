"""`netdsl compare` on models of several inputs and outputs: one `--input NAME=FILE` per input
(seeded random arrays for the others), every output compared.

The oracle is onnxruntime run here by hand on the very arrays compare feeds (input k of the
first model random from seed + k, or the file given): the differences compare reports must be
those of the outputs computed here, output by output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from netdsl.cli import main

ort = pytest.importorskip("onnxruntime")

NET = """
net pair:
    input a: 1x8x8, b: 2x8x8
    t = [conv3x3(2) -> relu]
    ya = a -> conv1x1(3) -> t
    yb = b -> conv1x1(3) -> t
    output same: [ya, yb] -> add -> gap -> fc(3)
    output aux: yb -> gap -> fc(4) -> softmax
"""


def _models(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The net, its ONNX model, and a copy where one bias of the `aux` head moved by 1."""
    net = tmp_path / "pair.net"
    net.write_text(NET)
    first = tmp_path / "pair.onnx"
    assert main(["compile", str(net), "-o", str(first), "--seed", "3"]) == 0
    model = onnx.load(str(first))
    for k, tensor in enumerate(model.graph.initializer):
        if tensor.name == "aux.fc1.bias":
            moved = numpy_helper.to_array(tensor).copy()
            moved[0] += 1.0  # one class's: a softmax ignores what all of them share
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(moved, tensor.name))
    second = tmp_path / "moved.onnx"
    onnx.save(model, str(second))
    return net, first, second


def _outputs(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def test_every_output_compared_on_the_same_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, second = _models(tmp_path)
    b = np.random.default_rng(9).random((5, 2, 8, 8), dtype=np.float32)
    np.save(tmp_path / "b.npy", b)
    args = ["compare", str(first), str(second), "--input", f"b={tmp_path / 'b.npy'}"]
    capsys.readouterr()
    assert main([*args, "--seed", "4", "--json"]) == 1  # aux differs
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == {"a": [5, 1, 8, 8], "b": [5, 2, 8, 8]}
    a = np.random.default_rng(4).random((5, 1, 8, 8), dtype=np.float32)  # input 0: seed + 0
    x, y = (_outputs(p, {"a": a, "b": b}) for p in (first, second))
    found = {d["output"]: d for d in report["outputs"]}
    assert set(found) == {"same", "aux"}
    for name in found:
        want = float(np.abs(x[name].astype(np.float64) - y[name]).max())
        assert found[name]["max_abs"] == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert found["same"]["max_abs"] == 0.0 and found["aux"]["max_abs"] > 1e-3
    assert [f.split(":")[0] for f in report["failures"]] == ["aux"]


def test_a_net_against_its_compiled_model_agrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, first, _ = _models(tmp_path)
    assert main(["compare", str(first), str(net), "--seed", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "a random input 2x1x8x8 (seed 3), b random input 2x2x8x8 (seed 4)" in out
    assert "same (2x3)" in out and "aux (2x4)" in out and "within tolerance" in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--input", "c=x.npy"], "no input 'c' to feed: the models take 2 inputs (a 1x8x8, b"),
        (["--input", "b=one.npy"], "input b: expected float values of shape N x 2x8x8, got"),
        (["--input", "b"], "--input 'b': give NAME=FILE"),
        (["--input", "b=none.npy"], "--input b: no such file"),
    ],
    ids=["unknown", "shape", "form", "missing"],
)
def test_wrong_inputs_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    _, first, _ = _models(tmp_path)
    for name, shape in (("x", (2, 1, 8, 8)), ("one", (2, 1, 8, 8))):
        np.save(tmp_path / f"{name}.npy", np.zeros(shape, np.float32))
    extra = [e.replace("=", f"={tmp_path}/") if "=" in e else e for e in extra]
    capsys.readouterr()
    assert main(["compare", str(first), *extra]) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_models_of_other_inputs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, _ = _models(tmp_path)
    assert main(["compare", str(first), "lenet5"]) == 1
    err = capsys.readouterr().err
    assert "A takes 2 inputs (a 1x8x8, b 2x8x8), B takes 1 input (input 1x32x32)" in err
