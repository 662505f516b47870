"""A long fuzzing run of the front end: grammar-aware .net files and mutated zoo files.

Outside CI (tests/core/test_property.py runs the same generator for a few hundred inputs under
hypothesis). Each input is a folder of `.net` files: a main file written from the grammar (nets,
definitions with parameters, defaults, repetitions with boundary counts, nested empty
repetitions, comprehensions, residuals, branches, imports of real zoo files and of hostile
paths), a net that is a graph (named inputs of every rank, shared blocks, named tensors,
merges, crops and upsamplings to another tensor, labels, several outputs), or a zoo file or a
hand-written graph with mutations (numbers swapped for 0, -1, 100,000, 2^31, 10^400, NaN,
tokens inserted, deleted, doubled). Layers include the shape layers (reshape, transpose, pad,
channels, local, adaptive pools, gated), `in.c` and shape checks. Every accepted net is
summarised (table and JSON). An input fails if anything other than `NetError` escapes, or if it
takes more than 1 s of CPU time (CPU, not wall-clock time: the run is meant to be niced on a
shared machine). An input is stopped
after 10 s of CPU time and the run may map 4 GiB, so that a hang or a memory bomb is reported
as a finding instead of stalling the run or the machine.

    nice -n 10 .venv/bin/python -m bench.fuzz_long [--inputs 100000] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

import netdsl
from netdsl import ops
from netdsl.zoo import zoo_dir

summary = importlib.import_module("netdsl.summary")  # `netdsl.summary` is also a function

BOUNDARY = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "100000",
    "2147483648",
    "2147483647",
    "1" + "0" * 400,
    "NaN",
    "nan",
    "0.0",
    "1e400",
    "0.5",
    "(0-1)",
    "(2*3)",
    "c",
    "s",
    "n",
    "(c/0)",
    "in.c",
    "in.h",
    "in.l",
    "in.d",
    "in.x",
]
OPS = sorted(ops.known_names())
SHORT = [
    "conv3x3",
    "conv1x1",
    "conv7x7/2",
    "maxpool3x3/2",
    "avgpool2x2",
    "conv3x3/s",
    "dwconv3x3",
    "sepconv3x3",
    "deconv2x2/2",
    "conv1x5",
    "maxpool",
    "gap",
    "flatten",
]
MODES = ["nearest", "bilinear", "linear", "reflect", "constant", "edge"]
# layers of graphs and of other ranks, mostly with arguments that fit (`{t}`: a named tensor)
GRAPH_LAYERS = [
    "crop(to={t})",
    "upsample(to={t})",
    "upsample(to={t}, mode=bilinear)",
    "upsample",
    "upsample(f=(2, 1))",
    "crop(4)",
    "reshape(-1)",
    "reshape(2, -1)",
    "reshape(1, 8, 8)",
    "transpose(2, 1)",
    "transpose(2, 3, 1)",
    "softmax(axis=-1)",
    "softmax(axis=2)",
    "pad(1)",
    "pad((1, 0), mode=reflect)",
    "channels(0, 2)",
    "slice(1, 3)",
    "local3x3(2)",
    "local3(2, s=2)",
    "adaptiveavgpool(2)",
    "adaptivemaxpool((2, 3))",
    "conv(4, k=2, d=2) -> gated",
    "gated",
    "conv3(4)",
    "conv3x3x3(2)",
    "maxpool1x2x2",
    "conv5(2, s=2)",
    "deconv2(2)",
    "gap",
    "flatten -> fc(4)",
    "bn -> relu",
]
TAME = ["conv3x3(4)", "conv1x1(2)", "relu", "maxpool2", "bn", "conv3(4, p=valid)", "sigmoid"]
ZOO = sorted(p.name for p in zoo_dir().glob("*.net"))
# graphs written by hand, mutated like the zoo's files: one per form of docs/language.md "Graphs"
GRAPH_SEEDS = [
    "net siamese:\n  input a: 1x16x16, b: 1x16x16\n"
    "  tower = [conv3x3(4, p=valid) -> relu -> maxpool2x2]\n"
    "  ya = a -> tower\n  yb = b -> tower\n  output d: [ya, yb] -> concat -> gap -> fc(1)\n",
    "net mix:\n  input sig: 1x64, img: 3x16x16\n"
    "  s = sig -> conv5(4, s=2) -> relu -> adaptiveavgpool(4) -> flatten\n"
    "  i = img -> conv1_1: conv3x3(4) -> relu -> gap -> flatten\n"
    "  output y: [s, i] -> concat -> fc(3) -> softmax(axis=-1)\n",
    "net step:\n  input x: 1x28x28\n"
    "  d1 = x -> conv3x3(4, p=valid) -> relu\n  b = d1 -> maxpool2x2 -> conv3x3(8)\n"
    "  u1 = b -> upconv2x2/2(4)\n  output y: [d1 -> crop(to=u1), u1] -> concat -> conv1x1(2)\n"
    "  output z: b -> upsample(to=d1) -> channels(0, 2)\n",
    "net vol:\n  input v: 2x8x16x16, w: 2x8x16x16\n"
    "  g = w -> gap -> fc(2) -> sigmoid\n"
    "  y = [v -> conv3(2), g] -> mul -> maxpool1x2x2 -> pad(1) -> local3(2)\n"
    "  output y\n",
    "net shapes:\n  input a: 8x8x8, b: 8x8x8\n"
    "  y = [a, b -> conv(16, k=2, d=2, p=same) -> gated] -> add -> transpose(2, 3, 1)\n"
    "  output p: y -> reshape(8, -1) -> softmax(axis=2)\n"
    "  output q: a -> adaptivemaxpool(2) -> flatten -> fc(4)\n",
    "def half(c=in.c/2) = conv1x1(c) -> bn -> relu\ndef pool = avgpool(k=(in.h, in.w))\n"
    "net twin(L=2):\n  input a: (2*L)x16x16, b: (2*L)x16x16\n"
    "  t = [half -> conv3x3(4) -> 4x16x16 -> pool]\n"
    "  ya = a -> t\n  yb = b -> t\n"
    "  output d: [ya, yb] -> add -> flatten -> 4\n  output m: [ya, yb] -> concat\n",
]
HOSTILE_IMPORTS = [
    "/dev/zero",
    "/proc/self/environ",
    "../x.net",
    "missing.net",
    "main.net",
    "sub/lib.net",
    "lib.net",
    "link.net",
    "fifo.net",
    "big.net",
    "bin.net",
    "loop1.net",
    "folder.net",
    "a\x01.net",
    "a" * 300 + ".net",
    "a/" * 2100 + "x.net",
    "sub/../lib.net",
    "~/x.net",
]
# tokens of the graph forms, the other ranks and the shape layers, inserted by `mutate`
INSERTS = [
    "input a: 1x8x8, b: 1x8x8",
    "input a: 1x64, b: 3x8x8",
    "input 2x4x8x8",
    "input 1x100",
    "y = a -> ",
    "t = [conv3x3(4)]",
    "output n: ",
    "output y",
    "[a, b] -> concat",
    "[a, b] -> add",
    "[a, b -> gap] -> mul",
    "crop(to=a)",
    "upsample(to=y)",
    "conv1_1: conv3x3",
    "x: ",
    "a -> ",
    "-> t",
    "[a, b] -> sub -> abs",
    "[a, b] -> mean",
    "-> 4x8x8",
    "-> 8x8",
    "-> (c)x(8)x(8)",
    "in.c",
    "(in.c/2)",
    "k=(in.h, in.w)",
    "input (2*c)x8x8",
    *GRAPH_LAYERS,
]
SLOW_S = 1.0  # CPU seconds
STOP_S = 10  # CPU seconds after which an input is stopped (a finding over 1 s, not a hang)
MEMORY = 4 << 30  # bytes the run may map: a memory bomb is a MemoryError finding, not a swap storm
KEPT = 100_000  # characters of a finding's input kept in the report


class Stopped(BaseException):
    """An input that ran STOP_S of CPU time (a BaseException: no `except Exception` holds it)."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped


