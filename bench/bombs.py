"""Hostile .net inputs, each timed in-process through the command line: input, message, exit code.

Small files that ask for astronomical work, files that try to read what they should not, and
numbers that overflow. Each must be refused with one clear error (exit 1; exit 3 would be a bug)
in under 100 ms; tests/core/test_hostile.py runs the same table. The markdown table this prints
is the one in docs/security.md.

    .venv/bin/python -m bench.bombs [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from netdsl.cli import main as cli

LIMIT_S = 0.1


@dataclass(frozen=True)
class Bomb:
    name: str
    files: dict[str, str]  # written into a fresh folder; the first is the one checked
    command: str = "check"
    limit_s: float = LIMIT_S  # a file of many tokens is bounded by parsing: < 1 s

    @property
    def shown(self) -> str:
        text = next(iter(self.files.values()))
        return text if len(text) <= 60 else text[:57] + "..."


def _diamond(levels: int) -> dict[str, str]:
    """main.net imports f1.net twice, f1 imports f2 twice, ...: 2^levels paths, one file each."""
    files = {"main.net": 'import "f1.net"\nimport "f1.net"\ninput 3x8x8\nd\n'}
    for i in range(1, levels):
        files[f"f{i}.net"] = f'import "f{i + 1}.net"\nimport "f{i + 1}.net"\n'
    files[f"f{levels}.net"] = "def d = relu\n"
    return files


BOMBS = [
    Bomb("empty repetitions", {"a.net": "input 3x8x8\n[[relu*0]*100000]*100000\n"}),
    Bomb("failing repetitions", {"a.net": "input 3x8x8\n[[nope]*100000]*100000\n"}),
    Bomb("cube of layers", {"a.net": "input 3x8x8\n[[[conv3x3]*1000]*1000]*1000\n"}),
    Bomb(
        "a count read from the channels",
        {"a.net": "def f = relu*(in.c)\ninput 2000000000x1x1\nf\n"},
    ),
    Bomb(
        "counts that grow with the channels",
        {"a.net": "def g = relu*(in.c)\ndef f = conv1x1(2*in.c) -> g\ninput 3x8x8\nf*40\n"},
        limit_s=1.0,  # refused at the layer limit, after ~12,000 real layers (each shaped once)
    ),
    Bomb("one mistake, 100,000 times", {"a.net": "input 3x8x8\n[nope]*100000\n"}),
    Bomb("import diamond, 30 levels", _diamond(30)),
    Bomb("import /dev/zero", {"a.net": 'import "/dev/zero"\ninput 3x8x8\nrelu\n'}),
    Bomb("import /proc/self/environ", {"a.net": 'import "/proc/self/environ"\ninput 3\nfc(1)\n'}),
    Bomb("import ../ escape", {"a.net": 'import "../../etc/passwd.net"\ninput 3\nfc(1)\n'}),
    Bomb(
        "definitions doubling",
        {
            "a.net": "def d0 = relu\n"
            + "".join(f"def d{i} = d{i - 1} -> d{i - 1}\n" for i in range(1, 40))
            + "input 3x8x8\nd39\n"
        },
    ),
    Bomb(
        "3,000 chained definitions",
        {
            "a.net": "def d0 = relu\n"
            + "".join(f"def d{i} = d{i - 1}\n" for i in range(1, 3000))
            + "input 3x8x8\nd2999\n"
        },
        limit_s=1.0,
    ),
    Bomb("400-digit argument", {"a.net": "input 3x8x8\nleakyrelu(1" + "0" * 400 + ")\n"}),
    Bomb("float overflow", {"a.net": "input 3x8x8\nleakyrelu(1e300*1e300)\n"}),
    Bomb(
        "huge strides in summary",
        {"a.net": "input 3x8x8\nmaxpool(k=1, s=2147483647)*40\n"},
        "summary",
    ),
    Bomb(
        "stacked wide transposed convolutions in summary",
        {
            "a.net": "input 1x1024x1024\n[maxpool]*10 -> deconv(1, k=(1,40000), s=(1,1024))"
            " -> deconv(1, k=(1,40000), s=(1,1024))\n"
        },
        "summary",
    ),
    Bomb("deep operators", {"a.net": "input 3x8x8\nconv1x1(" + "-" * 5000 + "1)\n"}),
    Bomb("long sum", {"a.net": "input 3x8x8\nconv1x1(" + "+".join(["1"] * 50000) + ")\n"}),
    Bomb(
        "200,000 tokens", {"a.net": "input 3x8x8\n" + "relu -> " * 100000 + "relu\n"}, limit_s=1.0
    ),
]


def run(bomb: Bomb, folder: Path) -> tuple[float, int, str]:
    """Seconds, exit code and the first line printed to stderr."""
    for name, text in bomb.files.items():
        (folder / name).write_text(text, "utf-8")
    target = folder / next(iter(bomb.files))
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli([bomb.command, str(target)])
    seconds = time.perf_counter() - start
    lines = err.getvalue().splitlines() or [""]
    first = lines[0].replace(str(folder) + os.sep, "").replace(str(folder), "FOLDER")
    return seconds, code, first


def table(rows: list[dict[str, object]]) -> str:
    out = ["| input | command | time | exit | message |", "|---|---|---:|---:|---|"]
    for r in rows:
        shown = str(r["input"]).replace("\n", "⏎").replace("|", "\\|")
        message = str(r["message"]).replace("|", "\\|")
        out.append(
            f"| {r['name']}: `{shown}` | {r['command']} | {float(str(r['seconds'])) * 1000:.1f} ms "
            f"| {r['exit']} | {message} |"
        )
    return "\n".join(out)


def measure() -> list[dict[str, object]]:
    cli(["check", "lenet5"])  # warm: the parser tables load once per process
    rows = []
    for bomb in BOMBS:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, code, message = run(bomb, Path(tmp))
        rows.append(
            {
                "name": bomb.name,
                "input": bomb.shown,
                "command": bomb.command,
                "seconds": round(seconds, 4),
                "exit": code,
                "message": message,
                "limit_s": bomb.limit_s,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        rows = measure()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    slow = [r["name"] for r in rows if float(str(r["seconds"])) >= float(str(r["limit_s"]))]
    bugs = [r["name"] for r in rows if r["exit"] not in (0, 1, 2)]
    print(f"\n{len(rows)} inputs; over their limit: {slow or 'none'}; exit 3: {bugs or 'none'}")
    return 1 if slow or bugs else 0


if __name__ == "__main__":
    raise SystemExit(main())
