"""ONNX models and weights files from anyone: refused with one line and exit 1, never read
outside the model's folder, never allocating what the file only declares.

Each case is (builder, command, message fragment, exit code): the builder writes a hostile file
into a fresh folder and returns its path; the command runs through `netdsl.cli.main` in-process.
`python tests/onnx/test_hostile_models.py` prints how long each refusal takes in-process.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import netdsl
from netdsl.backends.data import onnxfile
from netdsl.backends.onnx import weights as wt
from netdsl.backends.runtime import ort
from netdsl.cli import main
from netdsl.source import NetError

NET = "input 1x4x4\nflatten -> fc(4) -> softmax"  # tensors fc1.weight 4x16, fc1.bias 4
SECRET = "/etc/passwd" if Path("/etc/passwd").is_file() else __file__


def adder(location: str, name: str = "fc1.bias", n: int = 4) -> onnx.ModelProto:
    """y = x + w, with w's n floats kept as external data at `location`."""
    w = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[n])
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", name], ["y"])],
        "adder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _model(location: str, link: str | None = None, target: str = SECRET) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        if link:
            os.symlink(target, folder / link)
        onnx.save_model(adder(location), str(folder / "m.onnx"))
        return folder / "m.onnx"

    return build


ESCAPES = [
    ("dotdot", _model("../../../../../../../../etc/passwd"), "a path through '..'"),
    ("absolute", _model(SECRET), "an absolute path"),
    ("backslashes", _model("..\\..\\..\\etc\\passwd"), "a path through '..'"),
    ("link", _model("w.bin", link="w.bin"), "a symbolic link that leads out"),
    ("linked-folder", _model("etc/passwd", link="etc", target="/etc"), "a symbolic link"),
]
COMMANDS = {
    "run": lambda m: ["run", m],
    "bench": lambda m: ["bench", m, "--batch", "1", "--repeats", "1"],
    "compare": lambda m: ["compare", m, m],
    "compile --weights": lambda m: ["compile", "{net}", "--weights", m, "-o", "{dir}/out.onnx"],
    "train --init-from": lambda m: [
        "train",
        "{net}",
        "--init-from",
        m,
        "--epochs",
        "1",
        "--out",
        "{dir}/run",
        "-q",
    ],
}


def _argv(command: str, model: Path, folder: Path) -> list[str]:
    (folder / "net.net").write_text(NET.replace("fc(4)", "fc(10)") if "train" in command else NET)
    return [
        a.replace("{net}", str(folder / "net.net")).replace("{dir}", str(folder))
        for a in COMMANDS[command](str(model))
    ]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("build", "fragment"), [c[1:] for c in ESCAPES], ids=[c[0] for c in ESCAPES]
)
def test_external_data_outside_the_folder_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    build: Callable[[Path], Path],
    fragment: str,
    command: str,
) -> None:
    folder = tmp_path / "models" / "deep" / "er"
    folder.mkdir(parents=True)
    argv = _argv(command, build(folder), tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "own folder" in err, err
    assert "root:" not in err  # nothing of the file leaked into the message


def test_external_data_inside_the_folder_is_read(tmp_path: Path) -> None:
    """The control: data beside the model (a plain file, or a link that stays inside) works,
    and the model computes x + w with w from that file (numpy is the oracle)."""
    w = np.array([1.5, -2.0, 0.25, 8.0], np.float32)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.bin").write_bytes(w.tobytes())
    os.symlink("data/w.bin", tmp_path / "alias.bin")
    x = np.arange(4, dtype=np.float32)[None]
    for location in ("data/w.bin", "alias.bin"):
        onnx.save_model(adder(location), str(tmp_path / "m.onnx"))
        np.testing.assert_array_equal(ort.run(tmp_path / "m.onnx", x), x + w)
        model = onnxfile.load_all(tmp_path / "m.onnx")
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), w)


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("missing.bin", "which is not a file in"),
        ("short.bin", "at bytes 0..16, but that file holds 8"),
        ("", "a name that is empty"),
    ],
)
def test_external_data_that_is_not_there(tmp_path: Path, location: str, fragment: str) -> None:
    (tmp_path / "short.bin").write_bytes(bytes(8))
    model = adder(location)
    model.graph.initializer[0].external_data.add(key="length", value="16")
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    with pytest.raises(NetError, match=fragment):
        ort.read_model(tmp_path / "m.onnx")


def test_external_data_in_a_subgraph_is_checked(tmp_path: Path) -> None:
    """A tensor inside an If branch's Constant is external data too."""
    branch = adder("../../etc/passwd")
    const = helper.make_node("Constant", [], ["c"], value=branch.graph.initializer[0])
    then = helper.make_graph(
        [const], "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])]
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=then)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    onnx.save_model(helper.make_model(graph), str(tmp_path / "m.onnx"))
    assert main(["run", str(tmp_path / "m.onnx")]) == 1


# ---- weights files: npz ------------------------------------------------------------------------


def _npz_member(
    folder: Path, name: str, header_shape: tuple[int, ...], body: bytes, descr: str = "<f4"
) -> Path:
    """An .npz whose member `name` has a .npy header declaring `header_shape` of `descr` and
    then `body` (honest or not), stored uncompressed."""
    header = {"descr": descr, "fortran_order": False, "shape": header_shape}
    blob = io_npy(header) + body
    with zipfile.ZipFile(folder / "w.npz", "w") as z:
        z.writestr(name, blob)
    return folder / "w.npz"


