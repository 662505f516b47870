"""Golden summaries: for every zoo net, the summary table as committed in tests/golden/.

A change in any count, shape, name or receptive field shows up here as a diff to review.
Regenerate on purpose with `NETDSL_REGEN=1 pytest tests/test_golden.py` and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import netdsl
from netdsl.summary import table
from netdsl.zoo import entries

GOLDEN = Path(__file__).parent / "golden"
NETS = [e.name for e in entries()]


@pytest.mark.parametrize("name", NETS)
def test_summary_matches_golden(name: str) -> None:
    text = table(netdsl.load(name)) + "\n"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("NETDSL_REGEN"):
        path.write_text(text)
    assert path.exists(), f"no golden summary for {name}: run NETDSL_REGEN=1 pytest {__file__}"
    assert text == path.read_text()


def test_no_stale_goldens() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(NETS)
