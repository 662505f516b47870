"""Every command in README.md and docs/*.md runs as written, so the examples cannot rot.

The commands are read from the fenced blocks: lines starting `$ ` (what follows them up to the
next `$ ` line is the output the doc shows), or, in blocks without `$`, lines starting `netdsl`,
`.venv/bin/` or `python`. `$ cat FILE` followed by lines writes that file first (the README's
cifar.net). Each doc's commands run in order in one temporary folder that holds links to the
repository's files (nets/, bench/, .venv ...) and a sibling `shared` (../shared/data/mnist), with
.venv/bin first on PATH. A command passes when it exits 0, or, where the output the doc shows
holds `error:`, when it fails with the first such line in its output; shown output lines without
`...` must appear in what it prints. Python blocks run as scripts, each after the doc's earlier
blocks (they build on one another), in the same folder.

What cannot run here is listed in SKIPPED with the reason (a GPU, TensorRT, a download, a
Graphviz binary, a long training or benchmark); what the docs get wrong is in BROKEN with what is
wrong (an xfail that must fail: fixing the doc turns it into an error here, so the entry goes).
Every command takes at most TIMEOUT seconds.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT = 30
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
COMMAND = re.compile(r"^(\.venv/bin/|netdsl\b|python)")
PICTURE = re.compile(r"draw.*\.(png|svg)\b")  # a diagram Graphviz's `dot` draws

# (doc, the start of the command) -> why it does not run in this test
SKIPPED: dict[tuple[str, str], str] = {
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install -q '.[train]'",
    ): "installs from PyPI: tests/train/test_install.py installs the train extra in a fresh "
    "venv and trains",
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'",
    ): "the whole test suite itself",
    ("README.md", "netdsl engine"): "needs TensorRT and a GPU",
    ("README.md", "netdsl bench resnet50"): "a benchmark (about a minute of timing)",
    (
        "README.md",
        "netdsl train lenet5 --data mnist:../shared/data/mnist",
    ): "a long training (10 epochs of 60,000 images)",
    ("README.md", "netdsl explain saliency runs/mnist/"): "explains the long training above",
    (
        "README.md",
        "netdsl train lenet5 --out runs/mnist --resume",
    ): "resumes the long training above",
    ("benchmarks.md", ".venv/bin/python -m bench.bench_check"): "a benchmark (minutes)",
    (
        "benchmarks.md",
        ".venv/bin/python -m bench.peers",
    ): "checks all 16 twins at once (16 s); tests/onnx/test_state_dict.py checks each",
    ("benchmarks.md", ".venv/bin/python -m bench.bench_onnx"): "a benchmark (minutes)",
    ("benchmarks.md", "python -m bench.bench_gpu"): "needs a GPU",
    ("benchmarks.md", ".venv/bin/python -m bench.bench_train"): "a benchmark (minutes)",
    ("benchmarks.md", ".venv/bin/python -m bench.bench_e2e"): "a benchmark (minutes)",
    ("benchmarks.md", ".venv/bin/python -m bench.profile_step"): "a profile (a minute)",
    ("deploy.md", "netdsl engine"): "needs TensorRT and a GPU",
    ("deploy.md", "netdsl run resnet50.engine"): "needs TensorRT and a GPU",
    ("deploy.md", "netdsl bench resnet50.engine"): "needs TensorRT and a GPU",
    ("deploy.md", "netdsl compare resnet50.onnx resnet50.engine"): "needs TensorRT and a GPU",
    ("deploy.md", "netdsl compare a.onnx b.onnx"): "a placeholder for the reader's two models",
    (
        "onnx.md",
        "netdsl compile resnet50 --weights resnet50-0676ba61.pth",
    ): "needs torchvision's weights file (a download)",
    (
        "onnx.md",
        "netdsl train resnet18 --set classes=10 --init-from resnet18-f37072fd.pth",
    ): "needs torchvision's weights file (a download)",
    ("onnx.md", "netdsl bench resnet18"): "a benchmark",
    ("scripting.md", "netdsl completion bash >"): "writes into the reader's home folder",
    ("scripting.md", "netdsl completion zsh"): "writes into the reader's zsh setup",
    ("scripting.md", "netdsl completion fish >"): "writes into the reader's home folder",
    (
        "sharing.md",
        "netdsl export triton resnet50 -o models/ --format plan",
    ): "needs TensorRT and a GPU",
    (
        "explain.md",
        "netdsl train lenet5 --data mnist:data/mnist",
    ): "reads MNIST from data/mnist, which the reader downloads",
    ("explain.md", "netdsl explain"): "explains the run of the training above",
    (
        "training.md",
        "netdsl train nets/lenet5.net",
    ): "20 epochs: 15 s on an idle machine, past the limit on a busy one; the README's main job, "
    "which tests/train/test_install.py runs (one epoch) in a fresh install",
}
# Where a doc's commands work on the reader's own file: the file this test puts there first.
READER_FILES = {
    "README.md": ("cat.jpg",),  # `netdsl run resnet50.onnx --input cat.jpg`: any photo
    "sharing.md": ("model.onnx",),  # `netdsl summary model.onnx`: any model
}
# (doc, the start of the command, or "python N" for the doc's Nth Python block) -> what is wrong
BROKEN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Example:
    doc: str
    text: str  # the command line, or the Python source
    shown: tuple[str, ...] = ()  # the output the doc shows
    files: tuple[tuple[str, str], ...] = ()  # written before it runs: (name, content)
    python: int = 0  # the Nth Python block of its doc (1-based); 0: a command

    @property
    def key(self) -> str:
        return f"python {self.python}" if self.python else self.text

    def find(self, table: dict[tuple[str, str], str]) -> str | None:
        return next((why for (d, s), why in table.items() if d == self.doc and
                     self.key.startswith(s)), None)  # fmt: skip


def examples(path: Path) -> list[Example]:
    found: list[Example] = []
    text = path.read_text("utf-8")
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang == "python":
            found.append(Example(path.name, body, python=sum(e.python > 0 for e in found) + 1))
        elif lang in SHELL_BLOCKS:
            found += _commands(path.name, body.replace("\\\n", " "))
    return found


def _commands(doc: str, body: str) -> list[Example]:
    lines = body.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return [Example(doc, line.strip()) for line in lines if COMMAND.match(line.strip())]
    found, pending = [], []
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")] + [len(lines)]
    for i, end in itertools.pairwise(starts):
        command, shown = lines[i][2:].strip(), tuple(s for s in lines[i + 1 : end] if s.strip())
        cat = re.fullmatch(r"cat (\S+)", command)
        if cat:
            pending.append((cat.group(1), "\n".join(shown) + "\n"))
        elif COMMAND.match(command):
            found.append(Example(doc, command, shown, tuple(pending)))
            pending = []
    return found


CASES = [e for doc in DOCS for e in examples(doc)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One working folder per doc, beside a link to ../shared, holding links to the repo."""
    made: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("docs")
    if (ROOT.parent / "shared").exists():
        (base / "shared").symlink_to(ROOT.parent / "shared")
    for doc in DOCS:
        folder = base / doc.stem / "main"
        folder.mkdir(parents=True)
        (folder.parent / "shared").symlink_to(ROOT.parent / "shared")
        for entry in ROOT.iterdir():
            if entry.name not in (".git", "runs", "build") and not entry.name.endswith(".onnx"):
                (folder / entry.name).symlink_to(entry)
        made[doc.name] = folder
        for name in READER_FILES.get(doc.name, ()):
            _reader_file(folder / name)
    return made


