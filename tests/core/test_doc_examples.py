"""The language reference's examples are nets that compile: every fenced block of
docs/language.md (and the README) that holds an `input` line is parsed as a file, with its
definitions, and must give a net without errors or warnings. Blocks without an input line are
fragments (a chain, a definition) and are left to the tables of test_language.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import netdsl

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INPUT = re.compile(r"^\s*input\s", re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in ("docs/language.md", "README.md"):
        text = (ROOT / doc).read_text("utf-8")
        for match in FENCE.finditer(text):
            block = match.group(1)
            if INPUT.search(block) and "netdsl " not in block and "$ " not in block:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{doc}:{line}", block))
    return found


BLOCKS = _blocks()


def test_the_reference_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", [b for _, b in BLOCKS], ids=[w for w, _ in BLOCKS])
def test_example_compiles(block: str) -> None:
    nets = netdsl.parse_all(block, "example.net")
    assert nets
    for net in nets:
        assert net.warnings == (), [w.render() for w in net.warnings]