class Writer:
    """Random text from the grammar of docs/language.md, deliberately near its limits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.defs: list[tuple[str, int]] = []
        self.names = ["c", "s", "n"]
        self.tensors: list[str] = []  # named tensors and inputs of a graph, for `to=`
        self.blocks: list[str] = []  # shared blocks of a graph

    def number(self) -> str:
        r = self.rng
        return r.choice(BOUNDARY) if r.random() < 0.5 else str(r.choice([1, 2, 4, 8, 16, 64]))

    def expr(self, depth: int = 0) -> str:
        r = self.rng.random()
        if depth > 2 or r < 0.5:
            return self.number()
        if r < 0.7:
            op = self.rng.choice("+-*/%")
            return f"{self.expr(depth + 1)}{op}{self.expr(depth + 1)}"
        if r < 0.8:
            return f"({self.expr(depth + 1)}, {self.expr(depth + 1)})"
        if r < 0.9:
            return self.rng.choice(["same", "valid", "true", "false", "full", '"x"'])
        return f"-{self.expr(depth + 1)}"

    def call(self) -> str:
        r = self.rng
        if r.random() < 0.15:  # the layers of graphs and of other ranks, written plausibly
            layer = r.choice(GRAPH_LAYERS)
            if "{t}" in layer and not self.tensors:
                return layer.replace("{t}", "a")
            if self.blocks and r.random() < 0.3:
                return r.choice(self.blocks)
            return layer.replace("{t}", r.choice(self.tensors or ["a"]))
        if r.random() < 0.05:
            return f"{r.choice(['conv1_1', 'l', 'fc'])}: {self.call()}"  # a label
        if self.defs and r.random() < 0.3:
            name, arity = r.choice(self.defs)
            args = [self.expr() for _ in range(r.choice([0, arity, arity + 1]))]
            return f"{name}({', '.join(args)})" if args or r.random() < 0.5 else name
        name = r.choice(SHORT) if r.random() < 0.4 else r.choice(OPS)
        if r.random() < 0.4:
            return name
        args = []
        for _ in range(r.randint(0, 3)):
            key = r.choice(
                [
                    "",
                    "",
                    "c",
                    "k",
                    "s",
                    "p",
                    "d",
                    "groups",
                    "bias",
                    "ceil",
                    "n",
                    "alpha",
                    "output_padding",
                    "stride",
                    "axis",
                    "pads",
                    "mode",
                    "value",
                    "start",
                    "end",
                    "size",
                    "f",
                    "m",
                    "count_pad",
                    "to",
                ]
            )
            value = self.expr()
            if key == "to" or (key == "mode" and r.random() < 0.7):
                value = r.choice([*self.tensors, *MODES]) if self.tensors else r.choice(MODES)
            args.append(f"{key}={value}" if key else value)
        return f"{name}({', '.join(args)})"

    def chain(self, depth: int = 0) -> str:
        r = self.rng
        terms = [self.term(depth) for _ in range(r.randint(1, 4))]
        return " -> ".join(terms)

    def term(self, depth: int) -> str:
        r = self.rng.random()
        if r < 0.04:  # a shape check (`-> 64x56x56`, `-> 56x56`, `-> (c)x(8)x(8)`)
            return self.rng.choice(["4x8x8", "8x8", "64", "(c)x(8)x(8)", "(in.c)x8", self.dims()])
        if depth > 3 or r < 0.45:
            return self.call()
        inner = self.chain(depth + 1)
        if r < 0.6:
            return f"[{inner}]*{self.count()}"
        if r < 0.65:  # nested empty repetitions
            return f"[[{inner}*0]*{self.count()}]*{self.count()}"
        if r < 0.72:
            values = ", ".join(self.expr() for _ in range(self.rng.randint(0, 4)))
            return f"[{inner}] for c in [{values}]"
        if r < 0.8:
            return f"res[{inner}]"
        if r < 0.88:
            arms = " | ".join(self.chain(depth + 1) for _ in range(self.rng.randint(2, 3)))
            return "{" + arms + "}" + self.rng.choice(["", "+"])
        if r < 0.94:
            return f"dense[{inner}]"
        return f"scale[{inner}]"

    def count(self) -> str:
        return self.rng.choice(["0", "1", "2", "3", "100000", "2147483648", "c", "(0-1)", "1000"])

    def dims(self) -> str:
        r = self.rng
        parts = [r.choice(["3", "1", "0", "64", "100000", "2147483648", "8"]) for _ in range(4)]
        return "x".join(parts[: r.choice([1, 3, 3, 3, 2, 4])])

    def small_dims(self) -> str:
        """Mostly sizes a net can use (a vector, a signal, an image, a volume), at times not."""
        r = self.rng
        if r.random() < 0.15:
            return self.dims()
        rank = r.choice([0, 1, 2, 2, 2, 3])
        return "x".join([r.choice(["1", "2", "3"])] + [r.choice(["8", "9", "16"])] * rank)

    def tame(self) -> str:
        """A chain a graph's line can mostly use (the wild `chain` now and then)."""
        r = self.rng
        if r.random() < 0.1:
            return self.chain(2)
        terms = []
        for _ in range(r.randint(1, 3)):
            if self.blocks and r.random() < 0.15:
                terms.append(r.choice(self.blocks))
            else:
                layer = r.choice([*GRAPH_LAYERS, *TAME])
                terms.append(layer.replace("{t}", r.choice(self.tensors or ["a"])))
        return " -> ".join(terms)

    def source(self) -> str:
        """Where a graph line starts: a named tensor, or several side by side."""
        r = self.rng
        if len(self.tensors) > 1 and r.random() < 0.35:
            items = [
                r.choice(self.tensors) + (f" -> {self.tame()}" if r.random() < 0.3 else "")
                for _ in range(r.randint(2, 3))
            ]
            merge = r.choice(["concat", "add", "mul", "add", "concat", "sub", "mean"])
            return f"[{', '.join(items)}] -> {merge}"
        return r.choice(self.tensors) if self.tensors else "a"

    def graph(self) -> str:
        """A net of named inputs (of any rank, often different ones), shared blocks, named
        tensors, merges and several outputs (docs/language.md, "Graphs")."""
        r = self.rng
        names = r.sample(["a", "b", "x", "img", "sig"], r.choice([1, 2, 2, 3]))
        same = self.small_dims() if r.random() < 0.5 else ""  # often inputs of one shape
        shown = ", ".join(f"{n}: {same or self.small_dims()}" for n in names)
        lines = [f"net g{r.randint(0, 9)}:", f"  input {shown}"]
        self.tensors = list(names)
        for k in range(r.randint(0, 2)):
            lines.append(f"  t{k} = [{self.tame()}]")
            self.blocks.append(f"t{k}")
        for k in range(r.randint(1, 4)):
            line = f"  y{k} = {self.source()}"
            if r.random() < 0.8:
                line += f" -> {self.tame()}"
            lines.append(line)
            self.tensors.append(f"y{k}")
        for k in range(r.randint(0 if r.random() < 0.1 else 1, 2)):
            if r.random() < 0.3:
                lines.append(f"  output {r.choice(self.tensors)}")
            else:
                lines.append(f"  output o{k}: {self.source()} -> {self.tame()}")
        if r.random() < 0.3:
            lines.append(f"  {self.tame()}")  # a bare last line: the output `output`
        return "\n".join(lines) + "\n"

    def file(self) -> str:
        r = self.rng
        lines = []
        for _ in range(r.randint(0, 2)):
            lines.append(f'import "{r.choice(ZOO + HOSTILE_IMPORTS)}"')
        for i in range(r.randint(0, 3)):
            params = r.sample(self.names, r.randint(0, 2))
            shown = ", ".join(p + (f"={self.expr()}" if r.random() < 0.5 else "") for p in params)
            head = f"def d{i}({shown})" if params or r.random() < 0.5 else f"def d{i}"
            lines.append(f"{head} = {self.chain()}")
            self.defs.append((f"d{i}", len(params)))
        if r.random() < 0.5:
            lines.append(f"net n(c={self.expr()}):")
            body = "  "
        else:
            body = ""
        if r.random() < 0.3:
            lines.append(
                f"{body}defaults {r.choice(OPS)}.{r.choice(['c', 'p', 'k'])}={self.expr()}"
            )
        shown = self.dims() if r.random() < 0.9 else f"({self.expr()})x8x8"  # sizes of parameters
        lines.append(f"{body}input {shown}")
        lines.append(body + self.chain())
        return "\n".join(lines) + "\n"


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(text))
        kind = rng.choice(["number", "number", "delete", "insert", "double", "wrap"])
        if kind == "number":
            spots = [k for k, ch in enumerate(text) if ch.isdigit()]
            if spots:
                k = rng.choice(spots)
                j = k
                while j < len(text) and text[j].isdigit():
                    j += 1
                text = text[:k] + rng.choice(BOUNDARY) + text[j:]
        elif kind == "delete":
            text = text[:i] + text[i + rng.randint(1, 8) :]
        elif kind == "insert":
            text = (
                text[:i]
                + rng.choice(
                    [
                        "->",
                        "*",
                        "[",
                        "]",
                        "(",
                        ")",
                        ",",
                        "\n",
                        "{",
                        "|",
                        "*100000",
                        "*0",
                        "res[",
                        "\r",
                        "\x0c",
                        *INSERTS,
                    ]
                )
                + text[i:]
            )
        elif kind == "double":
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        else:
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            if "->" in lines[k]:
                lines[k] = lines[k].replace("->", "-> [", 1) + f"]*{rng.choice(['0', '100000'])}"
            text = "\n".join(lines)
    return text


