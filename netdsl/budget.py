"""The work budget of expansion: how much unrolling a net may cost, known before it happens.

Used by `expand.py` between the surface IR and the expanded graph. A `.net` file of a few bytes
can ask for astronomical work (`[[relu*0]*100000]*100000` emits nothing, ten billion times), so
the expander counts two things: layers emitted and steps taken (one per chain node visited, so
empty and failing repetitions cost too). Before a repetition unrolls, `least` gives a lower
bound of what one pass over its body costs, from the text alone (counts that are plain numbers,
list lengths, definition bodies), and the expander refuses a repetition whose count times that
bound exceeds what is left. After the first pass it knows the cost of every pass (a
repetition's passes see the same names) and checks again, so refusing never takes longer than
one pass. Where a definition reads what flows into it (`in.c`), later passes may cost more than
the first; the running counts of layers and steps still stop them at the limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netdsl import ops
from netdsl import syntax as ast
from netdsl.evaluate import evaluate
from netdsl.source import NetError

MAX_LAYERS = 20_000  # layers in one expanded net (checking 20,000 convs takes about 1 s)
MAX_STEPS = 100_000  # chain nodes visited while expanding one net, empty repetitions included
MAX_DEPTH = 150  # chain nodes open at once: definitions in definitions, brackets, repetitions
_CAP = 10**15  # bounds stay small integers however deep the text multiplies


class OverBudget(NetError):
    """The net asks for more work than the budget allows: raised at once, never collected."""


@dataclass(frozen=True, slots=True)
class Cost:
    layers: int
    steps: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(min(_CAP, self.layers + other.layers), min(_CAP, self.steps + other.steps))

    def times(self, n: int) -> Cost:
        return Cost(min(_CAP, self.layers * n), min(_CAP, self.steps * n))


_NOTHING = Cost(0, 0)
_STEP = Cost(0, 1)
_LAYER = Cost(1, 1)


class Estimator:
    """Lower bounds of the cost of chain nodes, memoised per node and per definition."""

    def __init__(self, defs: Mapping[str, ast.Def]) -> None:
        self.defs = defs
        self.nodes: dict[int, Cost] = {}
        self.bodies: dict[str, Cost] = {}
        self.open: set[str] = set()

    def least(self, node: ast.Chain) -> Cost:
        known = self.nodes.get(id(node))
        if known is None:
            known = self.nodes[id(node)] = self._least(node)
        return known

    def _least(self, node: ast.Chain) -> Cost:
        match node:
            case ast.Call(name):
                if name in self.defs:
                    return _STEP + self.body(name)
                if ops.resolve(name) is None or ops.refused(name):
                    return _STEP  # an unknown layer adds nothing; its error is reported
                return Cost(2, 1) if name == "sepconv" else _LAYER
            case ast.Seq(items):
                total = _STEP
                for item in items:
                    total += self.least(item)
                return total
            case ast.Group(body):
                return _STEP + self.least(body)
            case ast.Repeat(body, count):
                return _STEP + self.least(body).times(_constant(count))
            case ast.Comprehension(body, _, values):
                return _STEP + self.least(body).times(len(values.items))
            case ast.Res(body, shortcut):
                extra = self.least(shortcut) if shortcut is not None else _NOTHING
                return _LAYER + self.least(body) + extra
            case ast.Branch(arms):
                total = _LAYER
                for arm in arms:
                    total += self.least(arm)
                return total
            case ast.Dense(body) | ast.Scale(body):
                return _LAYER + self.least(body)
            case ast.Check():
                return _STEP
            case ast.Bundle(arms):  # the merge after it is a call of its own
                total = _STEP
                for arm in arms:
                    total += self.least(arm)
                return total
        raise AssertionError(node)

    def body(self, name: str) -> Cost:
        if name in self.bodies:
            return self.bodies[name]
        if name in self.open or len(self.open) >= MAX_DEPTH:
            # recursion and nesting past MAX_DEPTH are refused when expanding; a lower bound
            # of nothing keeps this walk shallow
            return _NOTHING
        self.open.add(name)
        try:
            cost = self.bodies[name] = self.least(self.defs[name].body)
        finally:
            self.open.discard(name)
        return cost


def _constant(count: ast.Expr) -> int:
    """A count known from the text alone (`*4`, `*(2*8)`), else 0: a lower bound."""
    try:
        value = evaluate(count, {})
    except NetError:
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


__all__ = ["MAX_DEPTH", "MAX_LAYERS", "MAX_STEPS", "Cost", "Estimator"]
