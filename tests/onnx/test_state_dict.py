"""PyTorch state_dict files: the reader against torch.load(weights_only=True), hostile files
refused without running anything, and every torchvision twin of the zoo computing what PyTorch
computes from the same .pth (PyTorch modules built with torchvision's exact names: bench/peers).

Sizes: each twin runs at a small input (64x64; AlexNet 128x128) with 10 classes, and AlexNet and
VGG's adaptive pool set to the size their features end at, as torchvision's is at 224: the same
modules and key names, a few seconds per net on two cores. Full-size key names and shapes are
checked for every twin on PyTorch's meta device (no memory)."""

from __future__ import annotations

import os
import pickle
import subprocess
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

import netdsl
from bench import peers
from netdsl.backends.onnx import names, state_dict
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.runtime import ort
from netdsl.backends.train.loop import initial_params
from netdsl.backends.train.settings import Config
from netdsl.source import NetError
from netdsl.zoo import find

BASE = torch.arange(48, dtype=torch.float64).reshape(6, 8) / 7 - 3
CASES: dict[str, Any] = {
    "float32": BASE.float(),
    "transposed": BASE.float().t(),
    "strided slice with offset": BASE[1:5:2, 3::2],
    "expanded (stride 0)": BASE[0, :3].expand(4, 3),
    "float16": BASE.half(),
    "bfloat16": BASE.bfloat16(),
    "int64": BASE.long(),
    "int32 column": BASE.int()[:, 5],
    "int8": BASE.to(torch.int8),
    "uint8": (BASE.abs() * 10).to(torch.uint8),
    "bool": BASE > 0,
    "0-d": torch.tensor(2.5),
    "empty": torch.empty(0, 3),
    "parameter": torch.nn.Parameter(BASE.float()),
}


def expected(value: torch.Tensor) -> np.ndarray:
    return (value.float() if value.dtype == torch.bfloat16 else value).detach().numpy()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "pre-1.6"])
@pytest.mark.parametrize("case", CASES)
def test_reader_agrees_with_torch_load(tmp_path: Path, case: str, legacy: bool) -> None:
    shared = BASE.float()
    saved = OrderedDict(x=CASES[case], left=shared[:, :4], right=shared[2:, 4:])
    path = tmp_path / "w.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=not legacy)
    ours = state_dict.read_state_dict(path)
    theirs = torch.load(path, weights_only=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        want = expected(value)
        assert ours[key].dtype == want.dtype and ours[key].shape == want.shape, key
        np.testing.assert_array_equal(ours[key], want, err_msg=key)
    ours["left"][0, 0] = 99  # views of one storage come back as arrays of their own
    assert ours["right"][0, 0] == want[0, 0]


@pytest.mark.parametrize(
    ("wrap", "keys"),
    [
        (lambda sd: {"state_dict": sd, "epoch": 3, "lr": 0.1}, ["a.weight", "b"]),
        (lambda sd: {"model": sd, "optimizer": {"lr": 0.1}}, ["a.weight", "b"]),
        (lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()), ["a.weight", "b"]),
    ],
    ids=["checkpoint", "model key", "DataParallel"],
)
def test_reader_finds_the_state_dict(tmp_path: Path, wrap: Any, keys: list[str]) -> None:
    torch.save(wrap({"a.weight": torch.ones(2, 3), "b": torch.zeros(4)}), tmp_path / "c.pt")
    assert list(state_dict.read_state_dict(tmp_path / "c.pt")) == keys


# ---- hostile and broken files ------------------------------------------------------------


