"""`--json` everywhere: each command's output validates against its schema in netdsl/schemas/,
stdout holds nothing but the JSON, and every command that reports takes the flag."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from netdsl.cli import build_parser, main

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).resolve().parents[2] / "netdsl" / "schemas"


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("json")
    assert main(["compile", "lenet5", "-o", str(folder / "lenet.onnx")]) == 0
    assert main(["compile", "lenet5", "--seed", "1", "-o", str(folder / "other.onnx")]) == 0
    return folder


# (schema, argv with {d} for the folder, exit code)
CASES = [
    ("check", "check lenet5 mnist_conv", 0),
    ("check", "check lenet5 --input 1x40x40", 0),
    ("check", "check lenet5 --input 1x28x28", 1),
    ("check", "check lenet5 {d}/missing.net", 1),
    ("summary", "summary resnet18 --depth 2", 0),
    ("summary", "summary lenet5 --input 1x64x64", 0),
    ("summary_onnx", "summary {d}/lenet.onnx", 0),
    ("zoo", "zoo", 0),
    ("compile", "compile lenet5 -o {d}/c.onnx --fixed-batch 4", 0),
    ("compile", "compile lenet5 -o {d}/c.onnx --training-form --precision fp16", 0),
    ("run", "run {d}/lenet.onnx --top 3", 0),
    ("run", "run lenet5", 0),
    ("bench", "bench {d}/lenet.onnx --batches 1,2 --repeats 2 --warmup 0", 0),
    ("compare", "compare {d}/lenet.onnx lenet5", 0),
    ("compare", "compare {d}/lenet.onnx {d}/other.onnx", 1),
    ("draw", "draw lenet5 -o {d}/lenet.dot", 0),
    ("export", "export triton {d}/lenet.onnx -o {d}/repo --force", 0),
    ("train", "train lenet5 --epochs 1 -q --out {d}/run", 0),
    ("explain", "explain filters {d}/lenet.onnx -o {d}/f.png", 0),
    ("explain", "explain top {d}/lenet.onnx --images 50 -k 4 -o {d}/t.png", 0),
]


@pytest.mark.parametrize(("schema", "argv", "code"), CASES, ids=[c[1] for c in CASES])
def test_json_output_fits_its_schema(
    schema: str, argv: str, code: int, d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main([*argv.format(d=d).split(), "--json"]) == code
    report = json.loads(capsys.readouterr().out)  # nothing else on stdout
    jsonschema.validate(report, json.loads((SCHEMAS / f"{schema}.json").read_text()))


def test_every_schema_is_a_valid_schema_and_is_used() -> None:
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    assert sorted(p.stem for p in SCHEMAS.glob("*.json")) == sorted({c[0] for c in CASES})


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                nested = _commands(child, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": child._option_string_actions.keys()})  # type: ignore[dict-item]
    return found


def test_every_command_that_reports_takes_json() -> None:
    commands = _commands(build_parser())
    quiet = {"engine", "completion"}  # engine: a TensorRT build; completion prints a script
    missing = [c for c, flags in commands.items() if c not in quiet and "--json" not in flags]
    assert not missing


def test_compare_json_says_why_it_failed(d: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["compare", str(d / "lenet.onnx"), str(d / "other.onnx"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["passed"] and report["tolerance"]["default"] == "fp32"
    assert report["failures"][0].startswith("fc2: max abs error")
