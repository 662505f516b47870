"""`run` and `bench` for nets with several inputs and outputs: one `--input NAME=FILE` per
input (random where none is given), every output printed by name; the JSON fits run's schema.

Oracle: onnxruntime on the same compiled model, fed the same arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import netdsl
from netdsl.cli import main

SCHEMA = Path(__file__).resolve().parents[2] / "netdsl" / "schemas" / "run.json"
NET = """
net pair:
    input a: 1x8x8, b: 2x8x8
    t = a -> conv3x3(4) -> relu
    output s: [t, b -> conv1x1(4)] -> add -> gap -> fc(3)
    output m: t
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pair.net").write_text(NET)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.random((2, 1, 8, 8), dtype=np.float32))
    np.save(tmp_path / "b.npy", rng.random((2, 2, 8, 8), dtype=np.float32))
    return tmp_path


def test_named_inputs_give_every_output(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime

    argv = ["run", str(folder / "pair.net"), "--input", f"a={folder / 'a.npy'}"]
    assert main([*argv, "--input", f"b={folder / 'b.npy'}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    model = netdsl.parse(NET).to_onnx(mode="inference")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = session.run(None, {k: np.load(folder / f"{k}.npy") for k in "ab"})
    assert [o["name"] for o in report["outputs"]] == ["s", "m"]
    for out, y in zip(report["outputs"], want, strict=True):
        assert out["shape"] == list(y.shape)
        assert out["range"]["mean"] == pytest.approx(float(y.mean()), rel=1e-5)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "no --input a=FILE; a random input"),
        (["--input", "a={f}/a.npy"], "no --input b=FILE; a random input"),
        (["--input", "q={f}/a.npy"], "give NAME=FILE, NAME one of the model's inputs (a, b)"),
        (["--input", "a={f}/b.npy"], "--input a: expected float values of shape Nx1x8x8"),
        (["--input", "{f}/a.npy", "--input", "{f}/b.npy"], "give NAME=FILE for each input"),
        (["--input", "a={f}/a.npy", "--input", "a={f}/a.npy"], "--input a= is given twice"),
    ],
)
def test_feeds_and_their_errors(
    folder: Path, extra: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(folder / "pair.net"), *(e.format(f=folder) for e in extra)])
    out = capsys.readouterr()
    assert fragment in out.out + out.err
    assert code == (0 if "random" in fragment else 1)


def test_bench_feeds_every_input(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(folder / "pair.net"), "--batches", "1,3", "--repeats", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[-2:]] == ["1", "3"]


def test_bench_times_the_given_samples(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --input NAME=FILE`: the file's samples, repeated to fill each batch, are what
    onnxruntime runs on for that input (the other stays random); a wrong file is one error."""
    from netdsl.backends.runtime import ort

    fed: list[dict[str, np.ndarray]] = []
    real = ort.session

    class Recording:
        def __init__(self, sess: object) -> None:
            self.sess = sess

        def __getattr__(self, name: str) -> object:
            return getattr(self.sess, name)

        def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> object:
            fed.append(feeds)
            return self.sess.run(outputs, feeds)  # type: ignore[attr-defined]

    monkeypatch.setattr(ort, "session", lambda *a, **k: Recording(real(*a, **k)))
    argv = ["bench", str(folder / "pair.net"), "--batches", "3", "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--input", f"a={folder}/a.npy"]) == 0
    a = np.load(folder / "a.npy")
    np.testing.assert_array_equal(fed[-1]["a"], a[[0, 1, 0]])
    assert fed[-1]["b"].shape == (3, 2, 8, 8)
    capsys.readouterr()
    assert main([*argv, "--input", f"b={folder}/a.npy"]) == 1
    assert "--input b: expected float values of shape Nx2x8x8" in capsys.readouterr().err
