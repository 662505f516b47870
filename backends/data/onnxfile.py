"""`.onnx` files from anyone: the graph read alone, external data confined to the model's folder.

The one function through which netdsl opens an ONNX file it did not just build: `netdsl run`,
`bench`, `compare`, `engine` (`backends/runtime/ort.py`'s `read_model`), and weights for
`compile --weights` and `train --init-from` (`backends/onnx/weights.py`). An ONNX tensor may keep
its bytes in "external data": a file name, offset and length that onnxruntime and onnx follow
relative to the model. A model that names `/etc/passwd`, `../../x` or a symbolic link leading out
of its folder would make netdsl read (and print, as scores) a file its user never meant to
share; so the model is parsed with `load_external_data=False`, every external location is
checked (relative, no `..`, resolving inside the folder, a regular file long enough for its
offset and length), and only then are bytes read, by netdsl itself, or the path handed to
onnxruntime. Checking and loading are separate steps on a file system others may change; the
check is only as good as the folder is private between them, as for any reader of files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx

from netdsl.backends.data import limits
from netdsl.source import NetError


@dataclass(frozen=True, slots=True)
class External:
    """Where one tensor keeps its bytes, checked to lie inside the model's folder."""

    tensor: onnx.TensorProto
    file: Path  # resolved, inside the folder
    offset: int
    length: int


def load(path: str | Path, label: str = "") -> tuple[onnx.ModelProto, list[External]]:
    """An .onnx file's graph, its external data not read yet but checked; or a clear error.
    `label` names the file in messages (default: its path, quoted)."""
    path = Path(path)
    if not path.is_file():
        raise NetError(f"no such file: '{path}'")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError, a truncated file, a folder
        if label:
            raise NetError(f"cannot read {label} as an ONNX model: {_first_line(error)}") from None
        raise NetError(f"'{path}' is not an ONNX model ({_first_line(error)})") from None
    # the folder as the OS (and onnxruntime) sees it from the path: links in it resolved
    folder = Path(os.path.abspath(path)).parent.resolve()
    return model, [_check(path, folder, t) for t in tensors(model) if _is_external(t)]


def load_data(ext: External) -> None:
    """Read one tensor's external bytes into it (its location was checked by `load`)."""
    try:
        with open(ext.file, "rb") as f:
            f.seek(ext.offset)
            raw = f.read(ext.length)
    except OSError as error:
        raise NetError(f"cannot read '{ext.file}': {error.strerror or error}") from None
    if len(raw) != ext.length:
        raise NetError(f"'{ext.file}' changed while it was read (tensor '{ext.tensor.name}')")
    ext.tensor.raw_data = raw
    del ext.tensor.external_data[:]
    ext.tensor.data_location = onnx.TensorProto.DEFAULT


def _is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0


def _check(path: Path, folder: Path, t: onnx.TensorProto) -> External:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    where = f"'{path}': tensor '{t.name}' keeps its data in '{location}'"
    why = _outside(location, folder)
    if why:
        raise NetError(
            f"{where}, {why}; netdsl reads external data only from the model's own folder",
        )
    file = (folder / location).resolve()
    if not file.is_file():
        raise NetError(f"{where}, which is not a file in '{folder}'")
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
    except ValueError:
        raise NetError(f"{where} at a non-numeric offset or length") from None
    size = file.stat().st_size
    length = size - offset if length < 0 else length
    if offset < 0 or length < 0 or offset + length > size:
        raise NetError(
            f"{where} at bytes {offset:,}..{offset + length:,}, but that file holds {size:,}"
        )
    limits.check(f"tensor '{t.name}' of '{path}'", length, limits.MAX_WEIGHT_BYTES)
    return External(t, file, offset, length)


def _outside(location: str, folder: Path) -> str:
    """Why `location` leaves `folder` (absolute, `..`, a link), or '' when it stays in."""
    if not location or "\0" in location:
        return "a name that is empty or holds a NUL"
    if (
        os.path.isabs(location)
        or PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
        or location.startswith(("/", "\\"))
    ):
        return "an absolute path"
    if ".." in PurePosixPath(location.replace("\\", "/")).parts:
        return "a path through '..' that leaves the model's folder"
    try:
        inside = (folder / location).resolve().is_relative_to(folder)
    except (OSError, RuntimeError, ValueError):  # a loop of links, a name too long
        inside = False
    return "" if inside else "a symbolic link that leads out of the model's folder"


def tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model: initializers, sparse ones, constants in attributes, inside
    subgraphs and functions, at any depth."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node.attribute)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(
    attributes: Iterable[onnx.AttributeProto],
) -> Iterator[onnx.TensorProto]:
    for a in attributes:
        yield from ([a.t] if a.HasField("t") else [])
        yield from a.tensors
        sparse = [a.sparse_tensor] if a.HasField("sparse_tensor") else []
        for s in [*sparse, *a.sparse_tensors]:
            yield from (s.values, s.indices)
        for graph in [*([a.g] if a.HasField("g") else []), *a.graphs]:
            yield from _graph_tensors(graph)


def load_all(
    path: str | Path, keep: Callable[[onnx.TensorProto], bool] | None = None
) -> onnx.ModelProto:
    """The model with the external data of the tensors `keep` accepts (None: all) read in."""
    model, external = load(path)
    for ext in external:
        if keep is None or keep(ext.tensor):
            load_data(ext)
    return model


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(" : ")[-1] if text.startswith("[ONNXRuntimeError]") else text