class Call:
    """Pickles as a call of `function(*args)`, as a hostile file would write it."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


class Store:
    """Pickles as a persistent storage id: ('storage', FloatStorage, key, 'cpu', numel)."""

    def __init__(self, numel: int, key: str = "0") -> None:
        self.numel, self.key = numel, key


class Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Store):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def tensor(numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> Call:
    rebuild = torch._utils._rebuild_tensor_v2
    return Call(rebuild, Store(numel), offset, size, stride, False, OrderedDict())


def write_zip(path: Path, tree: Any, storages: dict[str, bytes] | None = None) -> Path:
    """A file laid out as torch.save lays it out, with a pickle and storages of our choosing."""
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("archive/data.pkl", "w") as file:
            Pickler(file, protocol=2).dump(tree)
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


FLOATS = np.arange(6, dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    ("tree", "storages", "message"),
    [
        ({"w": Call(os.system, "touch MARKER")}, {}, "calls posix.system"),
        ({"w": Call(eval, "open('MARKER', 'w')")}, {}, "calls builtins.eval"),
        (Call(subprocess.call, ["touch", "MARKER"]), {}, "calls subprocess.call"),
        (
            {"w": tensor(6, 0, (3, 2), (2, 1))},
            {"0": FLOATS[:12]},
            "holds 12 bytes, tensors need 24",
        ),
        ({"w": tensor(6, 0, (3, 2), (2, 1))}, {}, "storage 0 is missing"),
        ({"w": tensor(6, 2, (3, 2), (2, 1))}, {"0": FLOATS}, "reaches element 7 of a storage of 6"),
        ({"w": tensor(6, 0, (10**9, 10**9), (0, 0))}, {"0": FLOATS}, "would take over 16.0 GiB"),
        ({"w": tensor(6, 0, (2, 3), (3,))}, {"0": FLOATS}, "size (2, 3) but stride (3,)"),
        ({"w": tensor(6, 0, (-2, 3), (3, 1))}, {"0": FLOATS}, "not an integer >= 0"),
        ({"w": tensor(6, 0, (2, 3), (3, 1)), "n": 3}, {"0": FLOATS}, "holds no state_dict"),
        ([1, 2, 3], {}, "holds no state_dict (a list"),
    ],
    ids=[
        "os.system",
        "builtins.eval",
        "subprocess.call",
        "storage too short",
        "storage missing",
        "tensor past its storage",
        "absurd size",
        "stride of the wrong rank",
        "negative size",
        "not only tensors",
        "not a mapping",
    ],
)
def test_hostile_or_broken_zip_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tree: Any,
    storages: dict[str, bytes],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_zip(tmp_path / "bad.pth", tree, storages)
    with pytest.raises(NetError) as error:
        state_dict.read_state_dict(path)
    assert message in str(error.value)
    assert not (tmp_path / "MARKER").exists()


def test_hostile_legacy_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.pt").write_bytes(pickle.dumps(Call(os.system, "touch MARKER"), protocol=2))
    with pytest.raises(NetError, match=r"calls posix\.system"):
        state_dict.read_state_dict(tmp_path / "bad.pt")
    assert not (tmp_path / "MARKER").exists()


def writes(data: bytes) -> Any:
    return lambda path: (path.write_bytes(data), path)[1]


def tar_file(path: Path) -> Path:
    (path.parent / "storages").write_bytes(bytes(8))
    with tarfile.open(path, "w") as archive:
        archive.add(path.parent / "storages", "storages")
    return path


def other_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/hello.txt", "not weights")
    return path


def zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        with archive.open("archive/data/0", "w") as member:
            for _ in range(64):
                member.write(bytes(1 << 20))  # 64 MiB of zeros deflate to about 64 kB
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (zip_bomb, "would inflate to 67,108,864 bytes"),
        (writes(b"GIF89a not weights"), "not a PyTorch file"),
        (writes(b""), "not a PyTorch file"),
        (writes(pickle.dumps({"a": 1}, protocol=2)), "no PyTorch magic"),
        (writes(b"\x80\x02K"), "not a readable PyTorch file"),
        (
            lambda p: write_zip(p, {}).write_bytes(p.read_bytes()[:50]) and p,
            "not a readable PyTorch file: BadZipFile",
        ),
        (other_zip, "not one written by torch.save"),
        (tar_file, "PyTorch before 0.4 wrote tar files"),
        (lambda p: p, "cannot read weights"),
    ],
    ids=[
        "zip bomb",
        "not zip",
        "empty",
        "plain pickle",
        "cut pickle",
        "cut zip",
        "no data.pkl",
        "tar",
        "missing",
    ],
)
def test_files_that_are_not_weights(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path / "w.pth")
    with pytest.raises(NetError) as error:
        state_dict.read_state_dict(path)
    assert message in str(error.value)


def test_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"a": torch.ones(2), "b": torch.ones(3)}, tmp_path / "w.pth")
    monkeypatch.setattr(state_dict, "MAX_MEMBERS", 3)
    with pytest.raises(NetError, match=r"members \(at most 3\)"):
        state_dict.read_state_dict(tmp_path / "w.pth")


# ---- torchvision's twins ---------------------------------------------------------------

# input size, and the adaptive pool that is then the identity (AlexNet, VGG)
SIZES = {"alexnet_tv": (128, 3), "googlenet": (64, None), "densenet121": (64, None)}


def twin(name: str, classes: int = 10) -> tuple[torch.nn.Module, netdsl.ShapedNet, int]:
    size, pool = SIZES.get(name, (64, 2 if name.startswith("vgg") else None))
    torch.manual_seed(0)
    model = peers.randomize(peers.build(name, classes=classes, softmax=False, pool=pool))
    path, _ = find(name)
    text = path.read_text().replace("input 3x224x224", f"input 3x{size}x{size}")
    return model, netdsl.parse(text, str(path), name=name, overrides={"classes": classes}), size


def logits(
    net: netdsl.ShapedNet, weights: str | dict[str, np.ndarray], x: np.ndarray
) -> np.ndarray:
    """netdsl's output before its softmax (the last fc), from onnxruntime."""
    model = to_onnx(net, weights=weights, mode="inference")
    fc = [node for node in net.nodes if node.op == "fc"][-1].name
    model.graph.output.append(onnx.helper.make_tensor_value_info(fc, onnx.TensorProto.FLOAT, None))
    return np.asarray(ort.session(model, threads=2).run([fc], {"input": x})[0])


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("name", peers.TWINS)
def test_torchvision_state_dict_computes_what_pytorch_computes(tmp_path: Path, name: str) -> None:
    model, net, size = twin(name)
    torch.save(model.state_dict(), tmp_path / f"{name}.pth")
    tensors = state_dict.read_state_dict(tmp_path / f"{name}.pth")
    renamed, where = names.rename(net, tensors, f"'{name}.pth'")
    assert f"torchvision's {name} names, map '{names.TWINS[name]}'" in where
    wanted = {f"{node.name}.{w.name}" for node in net.nodes for w in node.weights}
    assert set(renamed) == wanted  # every tensor placed, nothing left over or ignored wrongly
    x = np.random.default_rng(1).standard_normal((2, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert theirs.std(axis=1).min() > 1e-3 * np.abs(theirs).max()  # not a constant output
    assert relative_error(logits(net, renamed, x), theirs) <= 1e-4


def test_a_wrong_map_is_caught(tmp_path: Path) -> None:
    """Two same-shaped convs swapped in the file: the comparison above would see it."""
    model, net, size = twin("resnet18")
    state = model.state_dict()
    a, b = "layer1.0.conv1.weight", "layer1.1.conv1.weight"
    state[a], state[b] = state[b], state[a]
    renamed, _ = names.rename(net, state_dict_arrays(state))
    x = np.random.default_rng(1).standard_normal((1, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert relative_error(logits(net, renamed, x), theirs) > 1e-2


def state_dict_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in state.items()}


@pytest.mark.parametrize("name", peers.TWINS)
def test_full_size_keys_and_shapes(name: str) -> None:
    """torchvision's full-size model (1000 classes, 224x224) on the meta device: every key is
    mapped to a netdsl tensor of the same shape, or is one the map ignores."""
    with torch.device("meta"):
        state = peers.build(name).state_dict()
    net = netdsl.load(name)
    shapes = {f"{node.name}.{w.name}": tuple(w.shape) for node in net.nodes for w in node.weights}
    mapping = names.torchvision_map(net)
    assert sorted(mapping.values()) == sorted(shapes)
    for key, value in state.items():
        if names.IGNORED.search(key):
            continue
        assert tuple(value.shape) == shapes[mapping[key]], key


def test_googlenet_pretrained_inputs_are_scaled_to_plus_minus_one(tmp_path: Path) -> None:
    """torchvision's pretrained GoogLeNet turns on `transform_input`: fed ImageNet-normalised
    images, it computes on (x - 0.5) / 0.5. netdsl's googlenet with those weights, fed that,
    computes the same (what docs/onnx.md tells users to do)."""
    model, net, size = twin("googlenet")
    model.transform_input = True
    renamed, _ = names.rename(net, state_dict_arrays(model.state_dict()))
    image = np.random.default_rng(2).random((1, 3, size, size), dtype=np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        theirs = model(torch.from_numpy((image - mean) / std)).numpy()
    assert relative_error(logits(net, renamed, (image - 0.5) / 0.5), theirs) <= 1e-4


def test_legacy_densenet_keys_and_other_nets(tmp_path: Path) -> None:
    """torchvision's own densenet121 file says `norm.1` for `norm1`; a net without a twin and a
    file with netdsl's own names are left as they are."""
    net = netdsl.load("densenet121")
    key = "features.denseblock1.denselayer1.norm.1.weight"
    renamed, _ = names.rename(net, {key: np.ones(64, np.float32)})
    assert list(renamed) == ["stage1.dense_layer1.bn1.scale"]
    lenet = netdsl.load("lenet5")
    kept, where = names.rename(lenet, {"conv1.weight": np.ones(1)}, "'w.pth'")
    assert (list(kept), where) == (["conv1.weight"], "'w.pth'")
    own = {"stem1.conv1.weight": np.ones(1), "conv1.weight": np.ones(1)}
    assert list(names.rename(netdsl.load("resnet18"), own)[0]) == list(own)
    for text in OTHERS:  # nets of a twin's name built otherwise: no map, no error
        other = netdsl.parse(text)
        assert names.rename(other, {"conv1.weight": np.ones(1)})[1] == "the given tensors"


OTHERS = (
    "net resnet18(classes=10):\n    input 3x8x8\n    conv3x3(4) -> relu -> gap -> fc(classes)",
    "net vgg16:\n    input 3x8x8\n    conv3x3(4) -> relu -> gap",
)


# ---- through the emitter, the command line and training ------------------------------------


def test_compile_and_init_from_read_a_pth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--weights x.pth` compiles with torchvision's names mapped and says which map; training's
    initial weights for `--set classes=3 --init-from x.pth --skip-mismatched` keep everything
    but the head and name the tensors re-initialised."""
    from netdsl.cli import main

    model, _, size = twin("resnet18")
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    small = tmp_path / "small.net"
    small.write_text(find("resnet18")[0].read_text().replace("3x224x224", f"3x{size}x{size}"))
    out = tmp_path / "r18.onnx"
    args = ["compile", f"{small}:resnet18", "--set", "classes=10", "--inference", "-o", str(out)]
    assert main([*args, "--weights", str(tmp_path / "r18.pth")]) == 0
    said = capsys.readouterr()
    assert "loaded 102 of 102 tensors" in said.out + said.err
    assert "torchvision's resnet18 names, map 'resnet'" in said.out + said.err
    x = np.random.default_rng(1).standard_normal((1, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        theirs = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    ours = ort.session(onnx.load(out), threads=2).run(None, {"input": x})[0]
    assert relative_error(ours, theirs) <= 1e-4

    net = netdsl.load(f"{small}:resnet18", overrides={"classes": 3})
    config = Config(init_from=str(tmp_path / "r18.pth"), skip_mismatched=True)
    notes: list[str] = []
    params = initial_params(net, config, lambda kind, what: notes.append(what["text"]))
    assert "loaded 100 of 102 tensors" in notes[0]
    assert "kept fresh: head1.fc1.weight, head1.fc1.bias" in notes[0]
    bn = model.layer1[0].bn1.running_mean.numpy()
    np.testing.assert_array_equal(params["stage1.basic1.bn1.mean"], bn)


def test_npz_with_torchvision_names_is_read(tmp_path: Path) -> None:
    """A .npz that keeps torchvision's key names is read under them (not skipped as unknown)."""
    model, net, size = twin("resnet18")
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(tmp_path / "r18.npz", **arrays)
    x = np.random.default_rng(1).standard_normal((1, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    ours = logits(net, str(tmp_path / "r18.npz"), x)
    assert relative_error(ours, theirs) <= 1e-4
