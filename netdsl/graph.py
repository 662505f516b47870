"""The expanded graph: what `expand.py` produces and `shapes.py` consumes.

Definitions are inlined, repetitions unrolled, arguments evaluated; each layer has a structural
name (`stage2.bottleneck1.conv2`), normalised attributes and the trace of how it was reached
(which repetition, which definition call), so errors can say where in the unrolling they happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netdsl.source import Span

MAX_TRACE = 8  # trace notes shown for one error; a deeper path is cut in the middle


@dataclass(frozen=True, slots=True)
class Frame:
    """One step of the path to a layer: a repetition, an iteration or a definition call."""

    text: str  # "repetition 3 of 5", "bottleneck(128, 2)", "c=128"
    span: Span
    key: int = 0  # identifies a repetition instance, so errors can list its sizes so far
    index: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    op: str
    attrs: Mapping[str, Any]
    inputs: tuple[int, ...]
    span: Span
    trace: tuple[Frame, ...] = ()
    shares: str = ""  # a later use of a shared block: the layer whose weights this one uses


@dataclass(frozen=True, slots=True)
class Check:
    """`-> 64x56x56` in the text: the shape layer `layer` must have (all of it, or without the
    channels, as papers' tables give output sizes); `shapes.py` checks it."""

    layer: int
    dims: tuple[int, ...]
    span: Span
    trace: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class Graph:
    """A net with everything evaluated: layer 0 is the (first) input; `output` is the (first)
    output layer. `inputs` lists every input layer, `outputs` every output as (name, layer)."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    output: int
    defaults_used: tuple[str, ...]
    span: Span
    inputs: tuple[int, ...] = (0,)
    outputs: tuple[tuple[str, int], ...] = ()
    checks: tuple[Check, ...] = ()

    @property
    def input_shapes(self) -> dict[int, tuple[int, ...]]:
        """The shape of each input layer, by layer index."""
        return {i: self.layers[i].attrs["shape"] for i in self.inputs}


def trace_notes(trace: tuple[Frame, ...], skip: Frame | None = None) -> list[str]:
    """Innermost first: where a layer was reached from, for error notes (`skip` is a frame
    another note already describes); a path deeper than MAX_TRACE is cut in the middle."""
    notes = [f"{f.text} at {f.span.where}" for f in reversed(trace) if f is not skip]
    if len(notes) > MAX_TRACE:
        head = MAX_TRACE - 2
        notes = [*notes[:head], f"… {len(notes) - head - 1:,} more", notes[-1]]
    return notes
