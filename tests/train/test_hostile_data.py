"""Datasets, images, checkpoints and output folders from anyone: one line, exit 1, never exit 3.

The table holds (builder, arguments, message fragment, exit code): the builder writes a hostile
file into a fresh folder and returns the `netdsl train` arguments that feed it; every case runs
through `netdsl.cli.main` in-process. Bombs (files that declare far more than they hold) are
refused before anything of their declared size is allocated (tracemalloc checks the peak).
`python tests/train/test_hostile_data.py` prints how long each refusal takes in-process.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from netdsl.backends.data import limits
from netdsl.backends.data import sources as data
from netdsl.backends.train import files
from netdsl.cli import main
from netdsl.source import NetError

NET = "input 1x8x8\nconv3x3(4) -> relu -> flatten -> fc(10) -> softmax"
Builder = Callable[[Path], list[str]]


def _blobs(path: Path, seed: int = 0, n: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 8, 8)).astype(np.float32)
    y = np.arange(n) % 3
    np.savez(path, x_train=x, y_train=y, x_test=x[:12], y_test=y[:12])
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def _npy(shape: tuple[int, ...], descr: str = "|u1", body: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + (body if body is not None else bytes(int(np.prod(shape))))


def _npz_data(members: dict[str, bytes]) -> Builder:
    def build(d: Path) -> list[str]:
        return ["--data", f"npz:{_zip(d / 'd.npz', members)}"]

    return build


def _truncated_npz(d: Path) -> list[str]:
    blob = _blobs(d / "d.npz").read_bytes()
    (d / "d.npz").write_bytes(blob[: len(blob) // 2])
    return ["--data", f"npz:{d / 'd.npz'}"]


GOOD = {"y_train.npy": _npy((4,), "<i8"), "x_test.npy": _npy((4, 1, 8, 8))}
GOOD["y_test.npy"] = GOOD["y_train.npy"]


# ---- CIFAR-10 batches --------------------------------------------------------------------------


class _Call:
    """Pickles as a call of `fn(*args)` without the test calling it."""

    def __init__(self, fn: object, *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.fn, self.args)


def _shared(depth: int) -> list[object]:
    """A list that holds itself twice over `depth` times: bytes in a pickle, 2^depth as an array."""
    level: list[object] = [0] * 4
    for _ in range(depth):
        level = [level, level]
    return level


def _cifar(batch: dict[bytes, object]) -> Builder:
    def build(d: Path) -> list[str]:
        good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
        (d / "test_batch").write_bytes(pickle.dumps(good, protocol=2))
        (d / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
        return ["--data", f"cifar10:{d}"]

    return build


RECONSTRUCT = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
CIFAR_BOMBS = {
    "an ndarray of 10^12 bytes": {
        b"data": _Call(RECONSTRUCT, np.ndarray, (10**12,), b"b"),
        b"labels": [],
    },
    "2^40 nested data": {b"data": _shared(40), b"labels": [0]},
    "2^40 nested labels": {b"data": np.zeros((1, 3072), np.uint8), b"labels": _shared(40)},
    "a label of 2^70": {b"data": np.zeros((1, 3072), np.uint8), b"labels": [2**70]},
}


# ---- IDX and images ----------------------------------------------------------------------------


def _idx(dims: tuple[int, ...], body: bytes, gz: bool) -> Builder:
    def build(d: Path) -> list[str]:
        head = bytes([0, 0, 8, len(dims)]) + b"".join(n.to_bytes(4, "big") for n in dims)
        blob = head + body
        name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
        (d / name).write_bytes(gzip.compress(blob) if gz else blob)
        labels = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10)
        (d / "t10k-labels-idx1-ubyte").write_bytes(labels)
        return ["--data", f"mnist:{d}"]

    return build


def _png(width: int, height: int) -> bytes:
    """A grey PNG that declares width x height and holds a few bytes: PIL reads its header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(64)))
        + chunk(b"IEND", b"")
    )


def _folder_with(blob: bytes) -> Builder:
    def build(d: Path) -> list[str]:
        from PIL import Image

        for name in ("a", "b"):
            (d / name).mkdir()
            Image.new("L", (8, 8), 100).save(d / name / "ok.png")
        (d / "b" / "bomb.png").write_bytes(blob)
        return ["--data", f"folder:{d}"]

    return build


