"""Shaped net -> ONNX model: the last stop of the pipeline.

`emit` (and `to_onnx`, its model alone) walks the nodes of a `ShapedNet` in order and calls, for
each, its op's emitter from `EMITTERS` (in `layers.py`, re-exported here), then assembles the
graph: the input `input` [N, C, H, W], the output `output`, the initializers (`layer.weight`,
`layer.bias`, ..., from `weights.py`, batch norms folded by `passes/fold_bn.py` on request) and
the model's metadata. Names follow the net's structure, and every node's doc_string points at
the `.net` text it came from, so a layer named in an onnxruntime error is found at once. `emit`
also returns that map (ONNX node name -> `Span`), through which later stages report their
problems as `Diagnostic`s; `locate` and `layer_spans` read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from netdsl.backends.onnx import names as twins
from netdsl.backends.onnx import weights as wt
from netdsl.backends.onnx.layers import EMITTERS as EMITTERS
from netdsl.backends.onnx.layers import Emit as Emit
from netdsl.backends.onnx.layers import Emitter as Emitter
from netdsl.backends.passes import fold_bn as folding
from netdsl.backends.passes import normalise
from netdsl.shapes import ShapedNet
from netdsl.source import NetError, Span

IR_VERSION = 8  # onnxruntime 1.19 and TensorRT 10 read IR <= 10; opset 17 needs IR 8
OPSETS = range(13, 18)  # Unsqueeze/Dropout take their axes and ratio as inputs from 13 on
MODES = ("train", "inference")


# ---- the model -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Emitted:
    """An emitted model and where each of its nodes came from: ONNX node name -> the `Span` of
    the layer's text. Later stages locate their problems through `spans` (see `locate`); the
    doc_strings say the same for people reading the model in Netron."""

    model: onnx.ModelProto
    spans: Mapping[str, Span]


def locate(spans: Mapping[str, Span], name: str) -> Span | None:
    """The span of the ONNX node `name`, or of the layer a pass's node was made for: passes
    name their nodes after a layer or tensor plus a suffix (`conv1.cast_in0`)."""
    while name:
        if name in spans:
            return spans[name]
        name = name.rpartition(".")[0]
    return None


def layer_spans(net: ShapedNet) -> dict[str, Span]:
    """The spans by layer name, rebuilt from the net alone: every ONNX node of a layer is named
    after it (`layer` or `layer.suffix`), so `locate` finds it here too."""
    return {node.name: node.span for node in net.nodes}


def to_onnx(
    net: ShapedNet,
    *,
    opset: int = 17,
    batch: int | None = None,
    init: str = "auto",
    seed: int = 0,
    weights: str | Path | Mapping[str, np.ndarray] | None = None,
    mode: str = "train",
    fold_bn: bool = False,
    skip_mismatched: bool = False,
) -> onnx.ModelProto:
    """Compile a shaped net to an ONNX model (`emit`'s model; see there and docs/onnx.md)."""
    return emit(
        net,
        opset=opset,
        batch=batch,
        init=init,
        seed=seed,
        weights=weights,
        mode=mode,
        fold_bn=fold_bn,
        skip_mismatched=skip_mismatched,
    ).model


def emit(
    net: ShapedNet,
    *,
    opset: int = 17,
    batch: int | None = None,
    init: str = "auto",
    seed: int = 0,
    weights: str | Path | Mapping[str, np.ndarray] | None = None,
    mode: str = "train",
    fold_bn: bool = False,
    skip_mismatched: bool = False,
) -> Emitted:
    """Compile a shaped net to an ONNX model, with the source span of every node.

    `batch` None gives a dynamic batch dimension "N"; `init` is auto (He for ReLU nets, Glorot
    otherwise), he, glorot or normal (N(0, 0.01)); `weights` a .npz or .onnx file (or a dict of
    arrays) whose tensors replace the fresh ones by name; `mode` train or inference, where
    `fold_bn` folds each batch norm into the conv or fc before it and dropout disappears.
    """
    _check_options(net, opset, batch, mode, fold_bn)
    wt.check_size(net)  # a net whose weights cannot be allocated is refused with its size
    # a weights file is read only where it matches the net's tensors (names and shapes)
    # twins.given maps torchvision's state_dict keys for the zoo's twins
    channels = net.input_shape[0]
    expect = {**wt.shapes(net), **normalise.expected(channels)}
    given = twins.given(net, weights, expect) if weights is not None else None
    tensors, where = given or ({}, "")
    # the weights of a netdsl-trained model come with the normalisation they were trained behind
    carried = normalise.carried(tensors, channels) if len(net.input_shape) == 3 else None
    tensors = {k: v for k, v in tensors.items() if k not in (normalise.MEAN, normalise.STD)}
    params = wt.initialise(net, init, seed, provided=tensors)
    meta = {
        "source": net.span.source.name,
        "net": net.name,
        "netdsl_version": _version(),
        "mode": mode + (", batch norms folded" if fold_bn else ""),
        "init": f"{wt.choose_init(net, init)} (seed {seed})",
    }
    if weights is not None:
        params, loaded = wt.merge(params, tensors, skip_mismatched=skip_mismatched, where=where)
        meta["weights"] = loaded.describe()
    folded: dict[int, int] = {}
    if fold_bn:
        params, folded = folding.fold_bn(net, params)
    e = Emitter(net, params, mode, folded)
    for i, node in enumerate(net.nodes):
        e.layer, e.index = node, i
        xs = [e.tensors[j] for j in node.inputs]
        e.tensors.append(node.name if node.op == "input" else EMITTERS[node.op](e, node, xs))
    _name_outputs(e)
    model = onnx.ModelProto()  # built in place: make_model would copy every weight again
    model.ir_version = IR_VERSION
    model.producer_name, model.producer_version = "netdsl", _version()
    model.opset_import.add(domain="", version=opset)
    _graph(e, batch, model.graph)
    if carried is not None and len(net.inputs) == 1:
        normalise.with_normalisation(model, carried, net.nodes[net.inputs[0]].name)
        meta.update(normalise.metadata(net.input_shape, carried, ()))
    helper.set_model_props(model, meta)
    return Emitted(model, e.spans)


def _check_options(net: ShapedNet, opset: int, batch: int | None, mode: str, fold_bn: bool) -> None:
    if opset not in OPSETS:
        raise NetError(f"opset {opset} is not supported (choose {OPSETS[0]} to {OPSETS[-1]})")
    if batch is not None and (isinstance(batch, bool) or batch < 1):
        raise NetError(f"batch must be a whole number >= 1, got {batch}")
    if mode not in MODES:
        raise NetError(f"mode must be 'train' or 'inference', got '{mode}'")
    if fold_bn and mode != "inference":
        raise NetError('folding batch norms needs inference mode (mode="inference")')
    if mode == "train" and opset < 14 and any(n.op == "bn" for n in net.nodes):
        raise NetError(
            f"the training form of batch norm needs opset 14 or later, not {opset} "
            "(or compile in inference form)"
        )


def _graph(e: Emitter, batch: int | None, graph: onnx.GraphProto) -> None:
    net, dim = e.net, "N" if batch is None else batch
    graph.name, graph.doc_string = net.name, f"{net.name}, from {net.span.where}"
    graph.node.extend(e.nodes)
    for i in net.inputs:
        graph.input.append(_value(net.nodes[i].name, dim, net.nodes[i].shape))
    for name, i in net.output_list:
        graph.output.append(_value(name, dim, net.nodes[i].shape))
    for name in e.initializers:  # written in place: make_graph would copy every tensor
        tensor, value = graph.initializer.add(), e.params[name]
        tensor.name, tensor.data_type = name, TensorProto.FLOAT
        tensor.dims.extend(value.shape)
        tensor.raw_data = value.astype("<f4", copy=False).tobytes()


def _name_outputs(e: Emitter) -> None:
    """Call each output tensor by its output's name (`output` for a net of one chain); an
    output that is an input, or a tensor already named for another output, gets an Identity."""
    named = {e.net.nodes[i].name for i in e.net.inputs}  # an output can be what came in
    for out, index in e.net.output_list:
        last = e.tensors[index]
        if last in named:
            e.layer = e.net.nodes[index]
            e.add("Identity", [last], [out], f".{out}")
            continue
        named.add(out)
        for node in e.nodes:
            for names in (node.input, node.output):
                for k, name in enumerate(names):
                    if name == last:
                        names[k] = out
        e.tensors[index] = out


def _value(name: str, batch: int | str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *shape])


def _version() -> str:
    import netdsl

    return netdsl.__version__
