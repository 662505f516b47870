"""`netdsl train --engine`: each engine trains what it can and refuses the rest by name.

The onnx engine (netdsl's own training step) has a gradient for every op, a transposed
convolution included; onnxruntime-training 1.19.2 has no CPU gradient for ConvTranspose, so
`--engine ort-training` refuses that layer with its line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.cli import main

DECONV = "input 1x8x8\nconv3x3(4) -> relu -> deconv2x2/2(4) -> relu -> maxpool -> fc(10)\n"


@pytest.fixture
def deconv_net(tmp_path: Path) -> Path:
    path = tmp_path / "up.net"
    path.write_text(DECONV)
    return path


def test_the_onnx_engine_trains_a_transposed_convolution(
    deconv_net: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", str(deconv_net), "--epochs", "1", "--out", str(out), "-q", "--fit", "resize"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (out / "model.onnx").is_file()


def test_ort_training_refuses_it_with_the_layer(
    deconv_net: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime.training")
    out = tmp_path / "run"
    argv = ["train", str(deconv_net), "--engine", "ort-training", "--out", str(out), "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "up.net:2:" in err and "deconv" in err and "ConvTranspose" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "value"), [("--engine", "tensorflow"), ("--device", "tpu"), ("--engine", "")]
)
def test_an_unknown_engine_or_device_is_a_usage_error(
    deconv_net: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", str(deconv_net), flag, value])
    assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
