"""Per-layer learning rates: a multiplier of the learning rate for the tensors a pattern matches.

Beside the training loop (`loop.py`), for fine-tuning as the lectures teach it: a lower rate for
the pretrained trunk than for the new head (`lr_mult=("features.*=0.1",)`). Both optimizers'
updates are proportional to the learning rate (SGD: lr times the velocity, which itself does not
depend on lr, as in PyTorch; AdamW: lr times the Adam step plus lr times the decoupled weight
decay), so a tensor trained at `mult` times the rate moves by `mult` times the change the shared
rate gives: p' = p + mult (p_next - p). That is what `scale_model` adds to the native engine's
step model after each scaled tensor's update (the rate stays one scalar input), and what
`scale_in_place` does to the onnxruntime-training engine's numpy update. The result is PyTorch's
per-parameter-group learning rate, up to float rounding.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from netdsl.source import NetError


def parse(rules: Sequence[str]) -> list[tuple[str, float]]:
    """'PATTERN=MULT' rules as (pattern, multiplier); the multiplier a finite number >= 0."""
    parsed = []
    for rule in rules:
        pattern, sep, value = str(rule).rpartition("=")
        try:
            mult = float(value)
        except ValueError:
            mult = math.nan
        if not sep or not pattern or not math.isfinite(mult) or mult < 0:
            raise NetError(
                f"learning-rate multiplier '{rule}' is not PATTERN=MULT with MULT a finite "
                "number >= 0 (e.g. 'features.*=0.1')"
            )
        parsed.append((pattern, mult))
    return parsed


def multipliers(rules: Sequence[str], trainable: Iterable[str]) -> dict[str, float]:
    """Each trainable tensor's multiplier other than 1 (the first rule that matches it wins);
    a rule that matches no trainable tensor is a mistake."""
    names = list(trainable)
    found: dict[str, float] = {}
    for pattern, mult in parse(rules):
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise NetError(
                f"learning-rate pattern '{pattern}' matches no trainable tensor",
                None,
                [f"the trainable tensors are named like {', '.join(names[:4])}"],
            )
        for name in hits:
            found.setdefault(name, mult)
    return {n: m for n, m in found.items() if m != 1.0}


def scale_model(model: object, updates: Mapping[str, str], mults: Mapping[str, float]) -> None:
    """In the step model (in place): each scaled tensor's next value p + mult (next - p)."""
    from onnx import helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    producers = {out: node for node in graph.node for out in node.output}
    added = []
    for name, mult in mults.items():
        final = updates[name]
        raw = f"{final}.unscaled"
        node = producers[final]
        node.output[:] = [raw if o == final else o for o in node.output]
        k = f"{name}.lr_mult"
        graph.initializer.append(numpy_helper.from_array(np.array(mult, np.float32), k))
        added += [
            helper.make_node("Sub", [raw, name], [f"{name}.change"]),
            helper.make_node("Mul", [f"{name}.change", k], [f"{name}.scaled_change"]),
            helper.make_node("Add", [name, f"{name}.scaled_change"], [final]),
        ]
    graph.node.extend(added)  # after every producer: still in topological order


def scale_in_place(
    params: Mapping[str, np.ndarray], before: Mapping[str, np.ndarray], mults: Mapping[str, float]
) -> None:
    """After a numpy update: each scaled tensor moved by `mult` times its change, in place."""
    for name, mult in mults.items():
        p = params[name]
        p -= before[name]
        p *= np.float32(mult)
        p += before[name]