def _file_as(flag: str, spec: str = "") -> Builder:
    def build(d: Path) -> list[str]:
        (d / "file").write_text("not a folder")
        return [flag, f"{spec}{d / 'file'}"] + ([] if spec else ["--data", "digits"])

    return build


def _init_from(members: dict[str, bytes]) -> Builder:
    def build(d: Path) -> list[str]:
        return ["--init-from", str(_zip(d / "w.npz", members)), "--data", "digits"]

    return build


CASES: list[tuple[str, Builder, str, int]] = [
    (
        "npz member not .npy",
        _npz_data({"x_train": b"\x80\x04N.", **GOOD}),
        "member 'x_train' is not a .npy array",
        1,
    ),
    ("npz truncated", _truncated_npz, "as an .npz archive", 1),
    (
        "npz header lies",
        _npz_data({"x_train.npy": _npy((10**6, 1, 28, 28), body=bytes(64)), **GOOD}),
        "declares 747.7 MiB of data (1000000x1x28x28 uint8), but the archive holds 64 bytes",
        1,
    ),
    (
        "npz of Python objects",
        _npz_data({"x_train.npy": _npy((4, 1, 8, 8), "|O", b"\x80\x04N."), **GOOD}),
        "holds Python objects",
        1,
    ),
    (
        "init-from member not .npy",
        _init_from({"conv1.weight": b"\x80\x04N."}),
        "member 'conv1.weight' is not a .npy array",
        1,
    ),
    (
        "init-from header lies",
        _init_from({"conv1.weight.npy": _npy((4, 1, 3, 3), "<f4", bytes(8))}),
        "declares 144 bytes of data",
        1,
    ),
    ("--out is a file", _file_as("--out"), "is a file", 1),
    ("folder: names a file", _file_as("--data", "folder:"), "is not a folder", 1),
    ("cifar10: names a file", _file_as("--data", "cifar10:"), "is not a folder", 1),
    ("mnist: names a file", _file_as("--data", "mnist:"), "is a file, not a folder", 1),
    *[
        (f"CIFAR bomb: {label}", _cifar(batch), "is not a CIFAR-10 python batch", 1)
        for label, batch in CIFAR_BOMBS.items()
    ],
    (
        "IDX header lies",
        _idx((60000, 28, 28), bytes(100), gz=False),
        "promises 60000x28x28 = 47,040,000 bytes, the file holds 100",
        1,
    ),
    (
        "IDX header lies, gzipped",
        _idx((60000, 28, 28), bytes(100), gz=True),
        "promises 60000x28x28 = 47,040,000 bytes, the file holds 100",
        1,
    ),
    (
        "IDX declares 2^64 bytes",
        _idx((2**32 - 1,) * 3, bytes(100), gz=True),
        "over netdsl's limit",
        1,
    ),
    (
        "PNG bomb 50000^2",
        _folder_with(_png(50_000, 50_000)),
        "more pixels than PIL allows",
        1,
    ),
    (
        "PNG bomb 10000^2",
        _folder_with(_png(10_000, 10_000)),
        "more pixels than PIL allows",
        1,
    ),
    (
        "PNG bomb 9000^2",
        _folder_with(_png(9_000, 9_000)),
        "is 9,000 x 9,000 = 81,000,000 pixels; netdsl reads images of at most 67,108,864",
        1,
    ),
]


