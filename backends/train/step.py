"""Shaped net -> one ONNX model that is a whole training step: forward, loss, backward, update.

The compiler's own training backend, beside `backends/onnx/emit.py` (whose emitters write the
forward part) and before `native.py` (which runs the model). Design: the forward graph is the
one the emitters write, and the backward graph is derived from it node by node by
`reverse.backward` with the rules in `grad.GRADIENTS` (one per ONNX op type), so forward and
backward cannot disagree and every net op is covered through the ONNX ops its emitter writes.
Two ops take their training form: batch norm normalises with the batch's statistics (computed
by ReduceMean nodes and fed to a BatchNormalization; they also update the running statistics
by PyTorch's rule, unbiased variance); dropout multiplies by a mask fed as an input (0 or
1/(1-p), drawn by the caller from a seeded generator, so runs are reproducible and resumable).
A trailing softmax is folded into the loss, softmax cross-entropy from logits (with label
smoothing). The optimizer (`update.py`) closes the graph. Everything is standard ONNX (opset
17), so any onnxruntime, CPU or CUDA, trains the net, and Netron shows the whole step.

Inputs: `input` (a net of several inputs: each by its name), `labels` (int64), dropout masks,
the parameters, the optimizer state (`<param>.<slot>`), the running statistics, `lr` (float) and
`step` (int64, steps done). Outputs: `loss`, `correct` (int64), then `<name>.next` for each
updated tensor, and optionally `<input>.grad`. Nets that are graphs: the loss is on one chosen
output and the step holds only the layers it depends on; a shared block's tensors are one input
each (the gradients of its uses sum), and a shared batch norm updates its running statistics
once per use, in order, as a PyTorch module called twice does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netdsl.backends.data import atomic
from netdsl.backends.onnx import emit
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import graph as lowered
from netdsl.backends.train.grad import GRADIENTS
from netdsl.backends.train.reverse import Grad, backward, constants, shapes_of
from netdsl.backends.train.update import Optimizer, scalars, update
from netdsl.shapes import Node, ShapedNet
from netdsl.source import NetError

OPSET = 17
LOGITS = "logits"


@dataclass(frozen=True)
class TrainingStep:
    """The step model and how its tensors pair up: `updates` maps each input that the step
    rewrites to the output holding its next value (so a runner can swap the two)."""

    model: onnx.ModelProto
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    state: tuple[str, ...]
    stats: tuple[lowered.BatchStats, ...]
    masks: tuple[lowered.Mask, ...]
    updates: dict[str, str] = field(default_factory=dict)
    classes: int = 0
    optimizer: Optimizer = field(default_factory=Optimizer)
    inputs: tuple[str, ...] = ("input",)  # the batch's inputs: `input`, or the net's names
    output: str = "output"  # the net's output the loss is on

    def initial_state(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor input but the batch, labels, masks, lr and step: the parameters and
        running statistics from `params`, the optimizer state at zero."""
        arrays = {n: np.ascontiguousarray(params[n], np.float32) for n in self.tensors()}
        for name in self.state:
            owner = name.rsplit(".", 1)[0]
            arrays[name] = np.zeros_like(arrays[owner])
        return arrays

    def tensors(self) -> list[str]:
        """Parameters and running statistics, in input order."""
        running = dict.fromkeys(t for s in self.stats for t in s.running)  # shared: once
        return [*self.trainable, *self.frozen, *running]


