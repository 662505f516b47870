"""PyTorch `.pth`/`.pt` files -> numpy arrays, without torch and without running their pickle.

Sits under `weights.read`, beside the `.npz` and `.onnx` readers: it turns a file written by
`torch.save(model.state_dict(), path)` into `{key: array}`, keys as PyTorch names them
(`features.0.weight`); `names.py` then maps torchvision's keys to netdsl's tensor names.

A PyTorch file is a zip archive (`<name>/data.pkl` and one `<name>/data/<key>` member per
storage) or, before PyTorch 1.6, a stream of pickles followed by the raw storages. Either way
the structure is a pickle, and a pickle can call any function it names. The unpickler here
resolves only what `torch.load(weights_only=True)` needs for tensors: `OrderedDict`, the tensor
and parameter rebuild functions and the storage types; any other global is refused, by name,
before anything runs. Rebuilding a tensor during unpickling only records (storage, offset,
size, stride); arrays are made afterwards, each checked against its storage's length and
against a byte budget, so a hostile file cannot make us allocate what it does not hold.
"""

from __future__ import annotations

import _compat_pickle
import collections
import math
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from netdsl.backends.data import limits
from netdsl.source import NetError

Params = dict[str, np.ndarray]
MAX_MEMBERS = 100_000  # members of the zip (DenseNet-121 has about 1,000)
MAX_PICKLE = 64 << 20  # bytes of data.pkl (a ResNet-152 state_dict's is about 90 kB)
MAX_BYTES = limits.MAX_WEIGHT_BYTES  # bytes of all tensors together
MAX_RATIO = 100  # how much one compressed member may inflate (torch stores them uncompressed)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 file

# PyTorch's storage types and their element types; bfloat16 is read as its upper 16 bits.
DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True, slots=True)
class StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(DTYPES[self.name])


