"""What the benchmark scripts share: timing in turns that skips disturbed ones, the machine,
tables.

Not part of the pipeline; bench/*.py import it as `bench.common` (run them from the project's
root as `python -m bench.NAME` or `python -m bench.NAME`).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """The CPU as lscpu tells it, plus the versions that matter."""
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    keys = (
        "Model name",
        "CPU family",
        "Model",
        "Core(s) per socket",
        "Thread(s) per core",
        "BogoMIPS",
        "CPU max MHz",
        "L2 cache",
        "L3 cache",
        "Hypervisor vendor",
    )
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


@dataclass
class Timing:
    """Seconds per call: median and best over the undisturbed turns (over all turns when none
    was undisturbed), and how many turns were disturbed by other processes."""

    median: float
    best: float
    calls: int
    dropped_turns: int
    clean: bool  # False: every turn was disturbed, and these figures come from all of them


def _cpu_clock() -> tuple[float, float]:
    """(seconds of CPU time the whole machine has spent busy, this process's CPU seconds)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def interleaved(
    candidates: dict[str, Callable[[], object]],
    rounds: int,
    *,
    min_turn_s: float = 0.3,
    warmup: int = 1,
    warmup_s: float = 0.0,
    threshold: float = 0.3,
    budget_s: float = 120.0,
) -> dict[str, Timing]:
    """Time the candidates in turns (round robin) until each has `rounds` undisturbed turns or
    `budget_s` has passed. A turn runs untimed calls (at least `warmup`, for at least
    `warmup_s`: long enough for the previous candidate's idle threads to stop spinning), then
    timed calls for at least `min_turn_s` (at least one). Taking turns spreads slow changes
    in the machine's load over every candidate; a turn while other processes kept more than
    `threshold` CPUs busy (read from /proc/stat less this process's own CPU time) is disturbed
    and not counted, since PyTorch's OpenMP threads slow down up to a hundredfold when a core
    is taken from them."""
    turns: dict[str, list[tuple[list[float], bool]]] = {name: [] for name in candidates}
    deadline = time.monotonic() + budget_s

    def clean(name: str) -> int:
        return sum(ok for _, ok in turns[name])

    while any(clean(n) < rounds for n in candidates) and (
        time.monotonic() < deadline or any(not turns[n] for n in candidates)
    ):
        for name, fn in candidates.items():
            if clean(name) >= rounds:
                continue
            begin, done_warmup = time.perf_counter(), 0
            while done_warmup < warmup or time.perf_counter() - begin < warmup_s:
                fn()
                done_warmup += 1
            calls: list[float] = []
            busy0, own0 = _cpu_clock()
            begin = time.perf_counter()
            while not calls or time.perf_counter() - begin < min_turn_s:
                start = time.perf_counter()
                fn()
                calls.append(time.perf_counter() - start)
            busy1, own1 = _cpu_clock()
            foreign = ((busy1 - busy0) - (own1 - own0)) / (time.perf_counter() - begin)
            turns[name].append((calls, foreign <= threshold))
    result = {}
    for name, done in turns.items():
        kept = [calls for calls, ok in done if ok] or [calls for calls, _ in done]
        flat = [x for calls in kept for x in calls]
        disturbed = len(done) - clean(name)
        result[name] = Timing(
            statistics.median(flat), min(flat), len(flat), disturbed, clean(name) > 0
        )
    return result


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs' worth of work other processes are doing now."""
    busy0, own0 = _cpu_clock()
    time.sleep(seconds)
    busy1, own1 = _cpu_clock()
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds


def wait_quiet(limit_s: float, threshold: float = 0.2) -> float:
    """Wait (up to `limit_s`) until other processes use less than `threshold` CPUs; warn on
    stderr if they never do. Returns the load last seen."""
    deadline = time.monotonic() + limit_s
    busy = busy_cpus()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_cpus(2.0)
    if busy > threshold:
        print(
            f"warning: other processes keep {busy:.1f} CPUs busy; timings will be noisy",
            file=sys.stderr,
        )
    return busy
