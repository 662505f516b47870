"""Property: whatever text comes in, netdsl answers with a checked net or a `NetError` that
points at the text, never another exception, and within a second.

Inputs are the zoo files and a few seed texts, mutated by hypothesis: characters and tokens
deleted, inserted, replaced, numbers swapped for huge, zero or negative ones.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [p.read_text() for p in sorted((ROOT / "nets").glob("*.net"))] + [
    "input 3x224x224\n[[conv3x3 -> relu]*2 -> pool]*5 -> fc*3\n",
    "input 16x32x32\nres[conv3x3(16) -> bn] -> {conv1x1(8) | maxpool3x3/1(p=1)}+ -> gap -> fc(4)",
    "def se(c) = scale[gap -> fc(c/4) -> relu -> fc(c) -> sigmoid]\n"
    "input 8x8x8\ndense[bn -> relu -> conv3x3(4)]*3 -> se(20) -> deconv4x4/2(3, p=1)\n",
    "net a(n=2):\n  defaults conv.c=4\n  input 1x28x28\n"
    "  [conv5x5 -> pool]*n -> flatten -> fc(10)\n",
]
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
    "+",
    ",",
    "=",
    "/",
    "res",
    "dense",
    "scale",
    "for",
    "in",
    "def",
    "net",
    "input",
    "\n",
    "#",
    "conv3x3",
    "0",
    "-1",
    "99999999999",
    "2147483648",
    "1e308",
    "x",
    "same",
    ":",
    'import "x.net"',
]
NUMBER = re.compile(r"\d+")


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "number"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 12)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.text(max_size=4)) + text[j:]
        else:
            numbers = list(NUMBER.finditer(text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                value = draw(st.sampled_from(["0", "1", "99999999999", "2147483648", "7"]))
                text = text[: m.start()] + value + text[m.end() :]
    return text


def check(text: str) -> None:
    start = time.perf_counter()
    try:
        netdsl.parse_all(text, "fuzz.net")
    except netdsl.NetError as error:
        rendered = error.render()
        assert rendered.startswith(("fuzz.net:", "error:", "<string>")), rendered
        for d in error.diagnostics:
            if d.span is not None:
                assert d.span.line >= 1 and d.span.column >= 1
    assert time.perf_counter() - start < 1.0, f"took {time.perf_counter() - start:.2f} s"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_nets_give_a_net_or_a_net_error(text: str) -> None:
    check(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([*TOKENS, " ", "a", "1", "3x8x8"]), max_size=30))
def test_token_soup_gives_a_net_or_a_net_error(tokens: list[str]) -> None:
    check("input 3x8x8\n" + " ".join(tokens))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_net_or_a_net_error(text: str) -> None:
    check(text)


def test_a_span_always_renders_a_caret() -> None:
    try:
        netdsl.parse("input 3x8x8\nconv3x3(4) -> nope", "f.net")
    except netdsl.NetError as error:
        lines = error.render().splitlines()
        assert lines[0].startswith("f.net:2:15: error:")
        assert lines[2].strip() == "^^^^"