@dataclass(frozen=True, slots=True)
class Storage:
    """One storage of the file: `key` names its data, `offset` (elements) a legacy view's start."""

    key: str
    kind: StorageType
    numel: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor as the pickle describes it: a strided window on a storage, not yet read."""

    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int(value: object, what: str, low: int = 0) -> int:
    if type(value) is not int or value < low:
        raise NetError(f"{what} is {value!r}, not an integer >= {low}")
    return value


def _ints(value: object, what: str, low: int) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 32:
        raise NetError(f"{what} is {value!r}, not a tuple of at most 32 integers")
    return tuple(_int(v, what, low) for v in value)


def _rebuild_tensor(
    storage: object, offset: object, size: object, stride: object, *_: object
) -> TensorRef:
    if not isinstance(storage, Storage):
        raise NetError(f"a tensor's storage is {type(storage).__name__}, not a storage")
    ref = TensorRef(
        storage,
        _int(offset, "a tensor's storage offset"),
        _ints(size, "a tensor's size", 0),
        _ints(stride, "a tensor's stride", 0),
    )
    if len(ref.size) != len(ref.stride):
        raise NetError(f"a tensor has size {ref.size} but stride {ref.stride}")
    return ref


def _rebuild_parameter(data: object, *_: object) -> object:
    return data


ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
} | {("torch", name): StorageType(name) for name in DTYPES}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals of ALLOWED; storages become `Storage` records."""

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file)
        self.where = where
        self.storages: dict[str, Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 (torch.save's) names Python 2's modules: `__builtin__.eval` is builtins'
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = ALLOWED.get((module, name))
        if found is None:
            raise NetError(
                f"'{self.where}' refused: its pickle calls {module}.{name}, which a file of "
                "weights has no need of (only tensors, storages and OrderedDict are read)",
                None,
                ["nothing in the file was run; save weights with torch.save(model.state_dict())"],
            )
        return found

    def persistent_load(self, pid: Any) -> Storage:
        # zip: ('storage', type, key, location, numel); legacy adds view metadata at the end
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise NetError(f"'{self.where}' refused: unknown persistent id {str(pid)[:60]}")
        kind, key, numel = pid[1], pid[2], _int(pid[4], "a storage's length")
        if not isinstance(kind, StorageType) or not isinstance(key, str):
            raise NetError(f"'{self.where}' refused: a storage of type {kind!r} named {key!r}")
        root = self.storages.setdefault(key, Storage(key, kind, numel))
        if root.kind != kind or root.numel != numel:
            raise NetError(f"'{self.where}': storage {key} is described in two ways")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        _, offset, view_numel = view  # a legacy storage view: (key, offset, numel)
        end = _int(offset, "a storage view's offset") + _int(view_numel, "a view's length")
        if end > numel:
            raise NetError(f"'{self.where}': a view of storage {key} ends past its end")
        return Storage(key, kind, view_numel, offset)


# What a damaged or hand-made pickle raises inside the unpickler (never from our own checks).
BROKEN = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    zipfile.BadZipFile,
    RecursionError,
    MemoryError,
)


def read(path: str | Path, expect: Mapping[str, tuple[int, ...]] | None = None) -> Params:
    """`weights.read`'s reader for .pth/.pt files. Every tensor is read, whatever `expect`
    says: a state_dict's keys are PyTorch's, mapped to netdsl's names only afterwards (by
    `names.rename`), so they cannot be matched against the net's shapes here."""
    return read_state_dict(path)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch file, by state_dict key, as numpy arrays (bfloat16 -> float32).

    A checkpoint that holds the state_dict under 'state_dict', 'model_state_dict' or 'model'
    is read from there; a `module.` prefix on every key (DataParallel) is dropped."""
    path = Path(path)
    where = str(path)
    try:
        with path.open("rb") as file:
            head = file.read(4)
            file.seek(0)
            if head == b"PK\x03\x04":  # by its first bytes, as torch.load tells the formats
                return _from_zip(path, where)
            if head[:1] != b"\x80":
                tar = " (PyTorch before 0.4 wrote tar files: re-save it)" if _tar(file) else ""
                raise NetError(f"'{where}' is not a PyTorch file (neither a zip nor a pickle){tar}")
            return _from_legacy(file, path.stat().st_size, where)
    except OSError as error:
        raise NetError(f"cannot read weights '{where}': {error.strerror or error}") from None
    except BROKEN as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise NetError(
            f"'{where}' is not a readable PyTorch file: {type(error).__name__} {reason}".strip()
        ) from None


def _tar(file: IO[bytes]) -> bool:
    file.seek(257)
    return file.read(5) == b"ustar"


def _from_zip(path: Path, where: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise NetError(f"'{where}' refused: {len(infos)} members (at most {MAX_MEMBERS})")
        for info in infos:
            inflated = info.file_size > MAX_RATIO * info.compress_size + (1 << 20)
            if info.file_size > MAX_BYTES or (info.compress_type != 0 and inflated):
                raise NetError(
                    f"'{where}' refused: member {info.filename} would inflate to "
                    f"{info.file_size:,} bytes from {info.compress_size:,}"
                )
        members = {info.filename: info for info in infos}
        pkl = [name for name in members if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pkl) != 1:
            raise NetError(f"'{where}' is a zip archive but not one written by torch.save")
        prefix = pkl[0][: -len("data.pkl")]
        if members[pkl[0]].file_size > MAX_PICKLE:
            raise NetError(f"'{where}' refused: its data.pkl is over {MAX_PICKLE >> 20} MiB")
        order = "little"
        if prefix + "byteorder" in members:
            order = archive.read(prefix + "byteorder")[:16].decode(errors="replace")
        with archive.open(pkl[0]) as file:
            unpickler = _Unpickler(file, where)
            tree = unpickler.load()
        refs = _find_state_dict(tree, where)

        def data(storage: Storage) -> np.ndarray:  # the whole storage, checked for length
            name = f"{prefix}data/{storage.key}"
            info = members.get(name)
            size = storage.numel * storage.kind.dtype.itemsize
            if info is None or info.file_size < size:
                held = "is missing" if info is None else f"holds {info.file_size:,} bytes"
                raise NetError(f"'{where}': storage {storage.key} {held}, tensors need {size:,}")
            with archive.open(name) as member:
                raw = np.frombuffer(member.read(size), storage.kind.dtype)
            return raw.byteswap() if order == "big" else raw

        return _materialise(refs, unpickler.storages, data, where)


def _from_legacy(file: IO[bytes], length: int, where: str) -> dict[str, np.ndarray]:
    """PyTorch < 1.6: magic, protocol and system pickles, the data pickle, a pickled list of
    storage keys, then each storage as a little-endian int64 element count and its bytes."""
    unpickler = _Unpickler(file, where)
    if unpickler.load() != LEGACY_MAGIC:
        raise NetError(f"'{where}' is a pickle, not a PyTorch file (no PyTorch magic number)")
    unpickler.load()  # protocol version
    info = unpickler.load()
    little = not isinstance(info, dict) or info.get("little_endian", True)
    tree = unpickler.load()
    keys = unpickler.load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise NetError(f"'{where}': the list of storages is not a list of names")
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        storage = unpickler.storages.get(key)
        count = int.from_bytes(file.read(8), "little" if little else "big")
        if storage is None or count != storage.numel:
            raise NetError(f"'{where}': storage {key} holds {count} elements, not as described")
        size = count * storage.kind.dtype.itemsize
        if file.tell() + size > length:
            raise NetError(f"'{where}': storage {key} is cut short ({size:,} bytes announced)")
        array = np.frombuffer(file.read(size), storage.kind.dtype)
        raw[key] = array if little else array.byteswap()
    refs = _find_state_dict(tree, where)

    def data(storage: Storage) -> np.ndarray:
        if storage.key not in raw:
            raise NetError(f"'{where}': storage {storage.key} is missing from the file")
        return raw[storage.key]

    return _materialise(refs, unpickler.storages, data, where)


def _find_state_dict(tree: object, where: str) -> dict[str, TensorRef]:
    """The mapping of names to tensors: the file's top level, or a checkpoint's state_dict."""
    candidates = [tree]
    if isinstance(tree, Mapping):
        candidates += [tree.get(k) for k in ("state_dict", "model_state_dict", "model")]
    for found in candidates:
        if (
            isinstance(found, Mapping)
            and found
            and all(isinstance(k, str) and isinstance(v, TensorRef) for k, v in found.items())
        ):
            refs = dict(found)
            if all(k.startswith("module.") for k in refs):  # saved from nn.DataParallel
                refs = {k.removeprefix("module."): v for k, v in refs.items()}
            return refs
    kind = type(tree).__name__
    raise NetError(
        f"'{where}' holds no state_dict (a {kind}, not a mapping of names to tensors)",
        None,
        ["save the weights alone: torch.save(model.state_dict(), path)"],
    )


def _materialise(
    refs: Mapping[str, TensorRef],
    roots: Mapping[str, Storage],
    data: Callable[[Storage], np.ndarray],
    where: str,
) -> dict[str, np.ndarray]:
    """Each tensor as its own array, after checking it lies within its storage; a storage
    shared by several tensors is read once."""
    budget = MAX_BYTES
    cache: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        storage, numel = ref.storage, math.prod(ref.size)
        budget -= numel * storage.kind.dtype.itemsize
        if budget < 0:
            raise NetError(
                f"'{where}' refused: its tensors would take over {limits.size(MAX_BYTES)}"
            )
        extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if numel and extent >= storage.numel:
            raise NetError(
                f"'{where}': tensor {name} of size {ref.size} reaches element {extent} of a "
                f"storage of {storage.numel}"
            )
        if storage.key not in cache:
            cache[storage.key] = data(roots[storage.key])
        base = cache[storage.key][storage.offset : storage.offset + storage.numel]
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset :] if numel else base[:0],
            ref.size,
            tuple(s * item for s in ref.stride),
            writeable=False,
        )
        array = np.array(view)  # a copy: tensors sharing a storage do not share memory
        if storage.kind.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array
    return out
