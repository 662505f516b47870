"""The Python API: text or a file in, checked nets out.

Runs the pipeline front to back (parse -> resolve imports -> expand -> shapes) and is what the
command line and the backends call. Any mistake in a `.net` file comes out as `NetError`; a
pathological input that would exhaust Python's recursion does too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netdsl import syntax as ast
from netdsl.expand import expand_net
from netdsl.parse import parse_module
from netdsl.shapes import ShapedNet, check_all
from netdsl.source import Diagnostics, NetError, Source
from netdsl.zoo import find

MAX_IMPORT_DEPTH = 32


def _read(path: Path, span: Any = None) -> Source:
    try:
        return Source(str(path), path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise NetError(f"cannot read '{path}': {reason}", span) from None


def _definitions(
    module: ast.Module, source: Source, loading: tuple[Path, ...]
) -> dict[str, ast.Def]:
    """The definitions a module can use: its imports' first, then its own."""
    defs: dict[str, ast.Def] = {}
    diagnostics = Diagnostics()
    here = Path(source.name).parent if Path(source.name).is_file() else Path.cwd()
    for imp in module.imports:
        path = (here / imp.path).resolve()
        if path in loading:
            diagnostics.error(f"import cycle: '{imp.path}' imports itself", imp.span)
            continue
        if len(loading) >= MAX_IMPORT_DEPTH:
            diagnostics.error("imports nest too deeply", imp.span)
            continue
        try:
            imported = _read(path, imp.span)
            inner = parse_module(imported)
            defs.update(_definitions(inner, imported, (*loading, path)))
        except NetError as error:
            diagnostics.extend(error)
    for d in module.defs:
        if d.name in defs and defs[d.name].span.source is source:
            diagnostics.error(
                f"'{d.name}' is defined twice",
                d.span,
                [f"first defined at {defs[d.name].span.where}"],
            )
        defs[d.name] = d
    diagnostics.raise_if_any()
    return defs


def _check(
    source: Source, name: str | None, overrides: Mapping[str, Any] | None, every: bool
) -> list[ShapedNet]:
    try:
        module = parse_module(source)
        origin = Path(source.name).resolve() if Path(source.name).is_file() else Path.cwd()
        defs = _definitions(module, source, (origin,))
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
                graphs.append(expand_net(net, defs, overrides))
            except NetError as error:
                diagnostics.extend(error)
        diagnostics.raise_if_any()
        return check_all(graphs)
    except RecursionError:
        raise NetError(f"'{source.name}' nests too deeply to be read") from None


def parse(
    text: str,
    filename: str = "<string>",
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ShapedNet:
    """Parse and check one net from text; `name` picks a net from a text that holds several."""
    return _check(Source(filename, text), name, overrides, every=False)[0]


def parse_all(
    text: str, filename: str = "<string>", *, overrides: Mapping[str, Any] | None = None
) -> list[ShapedNet]:
    """Parse and check every net of a text."""
    return _check(Source(filename, text), None, overrides, every=True)


def load(
    target: str | Path, *, name: str | None = None, overrides: Mapping[str, Any] | None = None
) -> ShapedNet:
    """Load and check one net: a path, `path:net`, or a zoo net's name (`resnet50`)."""
    path, picked = find(str(target))
    return _check(_read(path), name or picked, overrides, every=False)[0]


def load_all(target: str | Path, *, overrides: Mapping[str, Any] | None = None) -> list[ShapedNet]:
    """Load and check every net of a file (or the one net a target names)."""
    path, picked = find(str(target))
    return _check(_read(path), picked, overrides, every=True)