def io_npy(header: dict[str, object]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _inflating(folder: Path, count: int = 50_000_000) -> Path:
    """An honest compressed .npz: fc1.weight of `count` zeros (200 MB), a file of about 200 kB."""
    header = io_npy({"descr": "<f4", "fortran_order": False, "shape": (count,)})
    with (
        zipfile.ZipFile(folder / "w.npz", "w", zipfile.ZIP_DEFLATED) as z,
        z.open("fc1.weight.npy", "w", force_zip64=True) as f,
    ):
        f.write(header)
        chunk = bytes(2**24)
        for start in range(0, count * 4, len(chunk)):
            f.write(chunk[: min(len(chunk), count * 4 - start)])
    return folder / "w.npz"


def _not_npy(folder: Path) -> Path:
    with zipfile.ZipFile(folder / "w.npz", "w") as z:
        z.writestr("fc1.weight", b"\x80\x04K\x01.")  # a pickle, under no .npy name
    return folder / "w.npz"


def _truncated(folder: Path) -> Path:
    np.savez(folder / "w.npz", **{"fc1.weight": np.ones((4, 16), np.float32)})
    blob = (folder / "w.npz").read_bytes()
    (folder / "w.npz").write_bytes(blob[: len(blob) // 2])
    return folder / "w.npz"


WEIGHTS = [
    ("not .npy", _not_npy, "member 'fc1.weight' is not a .npy array", 1),
    ("truncated", _truncated, "as an .npz archive", 1),
    (
        "lying header",
        lambda d: _npz_member(d, "fc1.weight.npy", (10**12,), bytes(64)),
        "declares 3.6 TiB of data",
        1,
    ),
    (
        "object dtype",
        lambda d: _npz_member(d, "fc1.weight.npy", (4, 16), b"\x80\x04N.", descr="|O"),
        "holds Python objects",
        1,
    ),
    ("200 MB of zeros", _inflating, "fc1.weight is 50000000 in the file, the net wants 4x16", 1),
]


@pytest.mark.parametrize(
    ("build", "fragment", "code"), [c[1:] for c in WEIGHTS], ids=[c[0] for c in WEIGHTS]
)
def test_hostile_weights(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    build: Callable[[Path], Path],
    fragment: str,
    code: int,
) -> None:
    (tmp_path / "net.net").write_text(NET)
    path = build(tmp_path)
    tracemalloc.start()
    try:
        argv = ["compile", str(tmp_path / "net.net"), "--weights", str(path)]
        got = main([*argv, "-o", str(tmp_path / "out.onnx")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert got == code and err.startswith("error: ") and fragment in err, err
    assert peak < 20 * 2**20, f"refusing it allocated {peak / 2**20:.0f} MiB"


def test_weights_bomb_is_never_loaded_even_when_skipped(tmp_path: Path) -> None:
    """With skip_mismatched, the 200 MB member stays a placeholder that allocates nothing."""
    path = _inflating(tmp_path)
    tracemalloc.start()
    try:
        model = netdsl.parse(NET).to_onnx(weights=path, skip_mismatched=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    meta = {p.key: p.value for p in model.metadata_props}["weights"]
    assert "shape mismatch, kept fresh: fc1.weight" in meta and peak < 20 * 2**20


def test_net_too_large_to_allocate_is_refused_with_its_size(tmp_path: Path) -> None:
    (tmp_path / "big.net").write_text("input 40000\n[fc(40000)]*700")  # 1.1 * 10^12 parameters
    with pytest.raises(NetError, match=r"1,120,028,000,000 parameters .* would take 4\.1 TiB"):
        wt.check_size(netdsl.parse((tmp_path / "big.net").read_text()))
    assert main(["compile", str(tmp_path / "big.net"), "-o", str(tmp_path / "big.onnx")]) == 1
    assert not (tmp_path / "big.onnx").exists()


if __name__ == "__main__":  # how long each refusal takes in-process
    import tempfile

    cases = [
        (f"{c[0]} / {cmd}", c[1], cmd) for c in ESCAPES for cmd in ("run", "compile --weights")
    ]
    for label, build, cmd in cases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            argv = _argv(cmd, build(folder), folder)
            start = time.perf_counter()
            code = main(argv)
            print(
                f"{label:40} exit {code}  {1e3 * (time.perf_counter() - start):7.1f} ms",
                file=sys.stderr,
            )
    for label, build, _, _ in WEIGHTS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "net.net").write_text(NET)
            path = build(folder)
            start = time.perf_counter()
            argv = ["compile", str(folder / "net.net"), "--weights", str(path)]
            code = main([*argv, "-o", str(folder / "out.onnx")])
            print(
                f"weights {label:32} exit {code}  {1e3 * (time.perf_counter() - start):7.1f} ms",
                file=sys.stderr,
            )


def test_unread_tensors_are_never_used_as_weights(tmp_path: Path) -> None:
    """A tensor skipped when reading (its shape fits no tensor) keeps only its shape: merging it
    under a name where it would fit is an error, never zeros loaded as weights."""
    np.savez(tmp_path / "w.npz", big=np.ones((5, 16), np.float32), **{"fc1.bias": np.ones(4)})
    tensors = wt.read(tmp_path / "w.npz", wt.shapes(netdsl.parse(NET)))
    assert isinstance(tensors["big"], wt.Unread) and tensors["big"].shape == (5, 16)
    np.testing.assert_array_equal(tensors["fc1.bias"], np.ones(4))
    fresh = {"fc1.weight": np.zeros((5, 16), np.float32)}
    with pytest.raises(NetError, match=r"tensor fc1\.weight was not read"):
        wt.merge(fresh, {"fc1.weight": tensors["big"]})
