"""The zoo: the `.net` files shipped in `netdsl.nets`, and how a name on the command line finds
a file.

A target is `path`, `path:net`, a zoo net's name (`resnet50`) or a zoo file's stem (`resnet`).
The zoo is indexed by a line scan (`net NAME`) without parsing, so lookups stay cheap.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from netdsl.evaluate import did_you_mean
from netdsl.source import NetError

_NET = re.compile(r"^net\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    path: Path
    reference: str


def zoo_dir() -> Path:
    return Path(str(resources.files("netdsl.nets")))


@functools.cache
def entries() -> tuple[Entry, ...]:
    found: list[Entry] = []
    for path in sorted(zoo_dir().glob("*.net")):
        text = path.read_text("utf-8")
        reference = next(
            (line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
            "",
        )
        found.extend(Entry(name, path, reference) for name in _NET.findall(text))
    return tuple(found)


def _probe(path: str) -> str:
    """'file', 'other' (a device, a FIFO, a folder) or '' (nothing there, or no usable name)."""
    try:
        p = Path(path)
        return "file" if p.is_file() else "other" if p.exists() else ""
    except (OSError, ValueError):  # a name too long, or holding a NUL
        return ""


def find(spec: str) -> tuple[Path, str | None]:
    """Resolve a target to a file and, where one is named, a net in it."""
    path, _, name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if name and _probe(path) == "file":
        return Path(path), name
    kind = _probe(spec)
    if kind == "file":
        return Path(spec), None
    if kind == "other":  # never opened
        raise NetError(f"cannot read '{spec}': not a regular file")
    by_name = {e.name: e for e in entries()}
    if spec in by_name:
        return by_name[spec].path, spec
    stem = zoo_dir() / f"{spec}.net"
    if _probe(str(stem)) == "file":
        return stem, None
    if name and path in by_name:
        raise NetError(f"'{path}' is a zoo net, not a file")
    hint = did_you_mean(spec, list(by_name))
    shown = "".join(c if c.isprintable() else "?" for c in spec[:200])
    raise NetError(
        f"no file or zoo net named '{shown}'", None, [*hint, "`netdsl zoo` lists the zoo's nets"]
    )
