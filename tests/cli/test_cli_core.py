"""The command line of the core: exit codes, one line per net, the summary's JSON, the zoo list,
and a light start (no onnx, onnxruntime or torch for check and summary)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main

CARD = "input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _write(text: str, name: str = "net.net") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return _write


CHECKS = [
    # (text, exit code, stdout, a fragment of stderr)
    (CARD, 0, "net: 3x224x224 -> 10, 365,734 params, 3.16 GMACs\n", "used the built-in defaults"),
    (
        "input 1x7x7\nconv2x2/2(4, p=valid)\n",
        0,
        "net: 1x7x7 -> 4x3x3, 20 params, 144 MACs\n",
        "warning: conv2x2/2: stride floor((7 + 0 - 2)/2) + 1 = 3",
    ),
    (
        "input 3x32x32\n[[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)\n",
        1,
        "",
        ":2:29: error: pool needs an input of at least 2x2, got 1x1",
    ),
    ("input 3x32x32\nconv3x3(64\n", 1, "", ":2:11: error: unexpected end of file"),
]


@pytest.mark.parametrize(("text", "code", "out", "err"), CHECKS)
def test_check(text: str, code: int, out: str, err: str, write, capsys) -> None:  # type: ignore[no-untyped-def]
    got_code, got_out, got_err = run(["check", write(text)], capsys)
    assert (got_code, got_out) == (code, out)
    assert err in got_err
    assert "Traceback" not in got_err


def test_check_zoo_name_prints_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["check", "resnet50"], capsys)[:2] == (
        0,
        "resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs\n",
    )


def test_check_every_net_of_a_file_and_one_by_name(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["check", "vgg"], capsys)
    assert code == 0 and len(out.splitlines()) == 8
    root = Path(__file__).resolve().parents[2]
    code, out, _ = run(["check", f"{root}/nets/vgg.net:vgg16"], capsys)
    assert out.startswith("vgg16: 3x224x224 -> 1000, 138,357,544 params")


@pytest.mark.parametrize(
    ("argv", "code", "err"),
    [
        (["check", "no_such_net"], 1, "no file or zoo net named 'no_such_net'"),
        (["check", "resnt50"], 1, "did you mean 'resnet50'"),
        (["check", "resnet50", "--set", "classes"], 1, "--set takes NAME=VALUE"),
        (["summary", "nets/resnet.net"], 1, "holds 8 nets"),
    ],
)
def test_errors_exit_1(argv: list[str], code: int, err: str, capsys) -> None:  # type: ignore[no-untyped-def]
    got_code, _, got_err = run(argv, capsys)
    assert got_code == code and err in got_err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["check"], ["summary", "--depth", "x"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_summary_json(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["summary", "resnet18", "--json", "--set", "classes=10"], capsys)
    data = json.loads(out)
    assert code == 0
    assert (data["net"], data["input"], data["output"]) == ("resnet18", [3, 224, 224], [10])
    assert set(data["total"]) >= {"params", "macs"}
    assert data["total"]["params"] == 11_689_512 - 990 * 513
    layer = data["layers"][1]
    assert set(layer) >= {"name", "op", "output", "params", "macs", "rf"}
    assert layer["name"] == "stem1.conv1" and layer["output"] == [64, 112, 112]
    assert sum(x["params"] for x in data["layers"]) == data["total"]["params"]


def test_summary_table_and_depth(capsys) -> None:  # type: ignore[no-untyped-def]
    _, full, _ = run(["summary", "resnet50"], capsys)
    _, blocks, _ = run(["summary", "resnet50", "--depth", "1"], capsys)
    assert "stage2.bottleneck1.conv2" in full
    assert "stage2.bottleneck1" not in blocks and "\nstage2 " in blocks
    for text in (full, blocks):
        assert "params: 25,557,032" in text
        assert "multiply-adds: 4,089,184,256 MACs (4.09 GMACs = 8.18 GFLOPs)" in text
        assert "receptive field: 427 pixels" in text and "the largest over all paths" in text


def test_zoo_json(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["zoo", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) >= 30
    lenet = next(r for r in rows if r["name"] == "lenet5")
    assert lenet["file"] == "lenet5.net" and "LeCun" in lenet["reference"]
    assert all(r["reference"] for r in rows)


def test_check_and_summary_import_no_backend_library() -> None:
    code = (
        "import sys; from netdsl.cli import main; "
        "main(['check', 'resnet50']); main(['summary', 'lenet5', '--json']); "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
