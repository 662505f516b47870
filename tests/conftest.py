"""Shared fixtures: writing `.net` files into a temporary folder; the wheel of this checkout,
built once per run for the tests that install it; hypothesis's settings.

Hypothesis keeps the inputs that made a test fail in tests/.hypothesis-db, a folder checked in
with the repository, so a failure found anywhere replays first in every later run (and in CI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.installs import ROOT, run

settings.register_profile(
    "netdsl", database=DirectoryBasedExampleDatabase(Path(__file__).parent / ".hypothesis-db")
)
settings.load_profile("netdsl")

WriteNet = Callable[..., Path]


@pytest.fixture
def write_net(tmp_path: Path) -> WriteNet:
    """`write_net(text, name="net.net")` writes a file under a fresh folder and returns its path."""

    def write(text: str, name: str = "net.net") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def netdsl_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once (no dependencies, no build isolation)."""
    out = tmp_path_factory.mktemp("dist")
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        out,
        ROOT,
        cwd=out,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("netdsl-*.whl")
    return wheel