def _reader_file(path: Path) -> None:
    """A photo (random pixels) or a model (LeNet-5, compiled), standing for the reader's."""
    if path.suffix == ".jpg":
        import numpy as np
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    else:
        argv = [sys.executable, "-m", "netdsl", "compile", "lenet5", "-o", str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, env=_env())
        assert done.returncode == 0, done.stderr


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    bin_ = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["MPLBACKEND"] = "Agg"
    return env


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("case", CASES, ids=lambda e: f"{e.doc}: {e.key[:70]}")
def test_doc_example_runs(case: Example, folders: dict[str, Path]) -> None:
    skipped, broken = case.find(SKIPPED), case.find(BROKEN)
    if skipped:
        pytest.skip(skipped)
    if shutil.which("dot") is None and PICTURE.search(case.text):
        pytest.skip("draws an SVG or PNG, which needs Graphviz's `dot` (not installed here)")
    folder = folders[case.doc]
    for name, content in case.files:
        (folder / name).write_text(content)
    if case.python:
        earlier = [
            e.text
            for e in CASES
            if e.doc == case.doc and 0 < e.python < case.python and not e.find(BROKEN)
        ]
        if shutil.which("dot") is None and any(PICTURE.search(text) for text in earlier):
            pytest.skip("runs a block that draws an SVG or PNG, which needs Graphviz's `dot`")
        script = folder / f"doc_block_{case.python}.py"
        script.write_text("\n".join([*earlier, case.text]))
        argv = [sys.executable, script.name]
    else:
        argv = ["bash", "-c", case.text]
    try:
        done = subprocess.run(
            argv, cwd=folder, env=_env(), capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"took longer than {TIMEOUT} s: {case.text}")
    # The repository's files are links here, so messages name them by their real paths.
    said = (done.stdout + done.stderr).replace(f"{ROOT}/", "")
    errors = [line for line in case.shown if "error:" in line]
    problem = None
    if errors and done.returncode == 0:
        problem = f"the doc shows an error ({errors[0]}) but it exited 0"
    elif errors and _normal(errors[0]) not in _normal(said):
        problem = f"the doc shows {errors[0]!r}; it printed:\n{said[-1500:]}"
    elif not errors and done.returncode != 0:
        problem = f"exit {done.returncode}:\n{said[-1500:]}"
    else:
        missing = [s for s in case.shown if "..." not in s and _normal(s) not in _normal(said)]
        if missing:
            problem = f"the doc shows {missing[0]!r}; it printed:\n{said[-1500:]}"
    if broken:
        assert problem, f"fixed ({broken}): remove its BROKEN entry"
        pytest.xfail(f"{broken}: {problem.splitlines()[0]}")
    assert problem is None, f"{case.doc}: {case.text}\n{problem}"


def test_every_table_entry_names_an_example() -> None:
    """A SKIPPED or BROKEN entry that matches nothing has outlived its command."""
    for table in (SKIPPED, BROKEN):
        for doc, start in table:
            assert any(e.doc == doc and e.key.startswith(start) for e in CASES), (doc, start)


def test_the_docs_have_commands() -> None:
    assert len([e for e in CASES if not e.python]) >= 30
    assert shutil.which("bash")
