"""Hostile .net files: what an import may read, and work bounded before it is done.

A .net file may come from anyone (an upload to a web analyser, a pull request a bot checks), so
an import reads only .net text files inside the loaded file's folder or the search path, never
echoes a file it refused, and every file of a few bytes that asks for astronomical work is
refused at once, with one clear error (exit 1, never exit 3). The bombs are the table of
bench/bombs.py, which prints the figures of docs/security.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

import pytest

import netdsl
from bench import bombs
from netdsl.cli import main as cli

SECRET = "netdsl-test-secret-8d1f"


def refused(path: Path, **options: object) -> str:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.load(path, **options)  # type: ignore[arg-type]
    return caught.value.render()


# ---- what an import may read ----------------------------------------------------------------

ESCAPES = [
    ("absolute", "/etc/hostname.net", "not an absolute path"),
    ("proc", "/proc/self/environ", "only .net files can be imported"),
    ("device", "/dev/zero", "only .net files can be imported"),
    ("not .net", "notes.txt", "only .net files can be imported"),
    ("dot-dot", "../outside.net", "leads out of the folders imports may read"),
    ("dot-dot deep", "sub/../../outside.net", "leads out of the folders imports may read"),
    ("home", "~/x.net", "not an absolute path"),
    ("symlink out", "link.net", "leads out of the folders imports may read"),
    ("fifo", "fifo.net", "not a regular file"),
    ("binary", "binary.net", "is not a UTF-8 text file"),
    ("nul bytes", "nul.net", "not a text file"),
    ("too big", "big.net", "the limit is 1 MiB"),
    ("folder", "folder.net", "not a regular file"),
    ("control character", "a\x01.net", "an import path holds a control character"),
    ("name too long", "a" * 5000 + ".net", "File name too long"),
    ("path too long", "a/" * 3000 + "x.net", "File name too long"),
    ("symlink loop", "loop1.net", "a loop of symlinks"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """project/ holds the loaded file; outside.net and secret.net lie next to it, outside."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (tmp_path / "outside.net").write_text(f"def x = relu\n# {SECRET}\n")
    (tmp_path / "secret.net").write_text(f"{SECRET}\n")
    (project / "notes.txt").write_text(f"{SECRET}\n")
    (project / "link.net").symlink_to(tmp_path / "secret.net")
    os.mkfifo(project / "fifo.net")
    (project / "binary.net").write_bytes(SECRET.encode() + b"\xff\xfe\x00" * 10)
    (project / "nul.net").write_bytes(SECRET.encode() + b"\x00")
    with open(project / "big.net", "wb") as f:
        f.truncate((1 << 20) + 1)
    (project / "folder.net").mkdir()
    (project / "sub" / "blocks.net").write_text("def blk(c) = conv3x3(c) -> relu\n")
    (project / "inside.net").symlink_to(project / "sub" / "blocks.net")
    (project / "loop1.net").symlink_to(project / "loop2.net")
    (project / "loop2.net").symlink_to(project / "loop1.net")
    return project


@pytest.mark.parametrize(
    ("written", "message"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES]
)
def test_an_import_that_may_not_be_read_is_refused_without_its_contents(
    tree: Path, written: str, message: str
) -> None:
    main = tree / "main.net"
    main.write_text(f'import "{written}"\ninput 3x8x8\nrelu\n')
    start = time.perf_counter()
    text = refused(main)
    assert time.perf_counter() - start < 10  # a hang guard; bench.bombs measures the speed
    assert message in text
    assert SECRET not in text
    assert text.startswith(f"{main}:1:1: error: ")


def test_imports_inside_the_folder_and_its_links_inside_are_read(tree: Path) -> None:
    main = tree / "main.net"
    main.write_text('import "sub/blocks.net"\nimport "inside.net"\ninput 3x8x8\nblk(4)\n')
    assert netdsl.load(main).output_shape == (4, 8, 8)


def test_a_search_path_widens_what_imports_may_read(tree: Path) -> None:
    main = tree / "sub" / "main.net"
    main.write_text('import "../../outside.net"\ninput 3x8x8\nx\n')
    assert "leads out" in refused(main)
    assert "leads out" in refused(main, search_path=[tree])
    assert netdsl.load(main, search_path=[tree.parent]).output_shape == (3, 8, 8)
    found = tree / "sub" / "found.net"
    found.write_text('import "outside.net"\ninput 3x8x8\nx\n')
    assert netdsl.load(found, search_path=[tree.parent]).output_shape == (3, 8, 8)
    text = 'import "outside.net"\ninput 3x8x8\nx\n'
    assert netdsl.parse(text, search_path=[tree.parent]).output_shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/dev/zero", "cannot read '/dev/zero': not a regular file"),
        ("fifo.net", "not a regular file"),
        ("folder.net", "not a regular file"),
        ("/proc/self/environ", "not a text file"),
        ("big.net", "the limit is 1 MiB"),
        ("binary.net", "not a UTF-8 text file"),
        ("/tmp/x\x00.net", "no file or zoo net named '/tmp/x?.net'"),
        ("/" + "a" * 5000 + ".net", "no file or zoo net named"),
    ],
    ids=["dev-zero", "fifo", "folder", "proc", "big", "binary", "nul", "too-long"],
)
def test_the_loaded_file_itself_is_checked_before_it_is_read(
    tree: Path, target: str, message: str
) -> None:
    path = target if target.startswith("/") else str(tree / target)
    text = refused(Path(path))
    assert message in text and SECRET not in text


