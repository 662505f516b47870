"""The Python API: text or a file in, checked nets out.

Runs the pipeline front to back (parse -> resolve imports -> expand -> shapes) and is what the
command line and the backends call. Any mistake in a `.net` file comes out as `NetError`; a
pathological input that would exhaust Python's recursion does too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netdsl.expand import expand_net
from netdsl.imports import Loader, read_file
from netdsl.shapes import ShapedNet, check_all
from netdsl.source import Diagnostics, NetError, Source
from netdsl.zoo import find

SearchPath = Sequence[str | Path]


def _check(
    source: Source,
    name: str | None,
    overrides: Mapping[str, Any] | None,
    every: bool,
    search_path: SearchPath,
    input_shape: tuple[int, ...] | None = None,
) -> list[ShapedNet]:
    try:
        given = Path(source.name)
        origin = given.resolve() if given.is_file() else Path.cwd() / given.name
        loader = Loader(origin.parent, search_path)
        module = loader.parse(source)
        defs = loader.definitions(module, source, ((origin, given.name),))
        nets = list(module.nets)
        if name is not None:
            nets = [n for n in nets if n.name == name]
            if not nets:
                names = ", ".join(n.name or "<anonymous>" for n in module.nets) or "none"
                raise NetError(f"'{source.name}' has no net named '{name}' (it has: {names})")
        if not nets:
            raise NetError(
                f"'{source.name}' defines no net",
                module.span,
                ["a net is `net NAME:` or an `input` line followed by a chain"],
            )
        if len(nets) > 1 and not every:
            names = ", ".join(n.name or "<anonymous>" for n in nets)
            raise NetError(
                f"'{source.name}' holds {len(nets)} nets: {names}",
                None,
                [f"choose one with {source.name}:NAME"],
            )
        diagnostics = Diagnostics()
        graphs = []
        for net in nets:
            try:
                graphs.append(expand_net(net, defs, overrides, input_shape))
            except NetError as error:
                diagnostics.extend(error)
        diagnostics.raise_if_any()
        return check_all(graphs)
    except RecursionError:  # the budgets of parse.py and budget.py are meant to prevent this
        raise NetError(f"'{source.name}' nests too deeply to be read") from None


def parse(
    text: str,
    filename: str = "<string>",
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    search_path: SearchPath = (),
) -> ShapedNet:
    """Parse and check one net from text; `name` picks a net from a text that holds several.
    Imports are read from the folder of `filename` (the current folder for `<string>`) and
    the folders of `search_path`."""
    return _check(Source(filename, text), name, overrides, False, search_path)[0]


def parse_all(
    text: str,
    filename: str = "<string>",
    *,
    overrides: Mapping[str, Any] | None = None,
    search_path: SearchPath = (),
) -> list[ShapedNet]:
    """Parse and check every net of a text."""
    return _check(Source(filename, text), None, overrides, True, search_path)


def load(
    target: str | Path,
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    search_path: SearchPath = (),
    input_shape: Sequence[int] | None = None,
) -> ShapedNet:
    """Load and check one net: a path, `path:net`, or a zoo net's name (`resnet50`). Imports
    are read from the file's folder and the folders of `search_path`, nowhere else.
    `input_shape` (e.g. (3, 64, 64)) replaces the sizes of the net's input line."""
    path, picked = find(str(target))
    shape = None if input_shape is None else tuple(input_shape)
    return _check(read_file(path), name or picked, overrides, False, search_path, shape)[0]


def load_all(
    target: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    search_path: SearchPath = (),
    input_shape: Sequence[int] | None = None,
) -> list[ShapedNet]:
    """Load and check every net of a file (or the one net a target names); `input_shape`
    as for `load`."""
    path, picked = find(str(target))
    shape = None if input_shape is None else tuple(input_shape)
    return _check(read_file(path), picked, overrides, True, search_path, shape)