def populate(folder: Path) -> None:
    """Real files the generated imports can reach, and hostile ones."""
    for name in ZOO:
        shutil.copy(zoo_dir() / name, folder / name)
    (folder / "sub").mkdir()
    (folder / "sub" / "lib.net").write_text("def blk(c) = conv3x3(c) -> relu\n")
    (folder / "lib.net").write_text('import "sub/lib.net"\ndef two(c) = blk(c) -> blk(c)\n')
    (folder / "link.net").symlink_to("/etc/hostname")
    (folder / "bin.net").write_bytes(b"\x00\xff\xfe" * 100)
    with open(folder / "big.net", "wb") as f:
        f.truncate(2 << 20)
    os.mkfifo(folder / "fifo.net")
    (folder / "loop1.net").symlink_to(folder / "loop2.net")
    (folder / "loop2.net").symlink_to(folder / "loop1.net")
    (folder / "folder.net").mkdir()


def generate(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return Writer(rng).file()
    if r < 0.55:
        return Writer(rng).graph()
    if r < 0.7:
        return mutate(rng, rng.choice(GRAPH_SEEDS))
    return mutate(rng, (zoo_dir() / rng.choice(ZOO)).read_text("utf-8"))


def check(text: str, folder: Path) -> netdsl.NetError | None:
    """The NetError the input gets (rendered), or None once every net is summarised; anything
    else escapes."""
    main = folder / "main.net"
    main.write_text(text, "utf-8")
    try:
        nets = netdsl.load_all(main)
    except netdsl.NetError as error:
        error.render()
        return error
    for net in nets:
        summary.table(net)
        json.dumps(summary.to_json(net))
    return None


def run(
    inputs: int, seed: int, report_every: int = 2000, partial: Path | None = None
) -> dict[str, object]:
    """Fuzz `inputs` inputs; every `report_every` the figures so far are printed (and written to
    `partial`), so an interrupted run still has figures."""
    rng = random.Random(seed)
    counts = {"ok": 0, "error": 0}
    crashes: list[dict[str, str]] = []
    slow: list[dict[str, object]] = []
    worst = 0.0
    started = time.perf_counter()

    def figures(done: int) -> dict[str, object]:
        return {
            "inputs": done,
            "seed": seed,
            "accepted": counts["ok"],
            "refused": counts["error"],
            "exceptions": crashes,
            "over_1s": slow,
            "worst_cpu_seconds": round(worst, 3),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }

    signal.signal(signal.SIGPROF, _stop)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        populate(folder)
        for n in range(1, inputs + 1):
            text = generate(rng)
            start, cpu = time.perf_counter(), time.process_time()
            stopped = False
            signal.setitimer(signal.ITIMER_PROF, STOP_S)  # CPU time, as SLOW_S counts it
            try:
                counts["ok" if check(text, folder) is None else "error"] += 1
            except Stopped:
                stopped = True
            except Exception as error:  # the point: anything but NetError is a finding
                crashes.append(
                    {
                        "input": text[:KEPT],
                        "error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc()[-2000:],
                    }
                )
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            # CPU seconds: the run is niced on a shared machine, where waiting is not work
            took, wall = time.process_time() - cpu, time.perf_counter() - start
            worst = max(worst, took)
            if took > SLOW_S or stopped:
                slow.append(
                    {
                        "input": text[:KEPT],
                        "cpu_seconds": round(took, 3),
                        "wall": round(wall, 3),
                        **({"stopped": f"after {STOP_S} CPU s"} if stopped else {}),
                    }
                )
            if n % report_every == 0:
                print(
                    f"{n:,} inputs, {len(crashes)} exceptions, {len(slow)} over 1 s, "
                    f"worst {worst:.2f} CPU s, {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                if partial is not None:
                    partial.write_text(json.dumps(figures(n), indent=2) + "\n")
    return figures(inputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures and findings as JSON")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    netdsl.load("lenet5")  # warm: the parser tables load once per process
    result = run(args.inputs, args.seed, partial=args.json)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    crashes, slow = len(result["exceptions"]), len(result["over_1s"])  # type: ignore[arg-type]
    print(
        f"{args.inputs:,} inputs (seed {args.seed}): {result['accepted']:,} accepted, "
        f"{result['refused']:,} refused with NetError, {crashes} other exceptions, "
        f"{slow} over 1 CPU s, worst {result['worst_cpu_seconds']} CPU s, "
        f"{result['wall_seconds']} s in all"
    )
    return 1 if result["exceptions"] or result["over_1s"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
