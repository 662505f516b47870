"""Bad values for the flags of every backend command end in one clear line and exit 1 (a bad
input) or 2 (a usage error), never 3 (an internal error, kept for bugs). Also: flag advice is
added by the command line, never written by the library; a missing package names its extra; a
model is emitted once, and written atomically."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import netdsl
from netdsl import errors
from netdsl.backends.onnx import compile as compiling
from netdsl.backends.onnx.emit import to_onnx
from netdsl.cli import main
from netdsl.cli.advice import advise


def netdsl_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's usage errors
        code = int(done.code or 0)
    return code, capsys.readouterr().err


def _identity(name: str, dtype: int, shape: list[int | str], inputs: int = 1) -> onnx.ModelProto:
    names = [f"x{i}" for i in range(inputs)]
    node = helper.make_node("Sum", names, ["y"]) if inputs > 1 else None
    node = node or helper.make_node("Identity", names, ["y"])
    graph = helper.make_graph(
        [node],
        name,
        [helper.make_tensor_value_info(n, dtype, shape) for n in names],
        [helper.make_tensor_value_info("y", dtype, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artefacts(tmp_path_factory.mktemp("bad"))


def artefacts(d: Path) -> Path:
    """A folder of artefacts, good and bad."""
    lenet = netdsl.load("lenet5")
    onnx.save(to_onnx(lenet, mode="inference"), d / "lenet.onnx")
    onnx.save(to_onnx(lenet, mode="inference", batch=4), d / "fixed.onnx")
    small = netdsl.parse("input 3x8x8\nconv3x3(4) -> bn -> gap -> fc(2)")
    onnx.save(to_onnx(small, mode="inference"), d / "small.onnx")
    onnx.save(to_onnx(small, mode="train"), d / "trainform.onnx")
    onnx.save(_identity("two", TensorProto.FLOAT, ["N", 1, 32, 32], 2), d / "two.onnx")
    onnx.save(_identity("ints", TensorProto.INT64, ["N", 3]), d / "ints.onnx")
    onnx.save(_identity("free", TensorProto.FLOAT, ["N", "C", 3, 3]), d / "free.onnx")
    onnx.save(_identity("scalar", TensorProto.FLOAT, []), d / "scalar.onnx")
    (d / "garbage.onnx").write_bytes(b"\x00\x01 not a model")
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "x.npy", np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32))
    np.save(d / "ints.npy", np.zeros((1, 1, 32, 32), np.int32))
    np.savez(d / "w.npz", a=np.zeros(3))
    (d / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    (d / "folder").mkdir()
    (d / "folder.onnx").mkdir()
    (d / "afile").write_text("x")
    return d


# (argv with {d} for the folder, exit code, a fragment of stderr)
CASES = [
    # compile
    ("compile lenet5 -o {d}/folder", 1, "it is a folder"),
    ("compile lenet5 -o /proc/lenet.onnx", 1, "cannot write '/proc/lenet.onnx'"),
    ("compile lenet5 -o {d}/nowhere/x.onnx", 1, "there is no folder"),
    ("compile lenet5 -o {d}/afile/x.onnx", 1, "there is no folder"),
    ("compile lenet5 --opset 12", 2, "argument --opset: takes a whole number from 13 to 17"),
    ("compile lenet5 --fixed-batch 0", 2, "argument --fixed-batch: takes a whole number from 1"),
    (
        "compile lenet5 --fixed-batch nan",
        2,
        "argument --fixed-batch: takes a whole number, got 'nan'",
    ),
    ("compile lenet5 --batch 99999999999999", 2, "argument --batch"),
    ("compile lenet5 --fold-bn --training-form", 1, "batch norms fold only in the inference form"),
    ("compile lenet5 --input 3x0x4", 2, "argument --input: takes sizes from 1"),
    (
        "compile lenet5 --input 32x32",
        1,
        "input shape 32x32 has 2 dimension(s); lenet5's input line has 3",
    ),
    ("check lenet5 --input 3xAx4", 2, "argument --input: takes sizes like 3x64x64"),
    ("summary lenet5 --input 1x2x2", 1, "error"),
    ("compare lenet5 --rtol -1", 2, "argument --rtol: takes a number >= 0"),
    ("compare lenet5 --atol nan", 2, "argument --atol: takes a finite number"),
    ("compare lenet5 --agreement 1.5", 2, "argument --agreement: takes a number >= 0 and <= 1"),
    ("bench lenet5 --batches 0,1", 2, "argument --batches"),
    ("completion tcsh", 2, "argument SHELL: invalid choice"),
    ("compile lenet5 --seed -1", 2, "argument --seed: takes a whole number from 0"),
    ("compile lenet5 --seed 1e400", 2, "argument --seed: takes a whole number"),
    ("compile lenet5 --weights {d}/none.npz -o {d}/o.onnx", 1, "none.npz"),
    ("compile lenet5 --weights {d}/folder -o {d}/o.onnx", 1, "folder"),
    ("compile lenet5 --weights {d}/bad.npz -o {d}/o.onnx", 1, "bad.npz"),
    ("compile lenet5 --weights {d}/garbage.onnx -o {d}/o.onnx", 1, "garbage.onnx"),
    ("compile lenet5 --precision int8 -o {d}/o.onnx", 1, "needs --calib SPEC"),
    ("compile lenet5 --precision int8 --calib nope -o {d}/o.onnx", 1, "nope"),
    ("compile lenet5 --precision int8 --calib folder:{d}/afile -o {d}/o.onnx", 1, "afile"),
    ("compile lenet5 --precision int8 --calib npz:{d}/bad.npz -o {d}/o.onnx", 1, "bad.npz"),
    ("compile lenet5 --precision int8 --calib digits --calib-images 0", 2, "--calib-images"),
    ("compile lenet5 --set classes", 1, "--set takes NAME=VALUE"),
    ("compile {d}/afile", 1, "afile:1:1: error:"),
    ("compile {d}/folder", 1, "{d}/folder"),
    # run
    ("run {d}/lenet.onnx --input {d}/none.npy", 1, "no such file"),
    ("run {d}/lenet.onnx --input {d}/folder", 1, "no such file"),
    ("run {d}/lenet.onnx --input {d}/empty.npy", 1, "cannot read"),
    ("run {d}/lenet.onnx --input {d}/ints.npy", 1, "expected float32 values, got int32"),
    ("run {d}/lenet.onnx --input {d}/afile", 1, "as an image"),
    ("run {d}/lenet.onnx --top 0", 2, "argument --top: takes a whole number >= 1"),
    ("run {d}/lenet.onnx --threads -1", 2, "argument --threads"),
    ("run {d}/lenet.onnx --threads 100000", 2, "argument --threads"),
    ("run {d}/garbage.onnx", 1, "is not an ONNX model"),
    ("run {d}/folder.onnx", 1, "no such file"),
    ("run {d}/ints.onnx", 1, "tensor(int64)"),
    ("run {d}/free.onnx", 1, "not a fixed"),
    ("run {d}/fixed.onnx", 1, "expected an array of shape 4x1x32x32"),
    ("run lenet5 --weights {d}/w.npz", 1, "no tensor in"),
    ("run {d}/x.engine", 1, "running an engine needs --input"),
    # bench
    ("bench {d}/lenet.onnx --batch 100000000", 1, "would take 381.5 GiB"),
    ("bench lenet5 --batch 100000000", 1, "would take 381.5 GiB"),
    ("bench {d}/lenet.onnx --batch 0", 2, "argument --batch: takes whole numbers from 1"),
    ("bench {d}/lenet.onnx --batch -1", 2, "argument --batch"),
    ("bench {d}/lenet.onnx --batch ,", 2, "argument --batch: takes sizes like 1,8,64"),
    ("bench {d}/lenet.onnx --repeats 0", 2, "argument --repeats"),
    ("bench {d}/lenet.onnx --warmup -1", 2, "argument --warmup"),
    ("bench {d}/fixed.onnx --batch 1", 1, "fixed batch size of 4"),
    ("bench {d}/free.onnx --batch 1", 1, "free dimensions"),
    ("bench {d}/scalar.onnx --batch 1", 1, "is a scalar"),
    # compare
    ("compare {d}/lenet.onnx {d}/small.onnx", 1, "take different inputs: 1x32x32 and 3x8x8"),
    ("compare {d}/lenet.onnx {d}/two.onnx", 1, "takes 2 inputs"),
    ("compare {d}/two.onnx {d}/lenet.onnx", 1, "takes 2 inputs"),
    ("compare lenet5 resnet18", 1, "take different inputs"),
    ("compare {d}/lenet.onnx --batch -1", 2, "argument --batch"),
    ("compare {d}/lenet.onnx --batch 0", 2, "argument --batch"),
    ("compare {d}/lenet.onnx --batch 100000000", 1, "would take 381.5 GiB"),
    ("compare {d}/lenet.onnx --providers cpu", 2, "argument --providers"),
    ("compare {d}/lenet.onnx --providers cpu,gpu", 2, "argument --providers"),
    ("compare {d}/lenet.onnx {d}/ints.onnx", 1, "tensor(int64)"),
    ("compare {d}/scalar.onnx", 1, "fixed input size"),
    ("compare {d}/lenet.onnx {d}/fixed.onnx --batch 2", 1, "4x1x32x32"),
    ("compare {d}/none.onnx", 1, "no such file"),
    # engine (the parts before TensorRT)
    ("engine {d}/lenet.onnx -o {d}/folder", 1, "it is a folder"),
    ("engine {d}/trainform.onnx", 1, "training form"),
    ("engine {d}/lenet.onnx --batch-range 0", 2, "argument --batch-range: a batch profile takes"),
    ("engine {d}/lenet.onnx --batch-range 8:1:4", 2, "argument --batch-range"),
    ("engine {d}/lenet.onnx --batch 1:2:99999999999", 2, "argument --batch"),
    ("engine {d}/lenet.onnx --workspace 0", 2, "argument --workspace"),
    ("engine {d}/lenet.onnx --workspace 1e400", 2, "argument --workspace"),
    ("engine {d}/lenet.onnx --workspace 99999T", 2, "argument --workspace"),
    ("engine {d}/lenet.onnx --timing-cache {d}/folder", 1, "is a folder"),
    ("engine {d}/lenet.onnx --precision int8", 1, "compiled from a net"),
    ("engine {d}/garbage.onnx", 1, "is not an ONNX model"),
    # train (refused before any training)
    ("train lenet5 --epochs 0", 2, "argument --epochs"),
    ("train lenet5 --batch -1", 2, "argument --batch"),
    ("train lenet5 --lr 0", 2, "argument --lr: takes a number > 0"),
    ("train lenet5 --lr nan", 2, "argument --lr: takes a finite number"),
    ("train lenet5 --lr inf", 2, "argument --lr: takes a finite number"),
    ("train lenet5 --lr 1e400", 2, "argument --lr: takes a finite number"),
    ("train lenet5 --momentum 1", 2, "argument --momentum"),
    ("train lenet5 --momentum nan", 2, "argument --momentum"),
    ("train lenet5 --weight-decay -1", 2, "argument --weight-decay"),
    ("train lenet5 --weight-decay inf", 2, "argument --weight-decay"),
    ("train lenet5 --gamma 0", 2, "argument --gamma"),
    ("train lenet5 --gamma nan", 2, "argument --gamma"),
    ("train lenet5 --step-size 0", 2, "argument --step-size"),
    ("train lenet5 --shift -1", 2, "argument --shift"),
    ("train lenet5 --seed -1", 2, "argument --seed"),
    ("train lenet5 --threads -2", 2, "argument --threads"),
    ("train lenet5 --checkpoint-every -1", 2, "argument --checkpoint-every"),
    ("train lenet5 --mirror notaurl", 2, "argument --mirror"),
    ("train lenet5 --out {d}/afile", 1, "is a file"),
    ("train lenet5 --out /proc", 1, "cannot write into '/proc'"),
    ("train lenet5 --out /proc/run", 1, "cannot create the folder '/proc/run'"),
    ("train lenet5 --out {d}/afile/run", 1, "cannot create the folder"),
    ("train lenet5 --init-from {d}/none.onnx --out {d}/r", 1, "no such file"),
    ("train lenet5 --resume --out {d}/r", 1, "no checkpoint"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_exit_1_or_2_with_one_clear_line(
    argv: str, code: int, fragment: str, d: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, err = netdsl_main(argv.format(d=d).split(), capsys)
    assert "internal error" not in err and "Traceback" not in err
    assert (got, fragment.format(d=d) in err) == (code, True), err
    first = err.splitlines()[-1] if code == 2 else err.splitlines()[0]
    assert "error:" in first  # usage errors end with it, others start with it
    assert not (d / "r").exists()  # a refused run leaves no folder behind


def test_train_says_when_every_default_run_folder_is_taken(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for k in ["", *(f"-{k}" for k in range(2, 1000))]:
        (tmp_path / "runs" / f"lenet5{k}").mkdir(parents=True)
    code, err = netdsl_main(["train", "lenet5"], capsys)
    assert code == 1 and "runs/lenet5 to runs/lenet5-999 are all taken" in err


# ---- flag advice: the library states facts, the command line names the flag ----------------


@pytest.mark.parametrize(
    ("error", "command", "note"),
    [
        (errors.WeightsMismatch("2 tensors do not fit"), "compile", "pass --skip-mismatched"),
        (errors.Diverged("the loss is nan", lr=0.5), "train", "try a lower --lr (it was 0.5)"),
        (errors.FixedBatch("fixed batch 4", batch=4), "bench", "bench it with --batch 4"),
        (errors.NeedsInference("training form"), "engine", "compile it without --training-form"),
        (errors.DataMissing("no IDX files"), "train", "pass --download"),
        (errors.DataMissing("no IDX files"), "compile", "--data mnist:DIR --download"),
        (errors.NoCheckpoint("no checkpoint", path="x"), "train", "pass the --out folder"),
        (errors.ImageSizeMismatch("8x8", fits=("pad",)), "train", "pass --fit pad"),
        (errors.ImageSizeMismatch("8x8", fits=("resize",)), "compile", "--calib-fit resize"),
        (errors.ClassCount("labels", classes=12), "train", "--set classes=12"),
    ],
)
def test_the_cli_adds_flag_advice(error: netdsl.NetError, command: str, note: str) -> None:
    assert "--" not in error.render()
    advised = advise(error, command)
    assert note in advised.diagnostics[0].notes[-1]
    assert advised.render().startswith(error.render())


def test_the_flag_replaces_the_api_keyword_in_the_notes() -> None:
    error = errors.WeightsMismatch("1 tensor does not fit", None, ["skip_mismatched=True keeps"])
    assert advise(error, "compile").diagnostics[0].notes == (
        "pass --skip-mismatched to keep fresh weights for them (to fine-tune with a new head)",
    )


ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
LIBRARY = sorted(
    p
    for p in [*(ROOT / "netdsl").glob("*.py"), *(ROOT / "backends").rglob("*.py")]
    if p.name != "__main__.py"
)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_strings_name_no_flag(path: Path) -> None:
    """Every string in library code but docstrings: messages state facts, the CLI names flags."""
    tree = ast.parse(path.read_text("utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    flags = [
        f"line {node.lineno}: {flag}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
        for flag in FLAG.findall(node.value)
    ]
    assert not flags, f"library strings name command-line flags: {flags}"


def test_a_plain_error_gets_no_advice() -> None:
    error = netdsl.NetError("plain")
    assert advise(error, "compile") is error


@pytest.mark.parametrize(
    ("module", "code", "fragment"),
    [
        ("onnxruntime", 2, "pip install 'netdsl[run]'"),
        ("sklearn", 2, "pip install 'netdsl[train]'"),
        ("PIL", 2, "pip install 'netdsl[run]'"),
        ("netdsl.backends.nothing", 3, "internal error"),  # our own module missing: a bug
    ],
)
def test_a_missing_module_names_its_extra(
    module: str, code: int, fragment: str, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    def missing(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    monkeypatch.setattr(compiling, "compile_net", missing)
    got, err = netdsl_main(["compile", "lenet5"], capsys)
    assert got == code and fragment in err


def test_memory_running_out_is_an_error_not_a_bug(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(compiling, "compile_net", exhausted)
    got, err = netdsl_main(["compile", "lenet5"], capsys)
    assert (got, err.splitlines()[0]) == (1, "error: netdsl compile ran out of memory")


# ---- compile: emitted once, written atomically ----------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--precision", "fp16"],
        ["--precision", "int8", "--calib", "digits"],
        ["--fold-bn"],
        ["--training-form"],
    ],
    ids=lambda f: " ".join(f) or "fp32",
)
def test_compile_emits_the_model_once(
    flags: list[str], tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    calls = []
    real = compiling.to_onnx

    def counting(*args: object, **kwargs: object) -> onnx.ModelProto:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compiling, "to_onnx", counting)
    out = tmp_path / "lenet.onnx"
    assert main(["compile", "lenet5", "-o", str(out), "--calib-images", "16", *flags]) == 0
    assert len(calls) == 1
    if "--training-form" in flags:
        assert calls[0]["mode"] == "train"
        return
    folded = "int8" in flags or "--fold-bn" in flags  # int8 folds batch norms itself
    assert (calls[0]["mode"], calls[0]["fold_bn"]) == ("inference", folded)
    onnx.checker.check_model(onnx.load(out))


def test_a_failed_write_leaves_the_old_model_and_no_fragment(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "lenet.onnx"
    out.write_bytes(b"the old model")

    def full_disk(fd: int) -> None:  # the bytes went to the temporary file; the flush fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    code, err = netdsl_main(["compile", "lenet5", "-o", str(out)], capsys)
    assert code == 1 and f"cannot write '{out}': No space left on device" in err
    assert out.read_bytes() == b"the old model"
    assert sorted(os.listdir(tmp_path)) == ["lenet.onnx"]


if __name__ == "__main__":  # the table of these cases as a user sees them, for the docs
    import contextlib
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = artefacts(Path(tmp))
        print("| command | exit | first line |\n|---|---|---|")
        for argv, _, _ in CASES:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv.format(d=folder).split())
                except SystemExit as done:
                    code = int(done.code or 0)
            lines = err.getvalue().splitlines()
            line = (lines[-1] if code == 2 else lines[0]).replace(tmp, "DIR")
            print(f"| `netdsl {argv.replace('{d}', 'DIR')}` | {code} | {line} |")