def to_training_step(
    net: ShapedNet,
    optimizer: Optimizer | str = "sgd",
    *,
    params: Mapping[str, np.ndarray] | None = None,
    frozen: Iterable[str] = (),
    frozen_stats: Iterable[str] = (),
    label_smoothing: float = 0.0,
    input_grad: bool = False,
    defaults: bool = False,
    loss_output: str | None = None,
) -> TrainingStep:
    """The training step of `net` (see the module's docstring). `params` gives the tensors'
    shapes (fresh ones are drawn where None); `frozen` names parameters kept fixed,
    `frozen_stats` running statistics kept fixed; `input_grad` adds the gradient w.r.t. each
    input as the output `<input>.grad`; `defaults` stores `params` and a zero optimizer state
    in the model as the default values of those inputs (a file that trains as it stands);
    `loss_output` names the output the loss is on (needed where the net has several; the
    layers only other outputs depend on are left out of the step). A shared block's tensors
    are one input each: the gradients of all its uses sum."""
    opt = Optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    if not 0.0 <= label_smoothing < 1.0:
        raise NetError(f"label smoothing must lie in [0, 1), got {label_smoothing}")
    classes = check_trainable(net, loss_output)
    out_name, out_index = lowered.chosen_output(net, loss_output)
    params = dict(params) if params is not None else wt.initialise(net, "auto", 0)
    frozen_set, fixed_stats = set(frozen), set(frozen_stats)
    e = emit.Emitter(net, dict(params), "train")
    table = {**emit.EMITTERS, "bn": _bn, "dropout": lowered.dropout}
    logits = lowered.emit_logits(e, table, out_index)
    needed = lowered.ancestors(net, out_index)
    kept = [n for i, n in enumerate(net.nodes) if i in needed]
    stats = tuple(lowered._stats(n) for n in kept if n.op == "bn")
    masks = tuple(
        lowered.Mask(n.name, f"{n.name}.mask", n.shape, float(n.attrs["p"]))
        for n in kept
        if n.op == "dropout"
    )
    used = {name for n in e.nodes for name in n.input}
    weights = [n for n in params if n in used]
    trainable = tuple(n for n in weights if _is_trainable(net, n) and n not in frozen_set)
    fixed = tuple(n for n in weights if n not in trainable and not _is_stat(n, stats))
    if not trainable:
        raise NetError(f"nothing of {net.name} is left to train")
    names = lowered.input_names(net)
    shapes_in = [net.nodes[i].shape for i in net.inputs]
    batch = [
        _value(n, TensorProto.FLOAT, ["N", *shape])
        for n, shape in zip(names, shapes_in, strict=True)
    ]
    inputs = [_value(m.input, TensorProto.FLOAT, ["N", *m.shape]) for m in masks]
    inputs += [_value(n, TensorProto.FLOAT, params[n].shape) for n in (*trainable, *fixed)]
    channels = {t: s.channels for s in stats for t in s.running}  # a shared norm's: once
    stat_inputs = [_value(t, TensorProto.FLOAT, [c]) for t, c in channels.items()]
    forward = helper.make_graph(
        e.nodes,
        net.name,
        [*batch, *inputs, *stat_inputs],
        [_value(logits, TensorProto.FLOAT, ["N", classes])],
    )
    shapes = shapes_of(_model(forward))
    g = Grad(shapes, constants(e.nodes))
    labels = _value("labels", TensorProto.INT64, ["N"])
    seed = _loss(g, logits, classes, label_smoothing)
    wrt = [*trainable, *(names if input_grad else [])]
    grads = backward(g, e.nodes, {logits: seed}, wrt, GRADIENTS)
    lr = _value("lr", TensorProto.FLOAT, [])
    step_in = _value("step", TensorProto.INT64, [])
    k = scalars(g, opt, "lr", "step")
    outputs = [_value("loss", TensorProto.FLOAT, []), _value("correct", TensorProto.INT64, [])]
    state_inputs, updates = [], {}
    g.prefix = "update"
    for name in trainable:
        slots = [f"{name}.{s}" for s in opt.slots()]
        state_inputs += slots
        new, new_state = update(g, opt, name, grads[name], slots, k)
        for old, value in zip([name, *slots], [new, *new_state], strict=True):
            updates[old] = _output(g, value, f"{old}.next")
            outputs.append(_value(updates[old], TensorProto.FLOAT, params[name].shape))
    running: dict[str, str] = {}  # running statistic -> its latest value
    for s in stats:  # a shared norm updates its statistics once per use, in order, as PyTorch
        for old, now in zip(s.running, (s.mean, s.var), strict=True):
            if old not in fixed_stats:
                value = running.get(old, old)
                running[old] = _running_update(g, s, value, now, old.endswith(".var"))
    for old, value in running.items():
        updates[old] = _output(g, value, f"{old}.next")
        outputs.append(_value(updates[old], TensorProto.FLOAT, [channels[old]]))
    if input_grad:
        for name in names:
            grad = _output(g, grads[name], f"{name}.grad")
            outputs.append(_value(grad, TensorProto.FLOAT, shapes[name]))
    state_values = [
        _value(n, TensorProto.FLOAT, params[n.rsplit(".", 1)[0]].shape) for n in state_inputs
    ]
    graph = helper.make_graph(
        [*e.nodes, *g.finish()],
        f"{net.name}_training_step",
        [*batch, labels, *inputs, *state_values, *stat_inputs, lr, step_in],
        outputs,
        g.initializers,
    )
    result = TrainingStep(
        _model(graph),
        trainable,
        fixed,
        tuple(state_inputs),
        stats,
        masks,
        updates,
        classes,
        opt,
        names,
        out_name,
    )
    if defaults:  # initializers named like inputs are those inputs' default values
        for name, array in result.initial_state(params).items():
            result.model.graph.initializer.append(numpy_helper.from_array(array, name))
    return result


