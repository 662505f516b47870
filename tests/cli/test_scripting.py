"""The command line in scripts: exit codes a CI job can trust, shell completion, `python -m
netdsl`, another input size, the inference form by default, one meaning of --batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from netdsl.cli import main
from netdsl.zoo import entries

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scripting")
    for name, seed in (("a", 0), ("b", 1)):
        out = str(folder / f"{name}.onnx")
        assert main(["compile", "lenet5", "--seed", str(seed), "-o", out]) == 0
    precision = ["--precision", "fp16"]
    assert main(["compile", "lenet5", *precision, "-o", str(folder / "half.onnx")]) == 0
    return folder


# ---- compare ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "flags", "code", "fragment"),
    [
        ("a.onnx", [], 0, "within tolerance (atol 0, rtol 0.001, the fp32 default)"),
        ("half.onnx", [], 0, "the fp16 default"),
        ("b.onnx", [], 1, "fc2: max abs error"),  # other weights: the logits differ
        ("b.onnx", ["--rtol", "100"], 0, "within tolerance (atol 0, rtol 100, given)"),
        ("b.onnx", ["--atol", "1e-9"], 1, "> 1.000e-09 (atol 1e-09 + rtol 0"),
        ("half.onnx", ["--atol", "1e-9"], 1, "fc2: max abs error"),  # fp16 has an error
        ("b.onnx", ["--rtol", "100", "--agreement", "1"], 1, "top-1 agreement"),
    ],
)
def test_compare_exits_1_on_a_mismatch(
    b: str, flags: list[str], code: int, fragment: str, d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["compare", str(d / "a.onnx"), str(d / b), *flags]) == code
    out, err = capsys.readouterr()
    assert fragment in out + err
    assert "logits before the softmax" in out  # the softmax would hide the differences


def test_compare_judges_the_logits_not_the_one_hot_softmax(d: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    main(["compare", str(d / "a.onnx"), str(d / "half.onnx"), "--json"])
    report = json.loads(capsys.readouterr().out)
    output, logits = report["outputs"]
    assert logits["logits"] and logits["max_abs"] > 3 * output["max_abs"]


# ---- completion and python -m -----------------------------------------------------------------


def _complete(script: str, words: list[str]) -> list[str]:
    words_text = " ".join(f"'{w}'" for w in words)
    line = f'{script}\nCOMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; _netdsl; echo "${{COMPREPLY[@]}}"'
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_is_valid_and_offers_commands_flags_and_nets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    (tmp_path / "netdsl.bash").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "netdsl.bash")], check=True)
    assert {"check", "summary", "compile", "compare", "explain", "completion"} <= set(
        _complete(script, ["netdsl", ""])
    )
    assert _complete(script, ["netdsl", "compile", "--prec"]) == ["--precision"]
    assert _complete(script, ["netdsl", "compile", "--precision", ""]) == ["fp32", "fp16", "int8"]
    assert _complete(script, ["netdsl", "explain", "s"]) == ["saliency"]
    nets = {e.name for e in entries()}
    assert nets <= set(_complete(script, ["netdsl", "summary", ""]))
    assert _complete(script, ["netdsl", "summary", "resnet5"]) == ["resnet50", "resnet50_v1"]
    assert "--batch" not in _complete(script, ["netdsl", "compile", "--"])  # old spelling


@pytest.mark.parametrize(("shell", "fragment"), [("zsh", "bashcompinit"), ("fish", "-l json")])
def test_zsh_and_fish_scripts(
    shell: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert fragment in script and "resnet50" in script and "compare" in script
    if shutil.which(shell):
        subprocess.run([shell, "-n"], input=script, text=True, check=True)


def test_python_m_netdsl_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netdsl", "check", "lenet5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0 and result.stdout.startswith("lenet5: 1x32x32 -> 10")


# ---- another input size ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ("check resnet18 --input 3x64x64", "resnet18: 3x64x64 -> 1000"),
        ("check lenet5 --input 3x40x40 --set classes=4", "lenet5: 3x40x40 -> 4"),
        ("summary alexnet --input 3x256x256", "alexnet: input 3x256x256"),
    ],
)
def test_another_input_size(argv: str, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(argv.split()) == 0
    assert capsys.readouterr().out.startswith(line)


def test_compile_at_another_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.onnx"
    assert main(["compile", "resnet18", "--input", "3x64x64", "-o", str(out)]) == 0
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, 64, 64]


# ---- compile's form and --batch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "mode", "batch", "note"),
    [
        ([], "inference", "N", ""),
        (["--inference"], "inference", "N", ""),  # the old flag, now the default
        (["--training-form"], "train", "N", ""),
        (["--fixed-batch", "4"], "inference", 4, ""),
        (
            ["--batch", "4"],
            "inference",
            4,
            "compile --batch N is deprecated here; write --fixed-batch N",
        ),
    ],
)
def test_compile_defaults_to_the_inference_form(
    flags: list[str],
    mode: str,
    batch: object,
    note: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m.onnx"
    capsys.readouterr()
    assert main(["compile", "mnist_conv", "-o", str(out), *flags]) == 0
    err = capsys.readouterr().err
    assert note in err and "replaced" not in err
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert meta["mode"].startswith(mode) and (first.dim_param or first.dim_value) == batch
    assert main(["compile", "mnist_conv", "-o", str(out), *flags]) == 0
    assert f"note: replaced the existing {out}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "sizes", "note"),
    [
        ([], [1, 8, 64], ""),
        (["--batch", "2"], [2], ""),
        (["--batches", "1,3"], [1, 3], ""),
        (["--batch", "1,3"], [1, 3], "bench --batch B,B,... is deprecated here; write --batches"),
    ],
)
def test_bench_batch_sizes(
    flags: list[str], sizes: list[int], note: str, d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    argv = ["bench", str(d / "a.onnx"), "--repeats", "1", "--warmup", "0", "--json", *flags]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert [r["batch"] for r in json.loads(out)["results"]] == sizes and note in err
