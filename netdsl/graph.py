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

    @property
    def input_shapes(self) -> dict[int, tuple[int, ...]]:
        """The shape of each input layer, by layer index."""
        return {i: self.layers[i].attrs["shape"] for i in self.inputs}
