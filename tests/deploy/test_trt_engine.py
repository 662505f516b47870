"""The TensorRT engine backend: everything up to `import tensorrt` for real; the build itself
where TensorRT is installed (never on this project's machines: see docs/deploy.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import netdsl
from netdsl.backends.onnx.emit import emit, to_onnx
from netdsl.backends.tensorrt import engine as trt

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize(
    ("text", "profile"),
    [
        ("8", trt.Profile(8, 8, 8)),
        ("1:8:64", trt.Profile(1, 8, 64)),
        ("1:1:1", trt.Profile(1, 1, 1)),
    ],
)
def test_profiles(text: str, profile: trt.Profile) -> None:
    assert trt.parse_profile(text) == profile


@pytest.mark.parametrize("text", ["0", "8:1:4", "1:2", "a:b:c", "1:2:3:4"])
def test_bad_profiles(text: str) -> None:
    with pytest.raises(netdsl.NetError, match="takes N or MIN:OPT:MAX"):
        trt.parse_profile(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1G", 2**30), ("512M", 2**29), ("1.5GiB", 3 * 2**29), ("64K", 2**16), ("4096", 4096)],
)
def test_sizes(text: str, size: int) -> None:
    assert trt.parse_size(text) == size


def test_parser_errors_lead_back_to_the_net_line() -> None:
    emitted = emit(netdsl.parse("input 3x8x8\nconv3x3(4)\n-> maxpool -> gap", "o.net"))
    model, spans = emitted.model, emitted.spans
    assert trt.node_origin(model, 1, spans=spans) == (
        "maxpool1 (MaxPool, o.net:3:4: -> maxpool -> gap)"
    )
    assert trt.node_origin(model, -1, "conv1", spans).startswith("conv1 (Conv, o.net:2:1:")
    assert trt.node_origin(model, 1) == "maxpool1 (MaxPool)"  # an .onnx file: no net, no text


def test_a_graph_tensorrt_would_refuse_is_refused_before_tensorrt() -> None:
    emitted = emit(netdsl.parse("input 3x8x8\nconv3x3(4) -> bn", "t.net"), mode="train")
    with pytest.raises(netdsl.NetError) as caught:
        trt.build_engine(emitted.model, trt.Profile(1, 1, 1), spans=emitted.spans)
    assert "TensorRT would refuse this graph" in caught.value.render()
    assert "t.net:2:15: error: bn1: batch norm in training mode" in caught.value.render()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the real build below runs instead")
def test_without_tensorrt_the_build_says_so() -> None:
    model = to_onnx(netdsl.load("lenet5"), mode="inference")
    with pytest.raises(netdsl.NetError, match="TensorRT is not installed"):
        trt.build_engine(model, trt.Profile(1, 2, 4))


@pytest.mark.skipif(not HAS_TRT, reason="TensorRT cannot be installed here (docs/deploy.md)")
def test_build_and_run_an_engine(tmp_path: Path) -> None:  # pragma: no cover - needs a GPU
    import numpy as np
    import onnxruntime as ort

    model = to_onnx(netdsl.load("lenet5"), mode="inference")
    cache = tmp_path / "timing.cache"
    engine = trt.build_engine(model, trt.Profile(1, 2, 4), timing_cache=cache)
    assert cache.stat().st_size > 0
    path = tmp_path / "lenet5.engine"
    path.write_bytes(engine)
    x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    assert np.allclose(trt.run_engine(path, x), expected, atol=1e-4)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
@pytest.mark.parametrize(
    "argv",
    [
        ["engine", "lenet5", "--precision", "int8", "--calib", "digits"],
        ["engine", "lenet5", "--precision", "fp16", "--batch", "1:4:8"],
    ],
)
def test_engine_command_checks_then_stops_at_tensorrt(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from netdsl.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "passed netdsl's TensorRT check" in err