@pytest.mark.parametrize(
    ("build", "fragment", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_training_inputs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    build: Builder,
    fragment: str,
    code: int,
) -> None:
    (tmp_path / "net.net").write_text(NET)
    d = tmp_path / "in"
    d.mkdir()
    args = build(d)
    out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    tracemalloc.start()
    try:
        got = main(["train", str(tmp_path / "net.net"), *args, *out, "--epochs", "1", "-q"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert got == code and err.startswith("error: ") and fragment in err, err
    assert len(err.splitlines()[0]) < 400
    assert peak < 64 * 2**20, f"refusing it allocated {peak / 2**20:.0f} MiB"


# ---- checkpoints -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run on a small npz dataset, copied by each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    (root / "net.net").write_text(NET.replace("fc(10)", "fc(3)"))
    _blobs(root / "a.npz")
    _blobs(root / "b.npz", seed=1)
    args = ["train", str(root / "net.net"), "--data", f"npz:{root / 'a.npz'}", "--epochs", "1"]
    assert main([*args, "--out", str(root / "run"), "-q", "--batch", "8"]) == 0
    return root


def _damaged(root: Path, tmp: Path, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    run = tmp / "run"
    shutil.copytree(root / "run", run)
    with np.load(run / files.CHECKPOINT) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    np.savez(run / files.CHECKPOINT, **arrays)  # type: ignore[arg-type]
    return run


def _cut(root: Path, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(root / "run", run)
    blob = (run / files.CHECKPOINT).read_bytes()
    (run / files.CHECKPOINT).write_bytes(blob[: len(blob) // 3])
    return run


def _meta(change: Callable[[dict[str, object]], None]) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(arrays: dict[str, np.ndarray]) -> None:
        meta = json.loads(str(arrays["meta"]))
        change(meta)
        arrays["meta"] = np.array(json.dumps(meta))

    return edit


CHECKPOINTS: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("truncated", _cut, "as an .npz archive"),
    (
        "a parameter missing",
        lambda r, t: _damaged(r, t, lambda a: a.pop("param/fc1.weight")),
        "lacks param/fc1.weight",
    ),
    ("meta missing", lambda r, t: _damaged(r, t, lambda a: a.pop("meta")), "lacks its meta entry"),
    (
        "a parameter of another shape",
        lambda r, t: _damaged(r, t, lambda a: a.update({"param/fc1.bias": np.zeros(7)})),
        "array 'param/fc1.bias' has shape (7,), the net's is (3,)",
    ),
    (
        "a stranger array",
        lambda r, t: _damaged(r, t, lambda a: a.update({"opt/x/y": np.zeros(10**6)})),
        "array 'opt/x/y' has shape (1000000,)",
    ),
    (
        "progress garbled",
        lambda r, t: _damaged(r, t, _meta(lambda m: m.update(progress={"epoch": 1, "hack": 2}))),
        "progress record has unknown entries (hack)",
    ),
    (
        "config garbled",
        lambda r, t: _damaged(r, t, _meta(lambda m: m.update(config=[]))),
        "lacks or garbles config",
    ),
    (
        "settings out of range",
        lambda r, t: _damaged(
            r,
            t,
            _meta(lambda m: m["config"].update(lr=float("nan"))),  # type: ignore[union-attr]
        ),
        "the learning rate (lr) must be a finite number above 0, got nan",
    ),
]


@pytest.mark.parametrize(
    ("damage", "fragment"), [c[1:] for c in CHECKPOINTS], ids=[c[0] for c in CHECKPOINTS]
)
def test_damaged_checkpoints_are_refused_on_resume(
    finished: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path, Path], Path],
    fragment: str,
) -> None:
    run = damage(finished, tmp_path)
    args = ["train", str(finished / "net.net"), "--data", f"npz:{finished / 'a.npz'}"]
    assert main([*args, "--resume", "--out", str(run), "--epochs", "2", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err, err


def test_resume_refuses_other_data_and_says_what_differs(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    before = (run / files.CHECKPOINT).read_bytes()
    args = ["train", str(finished / "net.net"), "--resume", "--out", str(run), "--epochs", "2"]
    assert main([*args, "--data", f"npz:{finished / 'b.npz'}", "-q"]) == 1
    err = capsys.readouterr().err
    assert "trained on npz:" in err and "a.npz" in err
    assert "differs: the same sizes but other images or labels" in err
    assert (run / files.CHECKPOINT).read_bytes() == before
    assert main([*args, "--data", f"npz:{_blobs(tmp_path / 'c.npz', n=60)}", "-q"]) == 1
    assert "differs: training images 40 -> 60" in capsys.readouterr().err


# ---- the output folder: one run at a time, leftovers of killed runs ------------------------------


def test_a_second_run_on_a_held_folder_changes_nothing(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    (run / files.LOCK).unlink(missing_ok=True)
    snapshot = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    args = ["train", str(finished / "net.net"), "--data", f"npz:{finished / 'a.npz'}", "-q"]
    with files.hold(run):  # another run holds it (flock is per open file, so this process counts)
        held = (run / files.LOCK).read_text()
        assert main([*args, "--resume", "--out", str(run), "--epochs", "2"]) == 1
        err = capsys.readouterr().err
        assert "is in use by another training run (pid " in err and "one run per output" in err
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == {
            **snapshot,
            files.LOCK: held.encode(),
        }
    assert main([*args, "--resume", "--out", str(run), "--epochs", "2"]) == 0


def test_a_killed_runs_lock_and_leftovers_are_taken_over(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    dead = {"pid": 2**22 + 17, "host": "elsewhere", "started": "yesterday"}
    (run / files.LOCK).write_text(json.dumps(dead))
    (run / files.WORK).mkdir()
    (run / files.WORK / "training_model.onnx").write_bytes(bytes(100))
    (run / ".checkpoint.npz.k3j2.tmp").write_bytes(bytes(10))
    args = ["train", str(finished / "net.net"), "--data", f"npz:{finished / 'a.npz'}"]
    assert main([*args, "--resume", "--out", str(run), "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of a run that ended without releasing it (pid {2**22 + 17}" in err
    assert "removed what an interrupted run left: .checkpoint.npz.k3j2.tmp, .work" in err
    assert not (run / files.WORK).exists() and not list(run.glob(".*.tmp"))
    assert (run / files.LOCK).read_text() == ""  # released


def test_dataset_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 10_000)
    with pytest.raises(NetError, match=r"as float32 would take 13\.0 KiB, over .* 9\.8 KiB"):
        data.load(f"npz:{_blobs(tmp_path / 'd.npz')}")


if __name__ == "__main__":  # how long each refusal takes in-process
    import tempfile

    for label, build, _, _ in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "net.net").write_text(NET)
            (root / "in").mkdir()
            args = build(root / "in")
            out = [] if "--out" in args else ["--out", str(root / "run")]
            start = time.perf_counter()
            code = main(["train", str(root / "net.net"), *args, *out, "--epochs", "1", "-q"])
            took = 1e3 * (time.perf_counter() - start)
            print(f"{label:32} exit {code}  {took:7.1f} ms", file=sys.stderr)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"batch": 16}, "these changed: batch 8 -> 16"),
        ({"lr": 0.5}, "lr 0.003 -> 0.5"),
        ({"seed": 3}, "seed 0 -> 3"),
    ],
)
def test_resume_in_the_library_refuses_changed_settings(
    finished: Path, tmp_path: Path, change: dict[str, object], fragment: str
) -> None:
    """The library checks what the command line also checks: a script cannot resume with
    another batch size either."""
    from netdsl.api import load
    from netdsl.backends.train.loop import Config, train

    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    config = Config(**{"epochs": 2, "batch": 8, **change})  # type: ignore[arg-type]
    d = data.load(f"npz:{finished / 'a.npz'}")
    with pytest.raises(NetError, match=fragment):
        train(load(str(finished / "net.net")), d, config, run, resume=True)


def test_two_processes_on_one_folder(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real second process: while a run works in `--out`, another is refused naming it; once
    the first is killed with SIGKILL, the next run takes its lock over and clears its scratch."""
    run = tmp_path / "run"
    args = ["train", str(finished / "net.net"), "--data", f"npz:{finished / 'a.npz'}", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-m", "netdsl", *args, "--epochs", "500", "--out", str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if (run / files.LOCK).is_file() and (run / files.LOCK).read_text().strip():
                break
            time.sleep(0.02)
        assert child.poll() is None, "the first run ended before the test could watch it"
        assert main([*args, "--epochs", "1", "--out", str(run)]) == 1
        assert f"in use by another training run (pid {child.pid} on " in capsys.readouterr().err
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    resume = ["--resume"] if (run / files.CHECKPOINT).exists() else []
    loud = [a for a in args if a != "-q"]  # the notes are progress output
    assert main([*loud, *resume, "--epochs", "1", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of a run that ended without releasing it (pid {child.pid}" in err
    assert not (run / files.WORK).exists()
