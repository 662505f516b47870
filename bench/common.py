"""What the benchmark scripts share: timing by median, subprocess timing, the machine, tables.

Not part of the pipeline; bench/*.py import it as `bench.common` (run them from the project's
root as `python -m bench.NAME` or `python bench/NAME.py`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 0) -> tuple[float, float]:
    """(median, minimum) wall seconds of `fn()` over `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def run_time(argv: Sequence[str], repeat: int, env: dict[str, str] | None = None) -> float:
    """Median wall seconds of a subprocess (after one untimed run to warm the file cache)."""

    def once() -> None:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")

    return median_time(once, repeat, warmup=1)[0]


def machine() -> dict[str, Any]:
    """The CPU as lscpu tells it, plus the versions that matter."""
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    keys = ("Model name", "CPU family", "Model", "Core(s) per socket", "Thread(s) per core",
            "BogoMIPS", "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor")  # fmt: skip
    for key in keys:
        if key in fields:
            info[key] = fields[key].strip()
    flags = fields.get("Flags", "").split()
    simd = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni")
    info["simd"] = [f for f in simd if f in flags]
    return info


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def write_json(path: str | None, results: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
