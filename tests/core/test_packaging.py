"""The wheel installs on its own: built from this tree, installed in a fresh virtual environment,
`netdsl check` runs on a zoo net from outside the source tree, with the grammar and the zoo read
from the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.installs import run, venv_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(netdsl_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("wheel") / "env"
    python = venv_with(netdsl_wheel, env_dir)
    lark = run(python, "-m", "pip", "install", "-q", "lark>=1.1.9,<2", cwd=env_dir)
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
    out = run(python, "-c", code, cwd=installed)
    assert out.returncode == 0, out.stderr
    location, grammar, zoo = out.stdout.split()
    assert str(installed) in location and str(ROOT) not in location
    assert grammar == "True"
    assert int(zoo) >= 20


def test_installed_cli_checks_zoo_nets(installed: Path, tmp_path: Path) -> None:
    netdsl = installed / "bin" / "netdsl"
    by_name = run(netdsl, "check", "resnet50", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.strip() == "resnet50: 3x224x224 -> 1000, 25,557,032 params, 4.09 GMACs"
    copy = tmp_path / "lenet.net"
    copy.write_text((ROOT / "nets" / "lenet5.net").read_text())
    by_file = run(netdsl, "check", copy, cwd=tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout.startswith("lenet5: 1x32x32 -> 10,")


def test_wheel_ships_the_parser_tables(installed: Path) -> None:
    python = installed / "bin" / "python"
    code = (
        "from importlib import resources; print(resources.files('netdsl.grammars')"
        ".joinpath('net_tables.json').is_file())"
    )
    out = run(python, "-c", code, cwd=installed)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


# ---- the parser's tables: shipped as data, never a pickle in the shared temp folder ----------


def test_the_shipped_tables_parse_as_the_grammar_does() -> None:
    """The tables match net.lark (after an edit of it, run `python -m netdsl.grammars.build`):
    the stamp says so, and every zoo file and typical mistakes parse to the same trees and
    the same errors as with tables built from the grammar now. (Lark numbers its states in a
    different order in each process, so the tables themselves are not compared.)"""
    import lark

    from netdsl.parse import OPTIONS, _Newlines, _parser, grammar_hash, grammar_text

    assert _parser().source_path == "<deserialized>"  # lark's mark of tables loaded, not built
    built = lark.Lark(grammar_text(), postlex=_Newlines(), **OPTIONS)
    texts = [p.read_text() for p in sorted((ROOT / "nets").glob("*.net"))] + [
        "input 3x8x8\nconv(64 k=3)\n",
        "input 3x8x8\nconv3x3(4) -> relu\nmaxpool\n",
        "input 3x8x8\n[conv3x3(4) -> relu\n",
        "def b(c) = -> relu\n",
        "net n:\ninput 3x8x8\n",
        "input 3x8x8\nrelu ->",
    ]
    for text in texts:
        answers = []
        for parser in (_parser(), built):
            try:
                answers.append(parser.parse(text))
            except lark.exceptions.UnexpectedInput as error:
                expected = sorted(getattr(error, "expected", None) or [])
                answers.append((type(error), error.line, error.column, expected))
        assert answers[0] == answers[1], text
    assert grammar_hash(grammar_text()) in (ROOT / "grammars" / "net_tables.json").read_text()


def test_the_parser_loads_the_shipped_tables() -> None:
    import lark

    from netdsl.parse import _parser, grammar_hash, grammar_text, shipped_tables

    tables = shipped_tables()
    assert tables["grammar_sha256"] == grammar_hash(grammar_text())
    assert tables["lark_version"] == lark.__version__, "rebuild: python -m netdsl.grammars.build"
    assert _parser().source_path == "<deserialized>"


def test_checking_a_net_reads_and_writes_nothing_in_the_temp_folder(tmp_path: Path) -> None:
    """lark's cache=True unpickles `.lark_cache_*` from the temp folder, where any local user can
    plant one; netdsl neither reads nor writes there."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(temp), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "netdsl", "check", "lenet5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert list(temp.iterdir()) == []
