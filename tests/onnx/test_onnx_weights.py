"""Weights in and out of the ONNX backend: loading by name, mismatches, batch-norm folding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import netdsl
from netdsl.backends.onnx import weights as wt
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.passes.fold_bn import fold_bn
from netdsl.backends.runtime import ort

NET = """net small(classes=10):
    input 3x12x12
    conv3x3(8) -> bn -> relu -> dwconv3x3(p=1) -> bn -> relu
    -> res[conv3x3/2(16) -> bn -> relu -> conv3x3(16) -> bn] -> relu
    -> deconv2x2/2(4) -> bn -> relu -> gap -> fc(32) -> bn -> relu -> fc(classes) -> softmax
"""


def tensors(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def trained_looking(net: netdsl.ShapedNet, seed: int) -> dict[str, np.ndarray]:
    """Weights with batch-norm statistics far from 0 and 1, so folding has work to do."""
    params = tensors(to_onnx(net, seed=seed))
    rng = np.random.default_rng(seed)
    for name, value in params.items():
        if name.endswith((".scale", ".var")):
            params[name] = (0.5 + rng.random(value.shape)).astype(np.float32)
        elif name.endswith((".mean", ".bias")):
            params[name] = (0.3 * rng.standard_normal(value.shape)).astype(np.float32)
    return params


@pytest.mark.parametrize("kind", ["npz", "onnx"])
def test_weights_round_trip(kind: str, tmp_path: Path) -> None:
    net = netdsl.parse(NET)
    source = to_onnx(net, seed=1)
    path = tmp_path / f"w.{kind}"
    if kind == "npz":
        wt.save_npz(tensors(source), path)
    else:
        onnx.save_model(source, str(path))
    loaded = to_onnx(net, seed=2, weights=path)
    assert loaded.graph.initializer == source.graph.initializer
    meta = {p.key: p.value for p in loaded.metadata_props}
    assert meta["weights"] == f"loaded 38 of 38 tensors from '{path}'"


def test_partial_file_keeps_fresh_tensors_and_says_which(tmp_path: Path) -> None:
    net = netdsl.parse(NET)
    given = tensors(to_onnx(net, seed=1))
    del given["fc2.weight"], given["fc2.bias"]
    given["extra.weight"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "w.npz", **given)
    model = to_onnx(net, seed=2, weights=tmp_path / "w.npz")
    got, fresh = tensors(model), tensors(to_onnx(net, seed=2))
    np.testing.assert_array_equal(got["fc2.weight"], fresh["fc2.weight"])
    np.testing.assert_array_equal(got["conv1.weight"], given["conv1.weight"])
    meta = {p.key: p.value for p in model.metadata_props}["weights"]
    assert meta.endswith("fresh: fc2.weight, fc2.bias; unused: extra.weight")


def test_shape_mismatch_is_an_error_naming_both_shapes(tmp_path: Path) -> None:
    imagenet = netdsl.parse(NET, overrides={"classes": 1000})
    onnx.save_model(to_onnx(imagenet), str(tmp_path / "imagenet.onnx"))
    net = netdsl.parse(NET)
    with pytest.raises(netdsl.NetError) as error:
        to_onnx(net, weights=tmp_path / "imagenet.onnx")
    message = str(error.value)
    assert "2 tensor(s) of" in message
    assert "fc2.weight is 1000x32 in the file, the net wants 10x32" in message
    assert "fc2.bias is 1000 in the file, the net wants 10" in message
    model = to_onnx(net, weights=tmp_path / "imagenet.onnx", skip_mismatched=True)
    meta = {p.key: p.value for p in model.metadata_props}["weights"]
    assert meta.endswith("shape mismatch, kept fresh: fc2.weight, fc2.bias")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"not a zip", "w.npz", "cannot read weights '.*w.npz' as an .npz archive"),
        (b"\x08\x01garbage", "w.onnx", "cannot read weights '.*w.onnx' as an ONNX model"),
        (b"", "w.h5", "weights must be a .npz, an .onnx or a PyTorch .pth/.pt file"),
        (b"", "w.pt", "'.*w.pt' is not a PyTorch file"),
        (None, "missing.npz", "cannot read weights '.*missing.npz'.*No such file"),
    ],
)
def test_unreadable_weights(content: bytes | None, name: str, message: str, tmp_path: Path) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(netdsl.NetError, match=message):
        to_onnx(netdsl.parse(NET), weights=tmp_path / name)


def test_foreign_names_are_an_error_with_examples(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", **{"layer1.0.conv1.weight": np.zeros((8, 3, 3, 3), "f4")})
    with pytest.raises(netdsl.NetError) as error:
        to_onnx(netdsl.parse(NET), weights=tmp_path / "w.npz")
    text = str(error.value)
    assert "no tensor in" in text and "'layer1.0.conv1.weight'" in text
    assert "the net expects 'conv1.weight'" in text


def test_a_dict_of_arrays_works_too() -> None:
    net = netdsl.parse(NET)
    given = tensors(to_onnx(net, seed=1))
    model = to_onnx(net, seed=2, weights=given)
    assert tensors(model)["fc2.weight"].tobytes() == given["fc2.weight"].tobytes()
    meta = {p.key: p.value for p in model.metadata_props}["weights"]
    assert meta == "loaded 38 of 38 tensors from the given tensors"


def test_integer_tensor_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", **{"conv1.weight": np.zeros((8, 3, 3, 3), np.int64)})
    with pytest.raises(netdsl.NetError, match=r"conv1\.weight holds int64 values"):
        to_onnx(netdsl.parse(NET), weights=tmp_path / "w.npz")


# ---- batch-norm folding ----------------------------------------------------------------------


def test_folding_gives_the_same_outputs(tmp_path: Path) -> None:
    net = netdsl.parse(NET)
    np.savez(tmp_path / "w.npz", **trained_looking(net, 3))
    plain = to_onnx(net, mode="inference", weights=tmp_path / "w.npz")
    folded = to_onnx(net, mode="inference", fold_bn=True, weights=tmp_path / "w.npz")
    x = ort.random_input((3, *net.input_shape), seed=4)
    a, b = ort.run(plain, x), ort.run(folded, x)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert not np.allclose(a, a[:1])  # the images differ, so the outputs say something
    ops = [n.op_type for n in folded.graph.node]
    assert "BatchNormalization" not in ops  # every bn here follows a conv, deconv or fc
    assert "bn1.scale" not in tensors(folded) and "conv1.bias" in tensors(folded)
    doc = next(n.doc_string for n in folded.graph.node if n.name == "deconv1")
    assert doc.endswith("batch norm bn5 folded in")


def test_bn_after_an_add_stays() -> None:
    net = netdsl.parse("input 4x6x6\nres[conv3x3(4) -> relu] -> bn")
    folded = to_onnx(net, mode="inference", fold_bn=True)
    assert [n.op_type for n in folded.graph.node][-1] == "BatchNormalization"


def test_fold_math_matches_the_formula() -> None:
    """W' = W * s and b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps), by hand."""
    net = netdsl.parse("input 1x3x3\nconv1x1(2, bias=true) -> bn(eps=1e-9)")
    params = {
        "conv1.weight": np.array([1, 2], "f4").reshape(2, 1, 1, 1),
        "conv1.bias": np.array([1, -1], "f4"),
        "bn1.scale": np.array([3, 1], "f4"),
        "bn1.bias": np.array([0, 5], "f4"),
        "bn1.mean": np.array([2, 0], "f4"),
        "bn1.var": np.array([4, 16], "f4"),
    }
    folded, which = fold_bn(net, params)
    assert which == {2: 1}
    np.testing.assert_allclose(folded["conv1.weight"].ravel(), [1.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(folded["conv1.bias"], [-1.5, 4.75], rtol=1e-6)


def test_weights_of_a_trained_model_bring_its_normalisation(tmp_path: Path) -> None:
    """A net compiled with a netdsl-trained model's weights starts with the same (x - mean)/std,
    so the weights see what they were trained on (and int8 calibration too)."""
    from netdsl.backends.passes import normalise

    net = netdsl.parse("input 2x8x8\nconv3x3(4) -> relu -> gap -> fc(3)")
    norm = normalise.Normalisation((0.5, 0.25), (0.2, 0.4))
    trained = normalise.with_normalisation(to_onnx(net, seed=1, mode="inference"), norm)
    onnx.save(trained, tmp_path / "model.onnx")
    compiled = to_onnx(net, seed=2, mode="inference", weights=tmp_path / "model.onnx")
    x = np.random.default_rng(0).random((3, 2, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(ort.run(compiled, x), ort.run(trained, x), rtol=1e-6)
    props = {p.key: p.value for p in compiled.metadata_props}
    assert normalise.read_metadata(props)["mean"] == [0.5, 0.25]
    assert "preprocess" not in props["weights"]  # carried, not reported as unused
