"""Helpers of the tests that build this checkout's wheel and install it in fresh virtual
environments (tests/core/test_packaging.py, tests/cli/test_core_install.py,
tests/train/test_install.py); the wheel itself is the session fixture `netdsl_wheel` in
tests/conftest.py."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command's result, its output captured as text (for the install tests)."""
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def venv_with(wheel: Path, folder: Path) -> Path:
    """A fresh virtual environment in `folder` holding `wheel` alone (no dependencies);
    returns its python."""
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    done = run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=folder)
    assert done.returncode == 0, done.stderr
    return python