def write_training_step(
    net: ShapedNet,
    path: str | Path,
    optimizer: Optimizer | str = "sgd",
    *,
    init: str = "auto",
    seed: int = 0,
    weights: str | Path | Mapping[str, np.ndarray] | None = None,
    skip_mismatched: bool = False,
    label_smoothing: float = 0.0,
    input_grad: bool = False,
    loss_output: str | None = None,
) -> TrainingStep:
    """`to_training_step` with fresh weights (`init`, `seed`) or those of a file (`weights`,
    matched by name; `skip_mismatched` keeps fresh ones where shapes differ) stored as the
    inputs' defaults, written atomically to `path`: the file trains as it stands. The loss is
    on `loss_output` (the only output when None)."""
    params = wt.initialise(net, init, seed)
    if weights is not None:
        params, _ = wt.merge(params, weights, skip_mismatched=skip_mismatched)
    step = to_training_step(
        net,
        optimizer,
        params=params,
        label_smoothing=label_smoothing,
        input_grad=input_grad,
        defaults=True,
        loss_output=loss_output,
    )
    atomic.write(path, step.model.SerializeToString())
    return step


# ops whose gradient rules are checked on images (N x C x H x W) only: refused on signals and
# volumes (the convolutions, poolings and batch norm train at every rank; batch norm on vectors
# too)
IMAGE_ONLY = frozenset({"local", "adaptiveavgpool", "adaptivemaxpool", "upsample"})


def check_trainable(net: ShapedNet, loss_output: str | None = None) -> int:
    """Refuse a net the step cannot train (every op has gradient rules, so only a net whose
    output the loss is on, `loss_output` or the only one, is not a vector of class scores);
    return the number of classes."""
    name, index = lowered.chosen_output(net, loss_output)
    needed = lowered.ancestors(net, index)
    for i, node in enumerate(net.nodes):  # a few ops' gradients are checked on images only
        if i not in needed:
            continue
        shape = net.nodes[node.inputs[0]].shape if node.inputs else node.shape
        if node.op in IMAGE_ONLY and len(shape) != 3:
            raise NetError(
                f"a training step cannot train {node.name} ({node.op}) yet: its input "
                f"{'x'.join(map(str, shape))} has {len(shape) - 1} spatial axes, and the "
                f"gradient of {node.op} is checked on 2-D images (C x H x W) only",
                node.span,
            )
    out = net.nodes[index]
    if len(out.shape) != 1 or out.shape[0] < 2:
        which = f"its output '{name}'" if len(net.output_list) > 1 else "its output"
        raise NetError(
            f"a training step needs a classifier: the loss of {net.name} is on {which}, which "
            f"must be a vector of at least 2 class scores, got {'x'.join(map(str, out.shape))}",
            out.span,
        )
    merged = [net.nodes[j] for j in out.inputs]  # a merge of several softmaxes: late fusion
    if len(merged) > 1 and all(n.op == "softmax" for n in merged):
        raise NetError(
            f"a training step takes class scores (logits) at the output its loss is on, but "
            f"{out.name} combines the probabilities of {', '.join(n.name for n in merged)}: "
            "the cross-entropy would take them for scores",
            out.span,
            ["merge the scores before one softmax, or train each branch as a net of its own"],
        )
    return out.shape[0]


