"""Property: whatever text comes in, netdsl answers with a checked net or a `NetError`, never
another exception, and within a second; and an error that has a place in the text always
renders as `file:line:col: error:` with the line and a caret under it.

Inputs are the zoo files (`nets/*.net`), seed texts of our own and the graphs of
bench/fuzz_long.py (named inputs of every rank, shared blocks, merges, `crop(to=)`, several
outputs, the shape layers), mutated by hypothesis:
characters and tokens deleted, inserted and replaced; numbers swapped for zero, negative and
huge ones (huge here means past the limits, which are refused at once; see test_language.py for
nets near the limits and test_errors.py for integers of more than 4,300 digits).
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from bench import fuzz_long
from netdsl.source import MAX_SHOWN, SNIPPET_WIDTH

ROOT = Path(__file__).resolve().parents[2]
# (file name, text): a zoo file keeps its path, so that its imports resolve
ZOO = [(str(p), p.read_text("utf-8")) for p in sorted((ROOT / "nets").glob("*.net"))]
OWN = [
    ("fuzz.net", text)
    for text in [
        "input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n",
        "# comment\nnet a(n=2, c=8):\n  defaults conv.c=4, fc.n=3\n  input 1x28x28\n"
        "  [conv5x5 -> pool(ceil=true)]*n\n"
        "  -> res[conv3x3(4, d=2, p=(2, 2, 2, 2)), shortcut=identity]\n"
        "  -> flatten -> dropout(0.5) -> fc\n",
        "def se(c, r=4) = scale[gap -> fc(c/r) -> relu -> fc(c) -> sigmoid]\n"
        "def blk(c, s=1) = res[conv3x3/s(c) -> bn -> relu -> conv3x3(c) -> bn] -> relu\n"
        "input 8x16x16\ndense[bn -> relu -> conv3x3(4)]*3 -> se(20)\n"
        "-> [blk(c, s) -> blk(c)] for (c, s) in [(16, 1), (32, 2)]\n"
        "-> deconv4x4/2(3, p=1, output_padding=1) -> {conv1x1(3) | avgpool3x3/1(p=1)}+\n"
        "-> {sepconv3x3(4) | dwconv5x5(m=2) | maxpool3x3/1(p=same)}\n"
        "-> lrn(3) -> gmp -> linear(2)\n",
        "net b:\n  input 64\n  fc(32) -> leakyrelu(0.1) -> bn -> tanh -> fc(4*2+1) -> softmax\n"
        "net c(k=3):\n  input 2x9x9\n  conv(4, k, 2, valid) -> conv1x1(k%2 + k/2 - 1)*(k-2)\n",
        "input 16x32x32\nres[conv3x3(16) -> bn] -> {conv1x1(16) | maxpool3x3/1(p=1)}+ -> gap -> fc(4)",
        "def se(c) = scale[gap -> fc(c/4) -> relu -> fc(c) -> sigmoid]\n"
        "input 8x8x8\ndense[bn -> relu -> conv3x3(4)]*3 -> se(20) -> deconv4x4/2(3, p=1)\n",
        "net a(n=2):\n  defaults conv.c=4\n  input 1x28x28\n  [conv5x5 -> pool]*n -> flatten -> fc(10)\n",
        "net g:\n  input a: 1x16x16, b: 1x16x16\n  t = [conv3x3(4) -> relu]\n  ya = a -> t\n"
        "  yb = b -> t -> maxpool2x2 -> upsample(to=ya)\n  output s: [ya, yb -> crop(to=ya)] -> add\n"
        "  output c: [ya, yb] -> concat -> gap -> fc(3)\n  output y: ya\n",
    ]
]
GRAPHS = [("graph.net", text) for text in fuzz_long.GRAPH_SEEDS]
SEEDS = ZOO + OWN + GRAPHS
assert len(ZOO) >= 10, "the zoo files are seeds"

TOKENS = [
    "->",
    "*",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "|",
    "}+",
    ",",
    "=",
    "/",
    "%",
    "-",
    ".",
    ":",
    "\n",
    "\n->",
    "#",
    "\\\n",
    "\t",
    " ",
    "res",
    "dense",
    "scale",
    "shortcut",
    "for",
    "in",
    "def",
    "net",
    "input",
    "defaults",
    "output",
    "y =",
    "a:",
    "[a, b]",
    "to=a",
    "conv1_1:",
    "3x8x8x8",
    'import "x.net"',
    "conv3x3",
    "conv",
    "relu",
    "fc",
    "maxpool",
    "deconv",
    "p=same",
    "p=valid",
    "ceil=true",
    "bias=false",
    "groups=3",
    "s=0",
    "d=2",
    "x",
    "3x8x8",
    "(1, 2)",
    "(1, 2, 3, 4)",
    "1.5",
    "1e308",
    "true",
    "same",
    "c",
    *fuzz_long.INSERTS,  # the graph forms, the other ranks, the shape layers
]
NUMBERS = [
    "0",
    "1",
    "2",
    "7",
    "-1",
    "-7",
    "0-3",
    "100000",
    "2147483647",
    "1" + "0" * 400,
    "1e400",
    "NaN",
    "2147483648",
    "99999999999",
    "1" + "0" * 40,
    "0.5",
    "1e-9",
]
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:x\d+)*|->|\S")
NUMBER = re.compile(r"\d+")


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    name, text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "token", "number"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 16)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.text(max_size=4)) + text[j:]
        else:
            pattern = NUMBER if kind == "number" else WORD
            found = list(pattern.finditer(text))
            if found:
                m = draw(st.sampled_from(found))
                new = draw(st.sampled_from(NUMBERS if kind == "number" else TOKENS))
                text = text[: m.start()] + new + text[m.end() :]
    return name, text


@contextlib.contextmanager
def bounded(seconds: int = 10) -> Iterator[None]:
    """A hang guard, not a speed test: an input fails once it has run `seconds` of CPU time,
    while it runs, so that one that builds something huge (an adaptive pool's 2^31 bins took
    13 GB) is stopped before it takes the machine's memory."""

    def stop(signum: int, frame: object) -> None:
        raise AssertionError(f"took more than {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def check_answer(text: str, name: str = "fuzz.net") -> None:
    """A checked net or a NetError (with well-formed diagnostics), within the hang guard."""
    with bounded():
        try:
            nets = netdsl.parse_all(text, name)
        except netdsl.NetError as error:
            check_render(error)
        else:
            for net in nets:
                check_net(net)


def check_net(net: netdsl.ShapedNet) -> None:
    assert net.nodes[0].op == "input" and net.nodes[0].shape == net.input_shape
    for i, node in enumerate(net.nodes):
        assert all(0 <= j < i for j in node.inputs), node.name
        assert node.shape and all(d >= 1 for d in node.shape), node.name
        assert node.params >= 0 and node.macs >= 0
    assert net.params == sum(n.params for n in net.nodes)
    check_fields(net)
    assert len({n.name for n in net.nodes}) == len(net.nodes), "layer names are unique"
    for warning in net.warnings:
        assert warning.severity == "warning"
        check_diagnostic(warning)


def check_fields(net: netdsl.ShapedNet) -> None:
    """A field per input a node depends on (at least one), in the order of the net's inputs,
    of that input's rank; `rf` is the first."""
    names = net.input_names
    rank = {net.nodes[i].name: len(net.nodes[i].shape) - 1 for i in net.inputs}
    for node in net.nodes:
        assert node.fields, node.name
        assert list(node.fields) == [n for n in names if n in node.fields], node.name
        assert node.rf == next(iter(node.fields.values()))
        assert all(len(f.reach) == len(f.jump) == rank[n] for n, f in node.fields.items())
        for j in node.inputs:  # what a layer's inputs see, it sees
            assert set(net.nodes[j].fields) <= set(node.fields), node.name


CARET = re.compile(r"^  [ \t]*\^+$")


def check_render(error: netdsl.NetError) -> None:
    assert error.diagnostics
    for d in error.diagnostics:
        check_diagnostic(d)
    shown = [d.render() for d in error.diagnostics[:MAX_SHOWN]]
    if len(error.diagnostics) > MAX_SHOWN:
        shown.append(f"… and {len(error.diagnostics) - MAX_SHOWN:,} more errors")
    assert error.render() == "\n".join(shown) == str(error)


def check_diagnostic(d: netdsl.Diagnostic) -> None:
    """With a span: `file:line:col: severity:`, then (when its line holds text) the line and a
    caret starting under the column. Without: `severity: message`."""
    text = d.render()
    assert d.message in text
    if d.span is None:
        assert text.startswith(f"{d.severity}: ")
        return
    span = d.span
    assert span.line >= 1 and span.column >= 1
    assert text.startswith(f"{span.source.name}:{span.line}:{span.column}: {d.severity}: ")
    # the line as lark counts lines (by "\n"), not as Source.lines does
    source_line = span.source.text.split("\n")[span.line - 1].removesuffix("\r")
    if not source_line.strip():
        return
    _, shown, caret = text.split("\n")[:3]
    assert CARET.match(caret), caret
    assert span.column <= len(source_line) + 1
    # characters a terminal acts on print as spaces, so the caret stays under its column
    printable = "".join(c if c == "\t" or c.isprintable() else " " for c in source_line)
    if len(source_line) <= SNIPPET_WIDTH:
        assert shown == "  " + printable
        assert caret.index("^") == 2 + span.column - 1
        return
    # a long line is cut to a window around the caret, marked with … where text is left out
    window = shown[2:]
    left = 2 if window.startswith("… ") else 0
    core = window[left:].removesuffix(" …")
    assert len(core) == SNIPPET_WIDTH and core in printable
    under = caret.index("^") - 2
    if span.column <= len(printable):
        assert window[under] == printable[span.column - 1]


# lark builds (or loads) its parser tables once; keep that out of the first example's time
netdsl.parse("input 1\nfc(1)")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(mutated())
def test_mutated_nets_give_a_net_or_a_net_error(seed: tuple[str, str]) -> None:
    name, text = seed
    check_answer(text, name)


SOUP_HEADS = [
    "input 3x8x8\n",
    "net g:\n  input a: 1x8x8, b: 1x16\n  y = a -> ",
    "net v:\n  input a: 2x4x8x8, b: 2x4x8x8\n  t = [conv3(2)]\n  ",
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(SOUP_HEADS),
    st.lists(st.sampled_from([*TOKENS, *NUMBERS, "a", "b", "b1", "y", "t"]), max_size=40),
)
def test_token_soup_gives_a_net_or_a_net_error(head: str, tokens: list[str]) -> None:
    check_answer(head + " ".join(tokens))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_any_text_gives_a_net_or_a_net_error(text: str) -> None:
    check_answer(text)


# ---- the grammar-aware generator of bench/fuzz_long.py: imports of real and hostile files,
# boundary numbers, nested empty repetitions; every accepted net summarised -------------------

_FOLDER = tempfile.TemporaryDirectory()
fuzz_long.populate(Path(_FOLDER.name))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_generated_files_give_a_net_or_a_net_error(rng: random.Random) -> None:
    text = fuzz_long.generate(rng)
    with bounded():
        error = fuzz_long.check(text, Path(_FOLDER.name))
    if error is not None:
        check_render(error)


def test_a_span_always_renders_a_caret() -> None:
    try:
        netdsl.parse("input 3x8x8\nconv3x3(4) -> nope", "f.net")
    except netdsl.NetError as error:
        lines = error.render().splitlines()
        assert lines[0].startswith("f.net:2:15: error:")
        assert lines[2].strip() == "^^^^"


def test_every_seed_is_a_valid_file() -> None:
    for name, text in SEEDS:
        assert netdsl.parse_all(text, name)


ERRORS_WITH_SPANS = [
    "input 3x8x8\nconv3x3(4) -> nope",
    "input 3x8x8\n\tconv3x3(4,\n\t  p=-1)",
    "input 3x8x8\nconv3x3(4",
    "input 3x8x8\n[[conv3x3(4, p=valid)]*2]*3",
    "def b(c) = conv3x3(c) -> ¿\ninput 3x8x8\nb(4)",
    "input 3x8x8\r\nconv3x3(4) -> rleu\r\n",
]


def test_errors_render_with_file_line_column_and_caret() -> None:
    for text in ERRORS_WITH_SPANS:
        try:
            netdsl.parse(text, "f.net")
        except netdsl.NetError as error:
            assert error.span is not None, text
            check_render(error)
            assert error.render().startswith(f"f.net:{error.span.line}:{error.span.column}: error:")
            assert "^" in error.render().splitlines()[2]
        else:
            raise AssertionError(f"accepted: {text!r}")
