"""The expander's graph forms: merges of listed tensors, references to named tensors, uses of
shared blocks, layers named in the text, and layers sized by another tensor.

Part of the third stop of the pipeline (surface IR -> expanded graph): a mixin of
`expand._Expander`, which walks the chains; `graph_statements.py` walks the lines of a net's
body that name tensors, blocks and outputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from netdsl import syntax as ast
from netdsl.evaluate import Env
from netdsl.graph import Frame, trace_notes
from netdsl.source import Diagnostics, NetError, Span

if TYPE_CHECKING:
    from netdsl.expand import _Scope

MERGES = ("concat", "add", "mul", "mean", "sub")  # what may follow `[a, b]`
ARITY = {"mul": ("a map and its gate", 2), "sub": ("a - b", 2)}  # merges of exactly 2 tensors
SIZED_BY = {"crop": "size", "upsample": "f"}  # layers that can take another tensor's sizes
NOTHING = -1  # no tensor flows in yet (a line of a net with several inputs)
FAILED = -2  # what flowed in failed; its error is reported, later layers stay silent


class GraphCalls:
    """The graph forms of `_Expander` (see there for the state these methods share)."""

    diagnostics: Diagnostics
    tensors: dict[str, int]
    blocks: dict[str, ast.Assign]
    uses: Counter[str]
    sharing: list[tuple[str, str]]
    calls: list[str]
    env: Env
    labels: dict[str, Span]

    if TYPE_CHECKING:

        def chain(
            self, node: ast.Chain, x: int, env: Env, scope: _Scope, trace: tuple[Frame, ...]
        ) -> int: ...

        def emit(
            self,
            name: str,
            op: str,
            attrs: dict[str, Any],
            inputs: tuple[int, ...],
            span: Span,
            trace: tuple[Frame, ...],
        ) -> int: ...

    def merge(
        self,
        bundle: ast.Bundle,
        after: ast.Chain | None,
        x: int,
        env: Env,
        scope: _Scope,
        trace: tuple[Frame, ...],
    ) -> int:
        """`[a, b] -> concat`: the arms side by side, then the merge that must follow them."""
        outs = tuple(self.chain(arm, x, env, scope, trace) for arm in bundle.arms)
        merges = ", ".join(f"-> {m}" for m in MERGES)
        if not isinstance(after, ast.Call) or after.name not in MERGES:
            where = after.span if after is not None else bundle.span
            self.diagnostics.error(
                f"{len(outs)} tensors side by side must be merged next ({merges})",
                where,
                [f"the tensors are listed at {bundle.span.where}", *trace_notes(trace)],
            )
            return FAILED
        if after.args or after.stride is not None:
            self.diagnostics.error(f"the merge '{after.name}' takes no arguments", after.span)
            return FAILED
        what, count = ARITY.get(after.name, ("", len(outs)))
        if len(outs) != count:
            self.diagnostics.error(
                f"'{after.name}' takes exactly {count} tensors ({what}), got {len(outs)}",
                after.span,
                [f"the tensors are listed at {bundle.span.where}", *trace_notes(trace)],
            )
            return FAILED
        attrs: dict[str, Any] = {"auto": False} if after.name == "add" else {"listed": True}
        return self.emit(scope.name(after.name), after.name, attrs, outs, after.span, trace)

    def reference(self, node: ast.Call) -> int:
        if node.args or node.stride is not None:
            raise NetError(f"'{node.name}' is a named tensor; it takes no arguments", node.span)
        return self.tensors[node.name]

    def call_block(
        self, node: ast.Call, block: ast.Assign, x: int, trace: tuple[Frame, ...]
    ) -> int:
        """A use of a shared block: the first names its layers `tower.conv1`, the k-th
        `tower@k.conv1`, which share the weights of the first (`Layer.shares`)."""
        if node.args or node.stride is not None:
            raise NetError(
                f"'{node.name}' is a shared block; it takes no arguments "
                "(a def makes a layer with parameters, and fresh weights at each use)",
                node.span,
            )
        if node.name in self.calls:
            raise NetError(f"'{node.name}' uses itself; blocks cannot recurse", node.name_span)
        self.uses[node.name] += 1
        k = self.uses[node.name]
        prefix = f"{node.name}." if k == 1 else f"{node.name}@{k}."
        if k > 1:
            self.sharing.append((prefix, f"{node.name}."))
        self.calls.append(node.name)
        frame = Frame(f"in block {node.name} (use {k}), used", node.span)
        try:
            from netdsl.expand import _Scope

            return self.chain(block.chain, x, self.env, _Scope(prefix), (*trace, frame))
        finally:
            self.calls.pop()
            if k > 1:
                self.sharing.pop()

    def labelled(self, node: ast.Call, scope: _Scope) -> str:
        """`conv1_1: conv3x3(64)`: the layer (or a definition's scope) takes the paper's name,
        once per net (a labelled layer inside a repetition would repeat it)."""
        assert node.label is not None and node.label_span is not None
        name = scope.prefix + node.label
        if name in self.labels:
            first = self.labels[name]
            raise NetError(
                f"the layer name '{name}' is given twice",
                node.label_span,
                [
                    f"first given at {first.where}",
                    "a name inside a repetition is given once per pass",
                ],
            )
        self.labels[name] = node.label_span
        return name

    def target(self, node: ast.Call, op: str) -> tuple[ast.Call, tuple[str, int] | None]:
        """`crop(to=skip)`, `upsample(to=skip)`: the tensor whose sizes the layer takes, and
        the call without that argument (its sizes, given a stand-in, are set in shapes.py)."""
        to = next((a for a in node.args if a.name == "to"), None)
        if to is None or op not in SIZED_BY:
            return node, None
        if not isinstance(to.value, ast.Var) or to.value.name not in self.tensors:
            raise NetError(
                f"'{node.name}(to=...)' takes the name of a tensor",
                to.span,
                [f"named so far: {', '.join(self.tensors) or 'none'}"],
            )
        if any(a.name == SIZED_BY[op] for a in node.args):
            raise NetError(f"give '{node.name}' either to= or {SIZED_BY[op]}=, not both", to.span)
        stand_in = ast.Arg(SIZED_BY[op], ast.Int(1, to.span), to.span)
        args = tuple(stand_in if a is to else a for a in node.args)
        call = replace(node, args=args)
        return call, (to.value.name, self.tensors[to.value.name])