def _bn(e: emit.Emitter, node: Node, xs: list[str]) -> str:
    """The batch's mean and biased variance per channel (`<bn>.batch_mean`, `.batch_var`, also
    read by the running statistics' update), fed to a BatchNormalization in inference form:
    the gradient reaches x through the statistics too. (Not ONNX's training mode: onnxruntime
    writes that form's running statistics into its input buffers.)"""
    n, axes = node.name, [0, *range(2, len(node.shape) + 1)]  # all but the channels
    mean = e.add("ReduceMean", xs, [f"{n}.mu"], ".mu", axes=axes, keepdims=1)
    centred = e.add("Sub", [xs[0], mean], [f"{n}.centred"], ".centred")
    square = e.add("Mul", [centred, centred], [f"{n}.square"], ".square")
    var = e.add("ReduceMean", [square], [f"{n}.sigma2"], ".sigma2", axes=axes, keepdims=1)
    channels = e.const(".channels", np.array([node.shape[0]], dtype=np.int64))
    e.add("Reshape", [mean, channels], [f"{n}.batch_mean"], ".batch_mean")
    e.add("Reshape", [var, channels], [f"{n}.batch_var"], ".batch_var")
    stats = [f"{n}.batch_mean", f"{n}.batch_var"]
    inputs = [xs[0], e.weight("scale"), e.weight("bias"), *stats]
    return e.add("BatchNormalization", inputs, epsilon=float(node.attrs["eps"]))


def _loss(g: Grad, logits: str, classes: int, smoothing: float) -> str:
    """Mean softmax cross-entropy against targets (1 - e) onehot + e/K as `loss`, the count of
    right answers as `correct`; returns the gradient of the loss w.r.t. the logits,
    (softmax - target) / N."""
    g.prefix = "loss"
    log_p = g.add("LogSoftmax", [logits], axis=1)
    values = g.const([smoothing / classes, 1.0 - smoothing + smoothing / classes])
    target = g.add("OneHot", ["labels", g.ints(classes), values], axis=1)
    picked = g.add("ReduceSum", [g.add("Mul", [target, log_p]), g.ints(1)], keepdims=0)
    g.add("Neg", [g.add("ReduceMean", [picked], keepdims=0)])
    g.nodes[-1].output[0] = "loss"
    hits = g.add("Equal", [g.add("ArgMax", [logits], axis=1, keepdims=0), "labels"])
    g.add("ReduceSum", [g.add("Cast", [hits], to=TensorProto.INT64)], keepdims=0)
    g.nodes[-1].output[0] = "correct"
    size = g.add("Cast", [g.add("Shape", ["labels"])], to=TensorProto.FLOAT)
    diff = g.add("Sub", [g.add("Exp", [log_p]), target])
    return g.add("Div", [diff, size])


def _is_stat(name: str, stats: tuple[lowered.BatchStats, ...]) -> bool:
    return any(name in s.running for s in stats)


def _is_trainable(net: ShapedNet, name: str) -> bool:
    layer, weight = name.rsplit(".", 1)
    return any(
        n.name == layer and w.name == weight and w.trainable for n in net.nodes for w in n.weights
    )


def _running_update(g: Grad, s: lowered.BatchStats, old: str, batch: str, variance: bool) -> str:
    """PyTorch's running statistics: (1 - m) running + m batch, the variance made unbiased."""
    if variance:
        count = g.count_of(f"{s.layer}.centred", batch)
        minus = g.add("Max", [g.add("Sub", [count, g.const(1.0)]), g.const(1.0)])
        batch = g.add("Mul", [batch, g.add("Div", [count, minus])])
    kept = g.add("Mul", [old, g.const(1.0 - s.momentum)])
    return g.add("Add", [kept, g.add("Mul", [batch, g.const(s.momentum)])])


def _output(g: Grad, tensor: str, name: str) -> str:
    return g.rename(tensor, name)


def _value(name: str, kind: int, shape: Iterable[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, list(shape))


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netdsl"
    )
    model.ir_version = emit.IR_VERSION
    return model
