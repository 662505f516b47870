"""The command line: exit codes (0 ok, warnings included; 1 errors in a net; 2 usage), one line
per net from `check`, the JSON of `summary` and `zoo`, collapsed rows, and a light start
(`check` and `summary` import neither onnx, onnxruntime nor torch).

Most cases call `netdsl.cli.main` in-process; a few run the installed `netdsl` command, so that
what a user's shell sees (exit status, stderr, no traceback) is checked end to end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "netdsl"
CARD = "input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n"
TINY = "net tiny(w=4):\n  input 3x8x8\n  conv3x3(w) -> relu -> gap -> fc(2)\n"
WHERE = re.compile(r"^\S+:\d+:\d+: error: ", re.MULTILINE)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def shell(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "netdsl"]
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=60)


# (what, text, exit code, stdout, a fragment of stderr)
CHECKS = [
    ("ok", "input 3x8x8\nconv3x3(4)\n", 0, "net: 3x8x8 -> 4x8x8, 112 params, 6.91 KMACs\n", ""),
    (
        "defaults said",
        CARD,
        0,
        "net: 3x224x224 -> 10, 365,734 params, 3.16 GMACs\n",
        "note: net used the built-in defaults conv.c=64 (10 layers), fc.n=10 (3 layers)",
    ),
    (
        "warning",
        "input 1x7x7\nconv2x2/2(4, p=valid)\n",
        0,
        "net: 1x7x7 -> 4x3x3, 20 params, 144 MACs\n",
        ":2:1: warning: conv2x2/2: stride floor((7 + 0 - 2)/2) + 1 = 3 leaves the last row and "
        "column of the input unused",
    ),
    (
        "one line per net",
        "net a:\n  input 4\n  fc(2)\nnet b:\n  input 4\n  fc(3)\nnet c:\n"
        "  input 1x4x4\n  conv3x3(2)\n",
        0,
        "a: 4 -> 2, 10 params, 8 MACs\nb: 4 -> 3, 15 params, 12 MACs\n"
        "c: 1x4x4 -> 2x4x4, 20 params, 288 MACs\n",
        "",
    ),
    (
        "shape error",
        "input 3x32x32\n[[conv3x3(64) -> relu]*2 -> pool]*6 -> fc(10)\n",
        1,
        "",
        ":2:29: error: pool needs an input of at least 2x2, got 1x1",
    ),
    ("syntax error", "input 3x32x32\nconv3x3(64\n", 1, "", ":2:11: error: unexpected end of file"),
    (
        "several errors",
        "input 3x8x8\nrleu -> conv3x3(foo)\n",
        1,
        "",
        ":2:17: error: unknown name 'foo'",
    ),
]


@pytest.mark.parametrize(
    ("text", "code", "out", "err"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_check(text: str, code: int, out: str, err: str, write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_net(text)
    got = run(["check", str(path)], capsys)
    assert got[:2] == (code, out)
    assert err in got[2]
    assert "Traceback" not in got[2]
    if code == 1:
        assert got[2].startswith(f"{path}:")
        assert WHERE.search(got[2])


def test_errors_exit_1_with_the_place_and_no_traceback(write_net) -> None:  # type: ignore[no-untyped-def]
    path = write_net("input 3x32x32\nconv3x3(64) -> rleu -> maxpol\n", "bad.net")
    done = shell("check", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"{path}:2:16: error: unknown layer 'rleu'\n")
    assert len(WHERE.findall(done.stderr)) == 2
    assert "^^^^" in done.stderr and "Traceback" not in done.stderr


def test_warnings_exit_0(write_net) -> None:  # type: ignore[no-untyped-def]
    done = shell("check", str(write_net("input 1x7x7\nmaxpool\n")))
    assert (done.returncode, done.stdout) == (0, "net: 1x7x7 -> 1x3x3, 0 params, 0 MACs\n")
    assert "warning:" in done.stderr and "Traceback" not in done.stderr


def test_check_goes_on_after_a_failing_target(write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = write_net("input 3x8x8\nnope\n", "bad.net")
    good = write_net("input 3x8x8\nconv1x1(2)\n", "good.net")
    code, out, err = run(["check", str(bad), str(good), "lenet5"], capsys)
    assert code == 1
    assert out.splitlines() == [
        "net: 3x8x8 -> 2x8x8, 8 params, 384 MACs",
        "lenet5: 1x32x32 -> 10, 61,706 params, 416.52 KMACs",
    ]
    assert err.startswith(f"{bad}:2:1: error: unknown layer 'nope'")


def test_check_a_zoo_net_by_name_prints_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["check", "resnet50"], capsys)[:2] == (
        0,
        "resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs\n",
    )


def test_check_every_net_of_a_zoo_file_and_one_by_name(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["check", "vgg"], capsys)
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "vgg19_bn",
    ]
    code, out, _ = run(["check", f"{ROOT}/nets/vgg.net:vgg16"], capsys)
    assert (code, out) == (0, "vgg16: 3x224x224 -> 1000, 138,357,544 params, 15.47 GMACs\n")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["check", "no_such_net"], "error: no file or zoo net named 'no_such_net'"),
        (["check", "resnt50"], "note: did you mean 'resnet50'"),
        (["check", "resnet50", "--set", "classes"], "--set takes NAME=VALUE, got 'classes'"),
        (["check", "resnet50", "--set", "clases=10"], "has no parameter 'clases'"),
        (["summary", "resnet"], "holds 8 nets"),
        (["summary", f"{ROOT}/nets/resnet.net"], "holds 8 nets"),
    ],
)
def test_mistakes_in_targets_exit_1(argv: list[str], fragment: str, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(argv, capsys)
    assert (code, out) == (1, "")
    assert fragment in err


USAGE = [
    [],
    ["frobnicate"],
    ["check"],
    ["summary"],
    ["summary", "lenet5", "extra"],
    ["summary", "lenet5", "--depth", "x"],
    ["check", "lenet5", "--bogus"],
    ["zoo", "lenet5"],
]


@pytest.mark.parametrize("argv", USAGE, ids=[" ".join(a) or "nothing" for a in USAGE])
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: netdsl" in capsys.readouterr().err


def test_usage_errors_exit_2_from_the_shell() -> None:
    done = shell("summary")
    assert done.returncode == 2
    assert "usage:" in done.stderr and "Traceback" not in done.stderr


def test_a_negative_depth_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["summary", "lenet5", "--depth", "-1"])
    assert caught.value.code == 2


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"netdsl {netdsl.__version__}\n"


def test_summary_json(write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["summary", str(write_net(TINY)), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert {"net", "input", "output", "layers", "total"} <= set(data)
    assert (data["net"], data["input"], data["output"]) == ("tiny", [3, 8, 8], [2])
    assert {"params", "macs"} <= set(data["total"])
    for layer in data["layers"]:
        assert {"name", "op", "output", "params", "macs", "rf"} <= set(layer)
    rows = [
        (x["name"], x["op"], x["output"], x["params"], x["macs"], x["rf"]) for x in data["layers"]
    ]
    assert rows == [
        ("input", "input", [3, 8, 8], 0, 0, [1, 1]),
        ("conv1", "conv", [4, 8, 8], 112, 4 * 64 * 27, [3, 3]),
        ("relu1", "relu", [4, 8, 8], 0, 0, [3, 3]),
        ("gap1", "gap", [4, 1, 1], 0, 0, [10, 10]),
        ("fc1", "fc", [2], 10, 8, [10, 10]),
    ]
    assert (data["total"]["params"], data["total"]["macs"]) == (122, 4 * 64 * 27 + 8)


def test_summary_json_of_a_zoo_net_adds_up(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["summary", "resnet18", "--json", "--set", "classes=10"], capsys)
    data = json.loads(out)
    assert code == 0 and data["output"] == [10]
    assert sum(x["params"] for x in data["layers"]) == data["total"]["params"] == 11_181_642
    assert sum(x["macs"] for x in data["layers"]) == data["total"]["macs"]
    assert data["layers"][-1]["output"] == data["output"]
    assert data["total"]["params"] == 11_689_512 - 990 * 513  # the 1000-class head, 10 classes
    layer = data["layers"][1]
    assert layer["name"] == "stem1.conv1" and layer["output"] == [64, 112, 112]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a summary table: between the second and the third rule."""
    body = text.split("\n-")[2].split("\n", 1)[1]
    return [line.split() for line in body.split("\n-")[0].splitlines()]


