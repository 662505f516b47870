"""Reading `.net` files and resolving `import`: the files a load may read, each read once.

Between the text and the parser: `api.py` reads the file it is given through `read_file`, and
`Loader` follows its `import` lines. A `.net` file may come from anyone, so an import may read
only a `.net` text file inside the folder of the file being loaded (imports are relative to the
importing file and may go into subfolders) or in a folder of the search path the caller passes:
absolute paths, `..` that leaves those folders and symlinks that point out of them are
refused, and so is anything that is not a regular file of at most MAX_FILE_BYTES. A refused file
is never read, and a file that is not UTF-8 text is never echoed. Each file is read, parsed and
resolved once per load, so a diamond of imports costs linear time; all files of one load share
one token budget (see `parse.py`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from netdsl import syntax as ast
from netdsl.parse import Tokens, parse_module
from netdsl.source import Diagnostics, NetError, Source, Span

MAX_FILE_BYTES = 1 << 20  # one .net file (the zoo's largest is under 3 KiB)
MAX_IMPORT_DEPTH = 32


def read_file(path: Path, span: Span | None = None, what: str = "") -> Source:
    """The text of a regular file of at most MAX_FILE_BYTES, checked before it is read."""
    name = what or str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise NetError(f"cannot read '{name}': {reason}", span) from None
    _check_opened(fd, name, span)
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)  # /proc files say 0 bytes and hold more
    if len(data) > MAX_FILE_BYTES:
        raise NetError(f"'{name}' is larger than the limit of 1 MiB", span)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NetError(f"'{name}' is not a UTF-8 text file", span) from None
    if "\x00" in text:
        raise NetError(f"'{name}' is not a text file (it holds NUL bytes)", span)
    return Source(str(path), text)


def _check_opened(fd: int, name: str, span: Span | None) -> None:
    """The opened file (not what its name meant a moment before) is a regular file that fits
    the limit; else the descriptor is closed and the file refused unread."""
    info = os.fstat(fd)
    problem = ""
    if not stat.S_ISREG(info.st_mode):
        problem = f"cannot read '{name}': not a regular file"
    elif info.st_size > MAX_FILE_BYTES:
        problem = f"'{name}' is {info.st_size:,} bytes; the limit is 1 MiB"
    if problem:
        os.close(fd)
        raise NetError(problem, span)


class Loader:
    """The definitions each file of one load makes visible, each file read once."""

    def __init__(self, root: Path, search_path: Sequence[str | Path] = ()) -> None:
        self.roots = [root.resolve(), *(Path(p).resolve() for p in search_path)]
        self.tokens = Tokens()
        self.done: dict[Path, dict[str, ast.Def]] = {}

    def parse(self, source: Source) -> ast.Module:
        return parse_module(source, self.tokens)

    def definitions(
        self, module: ast.Module, source: Source, stack: tuple[tuple[Path, str], ...]
    ) -> dict[str, ast.Def]:
        """The definitions a module can use: its imports' first, then its own. `stack` holds
        the files being loaded, outermost first, with the names they were imported by."""
        defs: dict[str, ast.Def] = {}
        diagnostics = Diagnostics()
        here = stack[-1][0].parent if stack else self.roots[0]
        for imp in module.imports:
            try:
                defs.update(self.load(imp, here, stack))
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

    def load(
        self, imp: ast.Import, here: Path, stack: tuple[tuple[Path, str], ...]
    ) -> dict[str, ast.Def]:
        path = self.resolve(imp, here)
        seen = [p for p, _ in stack]
        if path in seen:
            names = [name for _, name in stack[seen.index(path) :]]
            raise NetError(f"import cycle: {' -> '.join([*names, imp.path])}", imp.span)
        if path in self.done:
            return self.done[path]
        if len(stack) > MAX_IMPORT_DEPTH:
            raise NetError(f"imports nest more than {MAX_IMPORT_DEPTH} deep", imp.span)
        source = read_file(path, imp.span, imp.path)
        defs = self.definitions(self.parse(source), source, (*stack, (path, imp.path)))
        self.done[path] = defs
        return defs

    def resolve(self, imp: ast.Import, here: Path) -> Path:
        """The file an import names, if it may be read: a relative `.net` path that stays, with
        every symlink followed, inside the importing file's folder or a search-path folder."""
        written = imp.path if len(imp.path) <= 80 else imp.path[:77] + "..."  # as shown
        if not imp.path.isprintable():
            raise NetError("an import path holds a control character", imp.span)
        if not imp.path.endswith(".net"):
            raise NetError(f"import '{written}': only .net files can be imported", imp.span)
        if os.path.isabs(imp.path) or imp.path.startswith("~"):
            raise NetError(
                f"import '{written}': an import names a file relative to the importing file's "
                "folder, not an absolute path",
                imp.span,
            )
        for base in (here, *self.roots[1:]):
            try:
                path = (base / imp.path).resolve()
                found = path.exists()
            except (OSError, RuntimeError) as error:  # a name too long, a loop of symlinks
                reason = getattr(error, "strerror", None) or "a loop of symlinks"
                raise NetError(f"import '{written}': {reason}", imp.span) from None
            if not any(path.is_relative_to(root) for root in self.roots):
                folders = ", ".join(str(root) for root in self.roots)
                raise NetError(
                    f"import '{written}' leads out of the folders imports may read ({folders})",
                    imp.span,
                    [
                        "imports read .net files inside the loaded file's folder or the search "
                        "path; a '..' or a symlink that leads out of them is refused"
                    ],
                )
            if found:
                return path
        folders = ", ".join(str(p) for p in (here.resolve(), *self.roots[1:]))
        raise NetError(f"import '{written}': no such file in {folders}", imp.span)
