"""`netdsl compare`: two artefacts on one seeded input, errors per output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.backends.runtime.compare import differences
from netdsl.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cmp")
    for precision in ("fp32", "fp16"):
        assert (
            main(
                [
                    "compile",
                    "lenet5",
                    "--inference",
                    "--precision",
                    precision,
                    "-o",
                    str(out / f"{precision}.onnx"),
                ]
            )
            == 0
        )
    return out


def test_fp32_against_fp16(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["compare", str(models / "fp32.onnx"), str(models / "fp16.onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row, logits = report["outputs"]
    assert row["output"] == "output" and row["shape"] == [8, 10] and not row["logits"]
    assert 0 < row["max_rel"] < 1e-3 and row["top1_agreement"] == 1.0
    # the logits before the softmax carry the fp16 error the softmax squashes
    assert logits["output"] == "fc2" and logits["logits"] and logits["max_abs"] > row["max_abs"]
    assert report["passed"] and report["tolerance"]["default"] == "fp16"


def test_a_net_against_its_own_compiled_model_is_exact(models: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert main(["compare", "lenet5", str(models / "fp32.onnx")]) == 0
    assert "max abs error 0.000e+00" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("a", "b", "fragment"),
    [
        ([np.zeros((2, 3))], [np.zeros((2, 4))], "shapes differ"),
        ([np.zeros(2)], [], "have 1 and 0 outputs"),
    ],
)
def test_mismatches(a: list[np.ndarray], b: list[np.ndarray], fragment: str) -> None:
    with pytest.raises(netdsl.NetError, match=fragment):
        differences(a, b, ["y"])
