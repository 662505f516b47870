"""torchvision's state_dict keys -> netdsl's tensor names, for the zoo nets that have a twin.

Sits between reading a weights file (`weights.read`, `state_dict.py`) and merging it into a
net's fresh weights (`weights.merge`): `rename(net, tensors)` gives the file's tensors the names
netdsl's emitter uses, when the net is a known twin of a torchvision model and the file's keys
are torchvision's. Otherwise the names are used as they are.

The map is made from the net itself, layer by layer, by one rule per family (`FAMILIES`):
each rule turns a netdsl layer name (`stage2.bottleneck1.conv2`) into the torchvision module
that holds the same weights (`layer2.0.conv2`); the tensor names inside a layer follow
(`weight`, `bias`; a batch norm's `weight, bias, running_mean, running_var` are netdsl's
`scale, bias, mean, var`). `num_batches_tracked` and GoogLeNet's auxiliary classifiers
(`aux1.*`, `aux2.*`, used only in training) have no netdsl counterpart and are left out.
`TWINS` says which family each zoo net belongs to; to map a net of your own that is built like
one of them, add `TWINS["mynet"] = "resnet"` (or pass `family=`), or add a rule to `FAMILIES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from netdsl.backends.onnx import weights as wt
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

Rule = Callable[[str, int, ShapedNet], str | None]  # netdsl layer name, index -> torchvision's

# torchvision's batch-norm tensor names -> netdsl's.
BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
IGNORED = re.compile(r"(^|\.)num_batches_tracked$|^aux[12]\.")
# torchvision's own densenet .pth files predate its current names: `norm.1` for `norm1`
# (torchvision renames them on load with this pattern, so do we).
LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def sequential(name: str, index: int, net: ShapedNet) -> str | None:
    """AlexNet and VGG: torchvision's `features` and `classifier` are `nn.Sequential`s with one
    module per netdsl layer (conv, bn, relu, pool; fc, relu, dropout), so a layer's place in
    its part is its index there. The adaptive average pool between the parts is the identity
    at 224x224 and is not a netdsl layer."""
    flatten = next((i for i, node in enumerate(net.nodes) if node.op == "flatten"), None)
    if flatten is None:
        return None
    if index < flatten:
        return f"features.{index - 1}"  # node 0 is the input
    return f"classifier.{index - flatten - 1}"


def resnet(name: str, index: int, net: ShapedNet) -> str | None:
    """`stem1.conv1` -> `conv1`, `stageS.basicB.bnK` (or `bottleneckB`) -> `layerS.(B-1).bnK`,
    the projection `...shortcut1.conv`/`.bn` -> `...downsample.0`/`.1`, `head1.fc1` -> `fc`."""
    fixed = {"stem1.conv1": "conv1", "stem1.bn1": "bn1", "head1.fc1": "fc"}
    if name in fixed:
        return fixed[name]
    found = re.fullmatch(r"stage(\d+)\.(?:basic|bottleneck)(\d+)\.(.+)", name)
    if not found:
        return None
    stage, block, rest = found[1], int(found[2]) - 1, found[3]
    rest = {"shortcut1.conv": "downsample.0", "shortcut1.bn": "downsample.1"}.get(rest, rest)
    return f"layer{stage}.{block}.{rest}"


INCEPTIONS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def googlenet(name: str, index: int, net: ShapedNet) -> str | None:
    """`cbrN.conv1`/`.bn1` -> `convN.conv`/`.bn`; inception module k, branch b, its c-th
    conv-bn-relu -> `inception3a.branch1`, `branch2.0`, `branch2.1`, ... `branch4.1` (torchvision
    puts the pool first in branch 4); `fc1` -> `fc`."""
    if name == "fc1":
        return "fc"
    found = re.fullmatch(r"cbr(\d)\.(conv|bn)1", name)
    if found:
        return f"conv{found[1]}.{found[2]}"
    found = re.fullmatch(r"inception(\d+)\.branch1\.b(\d)\.cbr(\d)\.(conv|bn)1", name)
    if not found or not 1 <= int(found[1]) <= len(INCEPTIONS):
        return None
    module, branch, step = INCEPTIONS[int(found[1]) - 1], int(found[2]), int(found[3])
    place = {1: "", 2: f".{step - 1}", 3: f".{step - 1}", 4: ".1"}[branch]
    return f"inception{module}.branch{branch}{place}.{found[4]}"


def densenet(name: str, index: int, net: ShapedNet) -> str | None:
    """`conv1`, `bn1` -> `features.conv0`, `.norm0`; `stageS.dense_layerL.bnK` ->
    `features.denseblockS.denselayerL.normK`; `stageS.transition1.bn1` ->
    `features.transitionS.norm`; the last block, written without `stage`, is block 4;
    `bn2` -> `features.norm5`, `fc1` -> `classifier`."""
    fixed = {"conv1": "conv0", "bn1": "norm0", "bn2": "norm5"}
    if name == "fc1":
        return "classifier"
    if name in fixed:
        return f"features.{fixed[name]}"
    found = re.fullmatch(r"(?:stage(\d)\.)?dense_layer(\d+)\.(bn|conv)(\d)", name)
    if found:
        block = found[1] or "4"
        kind = "norm" if found[3] == "bn" else "conv"
        return f"features.denseblock{block}.denselayer{found[2]}.{kind}{found[4]}"
    found = re.fullmatch(r"stage(\d)\.transition1\.(bn|conv)1", name)
    if found:
        return f"features.transition{found[1]}.{'norm' if found[2] == 'bn' else 'conv'}"
    return None


FAMILIES: dict[str, Rule] = {
    "sequential": sequential,
    "resnet": resnet,
    "googlenet": googlenet,
    "densenet": densenet,
}
TWINS: dict[str, str] = {
    "alexnet_tv": "sequential",
    **{f"vgg{d}{bn}": "sequential" for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{d}": "resnet" for d in (18, 34, 50, 101, 152)},
    "googlenet": "googlenet",
    "densenet121": "densenet",
}


def torchvision_map(net: ShapedNet, family: str | None = None) -> dict[str, str]:
    """torchvision state_dict key -> netdsl tensor name, for every weight of the net; empty
    when the net has no twin. A layer the rule cannot place (a net of that name built
    otherwise) is left out: its tensors keep their fresh values, and the load report says so."""
    family = family or TWINS.get(net.name)
    if family is None:
        return {}
    if family not in FAMILIES:
        raise NetError(f"no torchvision name map '{family}' (have {', '.join(FAMILIES)})")
    rule, names = FAMILIES[family], {}
    for index, node in enumerate(net.nodes):
        if not node.weights:
            continue
        prefix = rule(node.name, index, net)
        if prefix is None:
            continue
        for weight in node.weights:
            theirs = next(t for t, n in BN.items() if n == weight.name) if node.op == "bn" else None
            names[f"{prefix}.{theirs or weight.name}"] = f"{node.name}.{weight.name}"
    return names


def rename(
    net: ShapedNet,
    tensors: Mapping[str, np.ndarray],
    where: str = "the given tensors",
    family: str | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """The tensors under netdsl's names where they carry torchvision's, and `where` extended
    to say which map was used and what was left out. Keys the map does not know are kept as
    they are, so the merge reports them as unused."""
    mapping = torchvision_map(net, family)
    keys = {LEGACY_DENSENET.sub(r"\1\2", k): k for k in tensors}
    hits = sum(k in mapping for k in keys)
    ours = sum(k in mapping.values() for k in tensors)
    if not mapping or hits <= ours:
        return dict(tensors), where
    ignored = [k for k in keys if IGNORED.search(k)]
    renamed = {mapping.get(k, k): tensors[old] for k, old in keys.items() if k not in ignored}
    what = f"torchvision's {net.name} names, map '{family or TWINS[net.name]}'"
    counts = _ignored_counts(ignored)
    return renamed, f"{where} ({what}" + (f"; ignored {counts})" if counts else ")")


def _ignored_counts(ignored: list[str]) -> str:
    tracked = sum(k.endswith("num_batches_tracked") for k in ignored)
    aux = len(ignored) - tracked
    parts = [f"{tracked} num_batches_tracked"] if tracked else []
    return ", ".join(parts + ([f"{aux} aux classifier tensors"] if aux else []))


def given(
    net: ShapedNet,
    weights: str | Path | Mapping[str, np.ndarray],
    expect: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """`weights.given` (a .npz, .onnx or .pth file, or a mapping of arrays), then `rename` for
    this net: what the emitter and the training loop pass on to `weights.merge`. `expect`
    (`weights.shapes(net)`) also admits each tensor under its torchvision name, so a .npz or
    .onnx file that keeps torchvision's names is read, not skipped."""
    if expect is not None:
        theirs = torchvision_map(net)
        expect = {**expect, **{t: expect[n] for t, n in theirs.items() if n in expect}}
    tensors, where = wt.given(weights, expect)
    return rename(net, tensors, where)
