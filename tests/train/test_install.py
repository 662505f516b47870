"""Packaging: `pip install 'netdsl[train]'` trains without torch or onnxruntime-training.

The wheel built from this checkout is installed with its `train` extra into a fresh virtual
environment of a Python newer than onnxruntime-training supports (3.13 or 3.12, from pyenv),
from PyPI; then `netdsl train` runs one epoch of a small net on the bundled digits there. This
is the install the README's main job relies on. pip's cache makes reruns fast; the first run
downloads about 100 MB (numpy, onnx, onnxruntime, scikit-learn, scipy, matplotlib, pillow).

Skipped, with the reason, where no such interpreter exists or PyPI cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("3.13", "3.12")  # newest first: onnxruntime-training has wheels for neither
FORBIDDEN = ("torch", "onnxruntime-training", "onnxruntime-training-cpu")

# A small net: the run is about the install, not the training.
SMALL_NET = """
net tiny(classes=10):
    input 1x8x8
    conv3x3(4, p=1) -> relu -> maxpool2x2 -> fc(classes) -> softmax
"""


def _interpreter() -> tuple[str, dict[str, str]] | None:
    """A pyenv interpreter of one of PYTHONS: (command, environment), or None."""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None
    versions = subprocess.run(
        [pyenv, "versions", "--bare"], capture_output=True, text=True
    ).stdout.split()
    for short in PYTHONS:
        for version in sorted(versions, reverse=True):
            if version == short or version.startswith(short + "."):
                command = shutil.which(f"python{short}")
                if command:
                    return command, {**os.environ, "PYENV_VERSION": version}
    return None


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def wheel(netdsl_wheel: Path) -> Path:
    return netdsl_wheel


def test_train_extra_installs_without_torch_and_trains(wheel: Path, tmp_path: Path) -> None:
    found = _interpreter()
    if found is None:
        pytest.skip(f"no Python {' or '.join(PYTHONS)} from pyenv on this machine")
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) cannot be reached: the train extra cannot be installed")
    python, env = found
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env)
    bin_ = venv / "bin"
    env.pop("PYENV_VERSION")  # the venv's own python from here on
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        [str(bin_ / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[train]"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    listed = subprocess.run(
        [str(bin_ / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert not names & set(FORBIDDEN), f"the train extra brought {sorted(names & set(FORBIDDEN))}"
    assert {"onnxruntime", "onnx", "numpy", "netdsl"} <= names

    (tmp_path / "tiny.net").write_text(SMALL_NET)
    out = tmp_path / "run"
    trained = subprocess.run(
        [
            str(bin_ / "netdsl"),
            "train",
            "tiny.net",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert (out / "model.onnx").stat().st_size > 0
    # The engine that ran is the native one: onnxruntime.training does not even exist here.
    probe = subprocess.run(
        [
            str(bin_ / "python"),
            "-c",
            "import importlib.util as u;"
            "print(u.find_spec('onnxruntime.training') is None, u.find_spec('torch') is None)",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert probe.stdout.split() == ["True", "True"]
