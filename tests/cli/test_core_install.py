"""On a core install (the wheel and lark, nothing else), each backend command names the extra to
install and exits 2, a usage error, never 3, an internal error. Checked for real: the wheel is
built from this tree and installed with `--no-deps` in one fresh virtual environment, beside a
copy of this environment's lark (nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import lark
import pytest

from tests.installs import run, venv_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def core(netdsl_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `netdsl` script of a virtual environment holding netdsl and lark only."""
    tmp = tmp_path_factory.mktemp("core")
    env = tmp / "env"
    python = venv_with(netdsl_wheel, env)
    # lark, the one dependency, copied from this environment: no download (it is pure Python)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp)
    shutil.copytree(Path(lark.__file__).parent, Path(site.stdout.strip()) / "lark")
    probe = run(python, "-c", "import onnx", cwd=tmp)
    assert probe.returncode != 0, "the core environment must not see onnx"
    return env / "bin" / "netdsl"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["compile", "lenet5"], "onnx"),
        (["compile", "lenet5", "--precision", "int8", "--calib", "digits"], "onnx"),
        (["engine", "lenet5"], "onnx"),
        (["run", "lenet5"], "run"),
        (["bench", "lenet5", "--batch", "1"], "run"),
        (["compare", "lenet5"], "run"),
        (["train", "lenet5", "--epochs", "1"], "train"),
        (["check", "lenet5", "--target", "tensorrt"], "onnx"),
        (["summary", "model.onnx"], "onnx"),
        (["export", "triton", "lenet5", "-o", "repo"], "onnx"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_a_missing_extra_is_a_usage_error(
    core: Path, argv: list[str], extra: str, tmp_path: Path
) -> None:
    done = run(core, *argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: netdsl {argv[0]}")
    assert "needs the Python package" in done.stderr
    assert f"pip install 'netdsl[{extra}]'" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_the_core_commands_work_there(core: Path, tmp_path: Path) -> None:
    done = run(core, "check", "lenet5", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (
        0,
        "lenet5: 1x32x32 -> 10, 61,706 params, 416.52 KMACs\n",
    )
