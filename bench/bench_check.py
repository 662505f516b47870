"""`netdsl check resnet152` side by side with what a user would otherwise run.

The peer: build the same net in PyTorch (bench/peers.py, torchvision's ResNet-152) and summarise
it with torchinfo, which runs a forward pass to find the shapes. Timed in one process (median;
torch already imported) and from the command line (`netdsl check` against a bare
`python -c "import torch"`, which any torch-based tool pays before it starts). It also checks,
with `python -X importtime`, that `netdsl check` imports neither torch nor onnx nor onnxruntime.

    .venv/bin/python -m bench.bench_check [--net resnet152] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netdsl
from bench.common import ROOT, interleaved, machine, markdown, ms, wait_quiet, write_json

HEAVY = ("torch", "onnx", "onnxruntime", "numpy")  # numpy is reported, not forbidden
FORBIDDEN = ("torch", "onnx", "onnxruntime")


def netdsl_cli() -> list[str]:
    """The installed `netdsl` script, run by this interpreter."""
    script = Path(sys.executable).with_name("netdsl")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "netdsl"]


def imports_of_check(net: str) -> dict[str, Any]:
    """Top-level packages `netdsl check NET` imports, from `-X importtime`, and its self time."""
    argv = [sys.executable, "-X", "importtime", *netdsl_cli()[1:], "check", net]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"netdsl check {net} failed:\n{done.stderr}")
    packages: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if cumulative.isdigit():
                top = name.split(".")[0]
                packages[top] = max(packages.get(top, 0), int(cumulative))
    loaded = sorted(p for p in HEAVY if p in packages)
    return {
        "heavy_imports": loaded,
        "forbidden_imports": [p for p in loaded if p in FORBIDDEN],
        "import_us": {p: packages[p] for p in ("netdsl", "lark", *loaded) if p in packages},
    }


def first_load(net: str) -> float:
    """The first `netdsl.load` of a process: it also builds (or reads lark's cache of) the
    grammar's parser tables."""
    start = time.perf_counter()
    netdsl.load(net)
    return time.perf_counter() - start


def torch_peer(net: str) -> tuple[Callable[[], object], Callable[[], object], Any]:
    """Build, and build + summarise, the PyTorch peer; and torchinfo's counts."""
    import torch
    import torchinfo

    from bench.peers import build

    torch.set_num_threads(os.cpu_count() or 1)

    def build_and_summarise() -> Any:
        return torchinfo.summary(build(net), input_size=(1, 3, 224, 224), verbose=0)

    return (lambda: build(net)), build_and_summarise, build_and_summarise()


def subprocess_run(argv: list[str]) -> Callable[[], object]:
    def run() -> None:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="resnet152", help="a zoo net with a PyTorch peer")
    parser.add_argument("--rounds", type=int, default=5, help="undisturbed turns per candidate")
    parser.add_argument("--budget", type=float, default=60, help="seconds per comparison")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for quiet")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()

    first = first_load(args.net)  # first: it must be this process's first load
    shaped = netdsl.load(args.net)
    imports = imports_of_check(args.net)
    busy = wait_quiet(args.wait)
    # netdsl alone, before torch is imported: torch's objects make each garbage collection of
    # a process that holds them slower (netdsl.load takes ~25% longer there).
    inproc = interleaved(
        {"netdsl": lambda: netdsl.load(args.net)}, args.rounds, budget_s=args.budget
    )
    build_peer, summarise_peer, stats = torch_peer(args.net)
    inproc |= interleaved(
        {"torch": summarise_peer, "build": build_peer}, args.rounds, budget_s=args.budget
    )
    cli = interleaved(
        {
            "netdsl": subprocess_run([*netdsl_cli(), "check", args.net]),
            "import torch": subprocess_run([sys.executable, "-c", "import torch"]),
            "python": subprocess_run([sys.executable, "-c", "pass"]),
        },
        args.rounds,
        min_turn_s=1.0,
        budget_s=args.budget,
    )
    disturbed = [k for k, t in [*inproc.items(), *cli.items()] if not t.clean]
    ours, peer = inproc["netdsl"].median, inproc["torch"].median
    results: dict[str, Any] = {
        "net": args.net,
        "machine": machine(),
        "busy_cpus_before": busy,
        "netdsl": {
            "first_s": first,
            "median_s": ours,
            "min_s": inproc["netdsl"].best,
            "params": shaped.params,
            "macs": shaped.macs,
        },
        "torch_torchinfo": {
            "median_s": peer,
            "min_s": inproc["torch"].best,
            "build_only_s": inproc["build"].median,
            "params": int(stats.total_params),
            "macs": int(stats.total_mult_adds),
        },
        "netdsl_cli_s": cli["netdsl"].median,
        "import_torch_s": cli["import torch"].median,
        "python_startup_s": cli["python"].median,
        "disturbed_turns": sum(t.dropped_turns for t in [*inproc.values(), *cli.values()]),
        "never_undisturbed": disturbed,
        "imports": imports,
        "ratio_inprocess": peer / ours,
        "ratio_cli_vs_import_torch": cli["import torch"].median / cli["netdsl"].median,
    }
    # torchinfo also counts one multiply-add per batch-norm scale and bias and per fc bias.
    extra = sum(
        2 * n.shape[0] if n.op == "bn" else n.attrs["n"] if n.op == "fc" else 0
        for n in shaped.nodes
    )
    results["counts_agree"] = (shaped.params, shaped.macs + extra) == (
        results["torch_torchinfo"]["params"],
        results["torch_torchinfo"]["macs"],
    )
    write_json(args.json, results)
    tinfo = results["torch_torchinfo"]
    print(
        f"netdsl check {args.net}: {shaped.params:,} params, {shaped.macs / 1e9:.2f} GMACs; "
        f"torchinfo: {tinfo['params']:,} params, {tinfo['macs'] / 1e9:.2f} GMACs "
        f"({'agree' if results['counts_agree'] else 'DISAGREE'}, counting torchinfo's "
        f"{extra:,} bn and bias mult-adds); turns disturbed by other processes: "
        f"{results['disturbed_turns']}"
    )
    if disturbed:
        print(f"warning: no undisturbed turn for {', '.join(disturbed)}: noisy figures")
    print(
        f"imports of `netdsl check`: {', '.join(imports['heavy_imports']) or 'none heavy'} "
        f"(forbidden: {', '.join(imports['forbidden_imports']) or 'none'})"
    )
    rows = [
        ["netdsl.load (in-process)", ms(ours), ms(inproc["netdsl"].best), "1x"],
        ["netdsl.load, first in a process", ms(first), "", ""],
        [
            "PyTorch build + torchinfo.summary (in-process)",
            ms(peer),
            ms(inproc["torch"].best),
            f"{results['ratio_inprocess']:.1f}x netdsl.load",
        ],
        ["  of which PyTorch build alone", ms(tinfo["build_only_s"]), ms(inproc["build"].best), ""],
        [
            f"`netdsl check {args.net}` (subprocess)",
            ms(results["netdsl_cli_s"]),
            ms(cli["netdsl"].best),
            "1x",
        ],
        [
            '`python -c "import torch"` (subprocess)',
            ms(results["import_torch_s"]),
            ms(cli["import torch"].best),
            f"{results['ratio_cli_vs_import_torch']:.1f}x the CLI",
        ],
        [
            '`python -c "pass"` (subprocess)',
            ms(results["python_startup_s"]),
            ms(cli["python"].best),
            "",
        ],
    ]
    print()
    print(markdown(["what", "median", "best", "ratio"], rows))
    if imports["forbidden_imports"]:
        sys.exit(f"netdsl check imported {imports['forbidden_imports']}")


if __name__ == "__main__":
    main()
