"""The wheel installs on its own: built from this tree, installed in a fresh virtual environment,
`netdsl check` runs on a zoo net from outside the source tree, with the grammar and the zoo read
from the installed package."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp / "dist",
        ROOT,
        cwd=tmp,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("netdsl-*.whl")
    env_dir = tmp / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    done = _run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp)
    assert done.returncode == 0, done.stderr
    lark = _run(python, "-m", "pip", "install", "-q", "lark>=1.1.9,<2", cwd=tmp)
    if lark.returncode != 0:
        pytest.skip(f"cannot install lark from the package index: {lark.stderr[-300:]}")
    return env_dir


def test_wheel_holds_grammar_backends_and_zoo(installed: Path) -> None:
    python = installed / "bin" / "python"
    code = (
        "import netdsl, netdsl.backends, netdsl.zoo as z; from importlib import resources; "
        "print(netdsl.__file__); print(resources.files('netdsl.grammars').joinpath('net.lark')"
        ".is_file()); print(len(z.entries()))"
    )
    out = _run(python, "-c", code, cwd=installed)
    assert out.returncode == 0, out.stderr
    location, grammar, zoo = out.stdout.split()
    assert str(installed) in location and str(ROOT) not in location
    assert grammar == "True"
    assert int(zoo) >= 20


def test_installed_cli_checks_zoo_nets(installed: Path, tmp_path: Path) -> None:
    netdsl = installed / "bin" / "netdsl"
    by_name = _run(netdsl, "check", "resnet50", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.strip() == "resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs"
    copy = tmp_path / "lenet.net"
    copy.write_text((ROOT / "nets" / "lenet5.net").read_text())
    by_file = _run(netdsl, "check", copy, cwd=tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout.startswith("lenet5: 1x32x32 -> 10,")