def test_an_import_diamond_reads_each_file_once(tmp_path: Path) -> None:
    bomb = next(b for b in bombs.BOMBS if b.name.startswith("import diamond"))
    for name, text in bomb.files.items():
        (tmp_path / name).write_text(text)
    start = time.perf_counter()
    assert netdsl.load(tmp_path / "main.net").output_shape == (3, 8, 8)
    assert time.perf_counter() - start < 10  # 2^30 paths if each were read again: hours


# ---- bounded work ----------------------------------------------------------------------------


@pytest.mark.parametrize("bomb", bombs.BOMBS, ids=[b.name for b in bombs.BOMBS])
def test_a_bomb_is_answered_at_once_with_one_clear_error(tmp_path: Path, bomb: bombs.Bomb) -> None:
    seconds, code, message = bombs.run(bomb, tmp_path)
    assert code in (0, 1), message
    assert "internal error" not in message
    assert seconds < 10  # a hang guard; the table's figures come from `python -m bench.bombs`


REPEATED = [
    ("input 3x8x8\n[nope]*100000\n", "in repetitions 1–100,000 of 100,000 at bad.net:2:1"),
    ("input 3x8x8\n[conv3x3(4, p=-1)]*5000\n", "in repetitions 1–5,000 of 5,000 at bad.net:2:1"),
    (
        "def b(c) = conv3x3(c, q=1)\ninput 3x8x8\n[b(4)]*3000\n",
        "in repetitions 1–3,000 of 3,000 at bad.net:3:1",
    ),
]


@pytest.mark.parametrize(("text", "note"), REPEATED)
def test_a_mistake_in_a_repetition_is_reported_once(text: str, note: str) -> None:
    start = time.perf_counter()
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert time.perf_counter() - start < 10  # a hang guard, not a speed test
    assert len(caught.value.diagnostics) == 1
    assert f"note: {note}" in caught.value.render()


def test_a_run_prints_a_bounded_number_of_errors() -> None:
    text = "input 3x8x8\n" + " -> ".join(f"nope{i}" for i in range(50)) + "\n"
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert len(caught.value.diagnostics) == 50
    rendered = caught.value.render()
    assert rendered.count("error: unknown layer") == 20
    assert rendered.endswith("… and 30 more errors")


def test_an_error_on_a_long_line_shows_the_line_cut_around_the_caret() -> None:
    text = "input 3x8x8\n" + "relu -> " * 500 + "nope -> " + "relu -> " * 500 + "relu\n"
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    _, shown, caret = caught.value.render().split("\n")[:3]
    assert len(shown) < 120 and shown.startswith("  … ") and shown.endswith(" …")
    assert shown[caret.index("^") : caret.index("^") + 4] == "nope"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "input 3x8x8\nleakyrelu(1" + "0" * 400 + ")\n",
            "the number 100000… (401 digits) is too large",
        ),
        ("input 3x8x8\nleakyrelu(1e400)\n", "too large to be a float"),
        ("input 3x8x8\ndropout(1e300*1e300)\n", "1e+300 * 1e+300 is too large"),
        ("input 3x8x8\nconv(2147483648*2147483648*2147483648)\n", "is too large"),
        ("input 3x8x8\nrelu*(0-" + "9" * 30 + ")\n", "too large"),
    ],
)
def test_huge_numbers_are_net_errors(text: str, message: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text, "bad.net")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "last"),
    [
        ("input 3x8x8\nmaxpool(k=1, s=2147483647)*40\n", "maxpool40"),
        ("input 1\nidentity\n", "identity1"),  # found by bench/fuzz_long.py: no spatial axis
        ("input 4\nfc(2) -> relu\n", "relu1"),
    ],
)
def test_a_summary_prints_for_any_accepted_net(tmp_path: Path, text: str, last: str) -> None:
    path = tmp_path / "s.net"
    path.write_text(text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["summary", str(path)]) == 0
        assert cli(["summary", "--json", str(path)]) == 0
    assert last in out.getvalue()


def test_the_command_line_passes_its_search_path(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = tree / "sub" / "main.net"
    main.write_text('import "../../outside.net"\ninput 3x8x8\nx\n')
    assert cli(["check", str(main)]) == 1
    assert "leads out" in capsys.readouterr().err
    for command in (["check"], ["summary"], ["draw", "-o", str(tree / "d.dot")]):
        assert cli([*command, str(main), "--search-path", str(tree.parent)]) == 0, command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # found by bench/fuzz_long.py (seed 2): a zero-sized shorthand divided by zero
        ("input 3x8x8\nmaxpool0\n", "2:1: error: maxpool k: expected an integer >= 1, got 0"),
        ("input 3x8x8\nconv0(4)\n", "2:1: error: conv k: expected an integer >= 1, got 0"),
        ("input 2x16\nconv0(4)\n", "2:1: error: conv k: expected an integer >= 1, got 0"),
        ("input 1x4x8x8\navgpool0\n", "2:1: error: avgpool k: expected an integer >= 1, got 0"),
    ],
)
def test_a_zero_sized_shorthand_is_refused(text: str, message: str) -> None:
    with pytest.raises(netdsl.NetError) as caught:
        netdsl.parse(text)
    assert message in caught.value.render()
