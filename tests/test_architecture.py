"""The house rules, read from the source: which room may import which, and where the command
line lives. docs/architecture.md explains the rooms; this test keeps the text true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The rooms of backends/, in order: each may import netdsl's core and the rooms before it.
ROOMS = ("data", "passes", "onnx", "tensorrt", "runtime", "train", "explain", "export")
CORE = ("netdsl",)  # netdsl/*.py: the pipeline from text to the shaped net


def library_files() -> list[Path]:
    core = [p for p in (ROOT / "netdsl").glob("*.py") if p.name != "__main__.py"]
    return sorted(core) + sorted((ROOT / "backends").rglob("*.py"))


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def room_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[0] == "backends":
        return parts[1] if len(parts) > 2 else "backends"
    return "core"


def allowed(room: str, module: str) -> bool:
    if not module.startswith("netdsl.backends."):
        return not module.startswith("netdsl.cli")
    target = module.split(".")[2]
    if target not in ROOMS:
        return True  # `from netdsl.backends import X` names X: checked as its own entry
    if room == "core":
        return False
    return room == target or ROOMS.index(target) < ROOMS.index(room)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_backwards(path: Path) -> None:
    room = room_of(path)
    wrong = [
        f"line {line}: {module}"
        for module, line in imports(path)
        if module.startswith("netdsl")
        and not allowed(room, module)
        # the one sanctioned forward reference: ShapedNet.to_onnx, imported when called
        and not (path.name == "shapes.py" and module.startswith("netdsl.backends.onnx"))
    ]
    assert not wrong, f"{room} imports a later room or the CLI: {wrong}"


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_cli_knows_argv(path: Path) -> None:
    modules = {m.split(".")[0] for m, _ in imports(path)}
    assert "argparse" not in modules, "argument parsing belongs to netdsl/cli"


def test_every_room_is_a_package_that_is_installed() -> None:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    on_disk = {p.parent.name for p in (ROOT / "backends").glob("*/__init__.py")}
    assert on_disk <= set(ROOMS), f"a room missing from ROOMS: {on_disk - set(ROOMS)}"
    for room in on_disk:
        assert f'"netdsl.backends.{room}"' in text, f"pyproject.toml does not install {room}"
