"""The expander's repetitions: `[body]*N` and `[body] for c in [...]`, unrolled within the
work budget.

Part of the third stop of the pipeline (surface IR -> expanded graph): a mixin of
`expand._Expander`, which walks the chains. Before a repetition unrolls, the lower bound of its
body's cost (`budget.Estimator`) times its count must fit in what is left of the budget; after
the first pass the pass's real cost is known and checked again. The mistakes of a first pass
are reported once, for all passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from netdsl import ops
from netdsl import syntax as ast
from netdsl.budget import MAX_LAYERS, MAX_STEPS, Cost, Estimator, OverBudget
from netdsl.evaluate import Env, evaluate
from netdsl.graph import Frame, Layer, trace_notes
from netdsl.source import Diagnostics, NetError

if TYPE_CHECKING:
    from netdsl.expand import _Scope

CHEAP_PASS = 1_000  # steps of a repetition's body small enough to run once before checking


class Repetitions:
    """The repetitions of `_Expander` (see there for the state these methods share)."""

    diagnostics: Diagnostics
    defs: Mapping[str, ast.Def]
    layers: list[Layer]
    steps: int
    keys: itertools.count[int]
    estimate: Estimator

    if TYPE_CHECKING:

        def chain(
            self, node: ast.Chain, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
        ) -> int: ...

    def count(self, node: ast.Repeat, env: Env) -> int:
        value = evaluate(node.count, env)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise NetError(
                f"a repetition count must be a whole number >= 0, got {ops.show(value)}",
                node.count.span,
            )
        if value > MAX_LAYERS and self.estimate.least(node.body).layers:
            raise NetError(
                f"repetition count {value:,} exceeds the limit of {MAX_LAYERS:,} layers per net",
                node.count.span,
            )
        return value

    def repeat(
        self, node: ast.Repeat, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        try:
            n = self.count(node, env)
        except NetError as error:
            self.diagnostics.extend(error)
            return x
        least = self.estimate.least(node.body)
        # A cheap body runs once before the steps are checked, so that a mistake in it is
        # reported (once) rather than drowned by the budget; the layers are checked at once.
        cheap = least.steps <= CHEAP_PASS
        self.afford(node, n, Cost(least.layers, 0) if cheap else least, "at least", trace)
        key = next(self.keys)
        for i in range(n):
            frame = Frame(f"repetition {i + 1} of {n}", node.span, key, i + 1, n)
            inner = scope.child("block") if isinstance(node.body, ast.Group) else scope
            before = (len(self.layers), self.steps, len(self.diagnostics.items))
            x = self.chain(node.body, x, env, inner, (*trace, frame))
            if i == 0 and n > 1:
                # every pass sees the same names, so it fails and costs as the first one did
                if len(self.diagnostics.items) > before[2]:
                    self.every_pass(before[2], frame, n)
                    return x
                first = Cost(len(self.layers) - before[0], self.steps - before[1])
                self.afford(node, n - 1, first, "exactly", trace)
        return x

    def afford(
        self, node: ast.Repeat, n: int, each: Cost, how: str, trace: tuple[Frame, ...]
    ) -> None:
        """Refuse `n` more passes of `each` if they cannot fit in what is left of the budget."""
        layers_left = MAX_LAYERS - len(self.layers)
        steps_left = MAX_STEPS - self.steps
        if each.layers * n > layers_left:
            what = f"the net expands to more than {MAX_LAYERS:,} layers"
            cost = f"{each.layers:,} layer{'s' if each.layers > 1 else ''}"
        elif each.steps * n > steps_left:
            what = f"the net takes more than {MAX_STEPS:,} steps to expand"
            cost = f"{each.steps:,} steps (every pass costs, even one that adds no layer)"
        else:
            return
        raise OverBudget(
            what, node.span, [f"{n:,} passes of {how} {cost} each", *trace_notes(trace)]
        )

    def every_pass(self, start: int, frame: Frame, n: int) -> None:
        """Say once that the errors of a repetition's first pass happen in all its passes."""
        first = f"{frame.text} at {frame.span.where}"
        every = f"in repetitions 1–{n:,} of {n:,} at {frame.span.where}"
        items = self.diagnostics.items
        for k in range(start, len(items)):
            d = items[k]
            notes = tuple(every if note == first else note for note in d.notes)
            items[k] = type(d)(d.message, d.span, notes, d.severity)

    def comprehension(
        self, node: ast.Comprehension, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
    ) -> int:
        try:
            values = evaluate(node.values, env)
            bindings = [self.bind_targets(node, value) for value in values]
        except NetError as error:
            self.diagnostics.extend(error)
            return x
        self.afford_items(node, len(bindings), trace)
        key = next(self.keys)
        for i, binding in enumerate(bindings):
            text = ", ".join(f"{k}={ops.show(v)}" for k, v in binding.items())
            frame = Frame(
                f"item {i + 1} of {len(bindings)} ({text})", node.span, key, i + 1, len(bindings)
            )
            inner = scope.child("stage")
            inner.adopt = isinstance(node.body, ast.Call) and node.body.name in self.defs
            x = self.chain(node.body, x, {**env, **binding}, inner, (*trace, frame))
        return x

    def afford_items(self, node: ast.Comprehension, n: int, trace: tuple[Frame, ...]) -> None:
        each = self.estimate.least(node.body)
        if each.layers * n > MAX_LAYERS - len(self.layers) or each.steps * n > (
            MAX_STEPS - self.steps
        ):
            raise OverBudget(
                f"the net expands to more than {MAX_LAYERS:,} layers or takes more than "
                f"{MAX_STEPS:,} steps",
                node.span,
                [f"{n:,} items of at least {each.layers:,} layers each", *trace_notes(trace)],
            )

    @staticmethod
    def bind_targets(node: ast.Comprehension, value: Any) -> dict[str, Any]:
        if len(node.targets) == 1:
            return {node.targets[0]: value}
        if not isinstance(value, tuple) or len(value) != len(node.targets):
            raise NetError(
                f"cannot unpack {ops.show(value)} into ({', '.join(node.targets)})",
                node.values.span,
            )
        return dict(zip(node.targets, value, strict=True))
