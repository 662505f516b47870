"""Batch-norm folding: a weight pass that merges each batch norm into the layer before it.

Runs on a shaped net and its numpy parameters, before emission: `to_onnx(..., fold_bn=True)`
calls it for the inference form, and the int8 pass relies on its result. Requires the
parameters of every batch norm it folds; guarantees that each folded bn's tensors are gone and
that the conv or fc before it carries a bias. Returns new dictionaries; the input is unchanged.
"""

from __future__ import annotations

import numpy as np

from netdsl.shapes import ShapedNet
from netdsl.source import NetError

Params = dict[str, np.ndarray]

FOLDABLE = ("conv", "dwconv", "deconv", "fc")


def foldable(net: ShapedNet) -> dict[int, int]:
    """Batch norms that can fold into the layer before them: bn index -> that layer's index.
    The uses of a shared block fold together or not at all: the first use's tensors are folded,
    and a later use (reading them) drops its batch norm the same way."""
    users: dict[int, int] = {}
    for node in net.nodes:
        for j in node.inputs:
            users[j] = users.get(j, 0) + 1
    pairs = {
        i: node.inputs[0]
        for i, node in enumerate(net.nodes)
        if node.op == "bn"
        and net.nodes[node.inputs[0]].op in FOLDABLE
        and users[node.inputs[0]] == 1
    }
    named = {node.name: i for i, node in enumerate(net.nodes)}
    groups: dict[int, list[int]] = {}  # the first use's bn -> every use's bn
    for i, node in enumerate(net.nodes):
        if node.op == "bn":
            groups.setdefault(named.get(node.shares, i), []).append(i)
    whole = set()
    for first, uses in groups.items():
        if all(
            i in pairs and net.nodes[pairs[i]].shares in ("", net.nodes[pairs[first]].name)
            for i in uses
        ):
            whole.update(uses)
    return {i: j for i, j in pairs.items() if i in whole}


def fold_bn(net: ShapedNet, params: Params) -> tuple[Params, dict[int, int]]:
    """Fold each foldable batch norm into the weights and bias of the layer before it:
    W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps)."""
    folded = foldable(net)
    firsts = [i for i in folded if not net.nodes[i].shares]  # later uses read these tensors
    missing = [
        f"{net.nodes[i].name}.{w}"
        for i in firsts
        for w in ("scale", "bias", "mean", "var")
        if f"{net.nodes[i].name}.{w}" not in params
    ]
    if missing:  # the precondition: every bn to fold has its four tensors
        raise NetError(f"cannot fold batch norms without their tensors: {', '.join(missing[:4])}")
    params = dict(params)
    for i in firsts:
        bn, layer = net.nodes[i], net.nodes[folded[i]]
        get = {
            w: params.pop(f"{bn.name}.{w}").astype(np.float64)
            for w in ("scale", "bias", "mean", "var")
        }
        s = get["scale"] / np.sqrt(get["var"] + bn.attrs["eps"])
        w = params[f"{layer.name}.weight"].astype(np.float64)
        b = params.get(f"{layer.name}.bias", np.zeros(len(s))).astype(np.float64)
        if layer.op == "deconv":
            g = layer.attrs["groups"]
            grouped = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
            w = (grouped * s.reshape(g, 1, -1, *([1] * (w.ndim - 2)))).reshape(w.shape)
        else:
            w = w * s.reshape(-1, *([1] * (w.ndim - 1)))
        params[f"{layer.name}.weight"] = w.astype(np.float32)
        params[f"{layer.name}.bias"] = ((b - get["mean"]) * s + get["bias"]).astype(np.float32)
    return params, folded