def test_summary_depth_collapses_rows(write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    path = str(write_net("def blk(c) = conv3x3(c) -> relu\ninput 3x8x8\nblk(4) -> blk(8) -> gap\n"))
    _, full, _ = run(["summary", path], capsys)
    _, blocks, _ = run(["summary", path, "--depth", "1"], capsys)
    assert [r[0] for r in table_rows(full)] == [
        "input",
        "blk1.conv1",
        "blk1.relu1",
        "blk2.conv1",
        "blk2.relu1",
        "gap1",
    ]
    assert [r[:5] for r in table_rows(blocks)] == [
        ["input", "input", "3x8x8", "0", "0"],
        ["blk1", "2", "layers", "4x8x8", "112"],
        ["blk2", "2", "layers", "8x8x8", "296"],
        ["gap1", "gap", "8x1x1", "0", "0"],
    ]
    totals = [line for line in full.splitlines() if line.startswith(("params:", "multiply-adds:"))]
    assert totals == [line for line in blocks.splitlines() if line in totals]


def test_summary_table_of_a_zoo_net_and_its_depth(capsys) -> None:  # type: ignore[no-untyped-def]
    _, full, _ = run(["summary", "resnet50"], capsys)
    _, blocks, _ = run(["summary", "resnet50", "--depth", "1"], capsys)
    assert "stage2.bottleneck1.conv2" in full
    assert "stage2.bottleneck1" not in blocks and "\nstage2 " in blocks
    for text in (full, blocks):
        assert "params: 25,557,032" in text
        assert "multiply-adds: 4,089,184,256 MACs (4.09 GMACs = 8.18 GFLOPs)" in text
        assert "receptive field: 427 pixels" in text and "the largest over all paths" in text


def test_summary_depth_in_json_lists_blocks(capsys) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = run(["summary", "resnet18", "--json", "--depth", "1"], capsys)
    data = json.loads(out)
    assert [b["name"] for b in data["blocks"]] == [
        "input",
        "stem1",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "head1",
    ]
    assert sum(b["params"] for b in data["blocks"]) == data["total"]["params"]
    assert len(data["layers"]) == 70  # the layers stay whole


def test_summary_says_the_projection_shortcut(write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = run(["summary", str(write_net("input 4x8x8\nres[conv3x3/2(8) -> bn]\n"))], capsys)
    assert "# projection shortcut 4x8x8 -> 8x4x4" in out


def test_zoo_json(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(["zoo", "--json"], capsys)
    entries = json.loads(out)
    assert code == 0
    assert all(set(e) == {"name", "file", "reference"} for e in entries)
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    assert {"lenet5", "alexnet", "vgg16", "resnet50", "googlenet", "densenet121"} <= set(names)
    assert all((ROOT / "nets" / e["file"]).is_file() and e["reference"] for e in entries)
    lenet = next(e for e in entries if e["name"] == "lenet5")
    assert lenet["file"] == "lenet5.net" and "LeCun" in lenet["reference"]


def test_zoo_lists_one_line_per_net(capsys) -> None:  # type: ignore[no-untyped-def]
    _, table, _ = run(["zoo"], capsys)
    _, listed, _ = run(["zoo", "--json"], capsys)
    assert [line.split()[0] for line in table.splitlines()] == [
        e["name"] for e in json.loads(listed)
    ]


def test_a_huge_integer_in_a_net_exits_1(write_net, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_net("input 3x8x8\nconv1x1(" + "9" * 5000 + ")\n")
    code, _, err = run(["check", str(path)], capsys)
    assert code == 1 and err.startswith(f"{path}:2:9: error:")


HEAVY = ("onnx", "onnxruntime", "torch")


@pytest.mark.parametrize(
    "argv", [["check", "resnet50"], ["summary", "lenet5", "--json"], ["summary", "vgg16"]]
)
def test_check_and_summary_import_no_backend_library(argv: list[str]) -> None:
    code = (
        "import sys\nfrom netdsl.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "netdsl" in imported and "lark" in imported
    assert not imported & set(HEAVY)
