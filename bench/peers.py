"""Plain-PyTorch peers of the zoo nets: the models a user would otherwise write by hand.

Sits beside the pipeline, not in it: the benchmarks build these to time PyTorch and torchinfo
against netdsl, and the tests use them as oracles. Each model mirrors its `.net` file in
`nets/` layer for layer (ResNets exactly as torchvision builds them: bias-free convolutions,
batch norm, the v1.5 stride on the 3x3 of a bottleneck, a 1x1 conv + bn projection named
`downsample`), and `netdsl_names(model)` maps each `state_dict` key to the netdsl tensor name
(`<node name>.<weight name>`), so weights can be copied either way with `to_netdsl` and
`from_netdsl`. torchvision is not needed (nor usable here).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

# torch's batch-norm tensor names -> netdsl's (`num_batches_tracked` has no counterpart).
BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
DEPTHS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class LeNet5(nn.Module):
    """LeNet-5 on 1x32x32: conv5x5(6) tanh avgpool conv5x5(16) tanh avgpool conv5x5(120) tanh
    fc(84) tanh fc(10); `softmax` appends the zoo net's softmax."""

    def __init__(self, classes: int = 10, softmax: bool = True) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1, self.fc2 = nn.Linear(120, 84), nn.Linear(84, classes)
        self.softmax = softmax

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.tanh(self.conv3(x)).flatten(1)
        x = self.fc2(torch.tanh(self.fc1(x)))
        return x.softmax(1) if self.softmax else x


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = _projection(cin, c, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)  # v1.5: the stride is here
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * c)
        self.downsample = _projection(cin, 4 * c, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """ResNet-18/34/50/101/152 as torchvision builds them (`torchvision.models.resnetNN`)."""

    def __init__(self, depth: int = 50, classes: int = 1000, softmax: bool = True) -> None:
        super().__init__()
        block: type[BasicBlock | Bottleneck] = BasicBlock if depth < 50 else Bottleneck
        self.depth, self.softmax = depth, softmax
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), DEPTHS[depth], strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if i > 0 and j == 0 else 1))
                cin = c * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.fc(x.mean((2, 3)))
        return x.softmax(1) if self.softmax else x


VGG16_CONFIG = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class VGG16(nn.Module):
    """VGG-16 (configuration D, no batch norm) as torchvision's `vgg16`, on 3x224x224 (so its
    adaptive 7x7 average pool is the identity and is left out)."""

    def __init__(self, classes: int = 1000, softmax: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c, n in VGG16_CONFIG:
            for _ in range(n):
                layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.ReLU(inplace=True)]
                cin = c
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, classes),
        )
        self.softmax = softmax

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier(self.features(x).flatten(1))
        return x.softmax(1) if self.softmax else x


def build(name: str, classes: int | None = None, softmax: bool = True) -> nn.Module:
    """A peer by zoo name: lenet5, resnet18 ... resnet152, vgg16 (eval mode)."""
    if name == "lenet5":
        model: nn.Module = LeNet5(classes or 10, softmax)
    elif name == "vgg16":
        model = VGG16(classes or 1000, softmax)
    elif name.startswith("resnet") and int(name[6:] or 0) in DEPTHS:
        model = ResNet(int(name[6:]), classes or 1000, softmax)
    else:
        raise ValueError(f"no PyTorch peer for '{name}'")
    return model.eval()


def netdsl_names(model: nn.Module) -> dict[str, str]:
    """Map each `state_dict` key of a peer to its netdsl tensor name.

    netdsl names nodes by the structure of the `.net` file: definitions and `for` items make
    prefixes (`stem1.conv1`, `stage2.bottleneck1.conv2`, a residual block's projection
    `...bottleneck1.shortcut1.conv`, `head1.fc1`); tensors are `<node>.<weight>` with bn's
    `scale, bias, mean, var`. `num_batches_tracked` is left out. `check_names` verifies a
    mapping against the net itself.
    """
    if isinstance(model, LeNet5):
        return {
            f"{m}.{w}": f"{m}.{w}"
            for m in ("conv1", "conv2", "conv3", "fc1", "fc2")
            for w in ("weight", "bias")
        }
    names: dict[str, str] = {}
    if isinstance(model, VGG16):
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        index = {id(m): i for i, m in enumerate(model.features)}
        k = 0
        for stage, (_, n) in enumerate(VGG16_CONFIG, 1):
            for j in range(1, n + 1):
                conv = convs[k]
                k += 1
                for w in ("weight", "bias"):
                    where = f"stage{stage}.block{j}.conv1.{w}"  # nets/vgg.net's `stage`
                    names[f"features.{index[id(conv)]}.{w}"] = where
        heads = ("classifier1.block1.fc1", "classifier1.block2.fc1", "classifier1.fc1")
        for i, head in zip((0, 3, 6), heads, strict=True):
            names |= {f"classifier.{i}.{w}": f"{head}.{w}" for w in ("weight", "bias")}
        return names
    if not isinstance(model, ResNet):
        raise TypeError(f"no netdsl names for {type(model).__name__}")
    # nets/resnet.net: `stem`, then `stage(c, s, n)` in a `for` (an item that is one call is
    # named after the item: `stage2.bottleneck1`), then `head`.
    block = "basic" if model.depth < 50 else "bottleneck"
    names |= {"conv1.weight": "stem1.conv1.weight", "fc.weight": "head1.fc1.weight"}
    names |= {"fc.bias": "head1.fc1.bias"} | _bn("bn1", "stem1.bn1")
    for key in dict(model.named_modules()):
        parts = key.split(".")
        if len(parts) != 3 or not parts[0].startswith("layer"):
            continue
        where = f"stage{parts[0][5:]}.{block}{int(parts[1]) + 1}"
        if parts[2].startswith("conv"):
            names[f"{key}.weight"] = f"{where}.{parts[2]}.weight"
        elif parts[2].startswith("bn"):
            names |= _bn(key, f"{where}.{parts[2]}")
        elif parts[2] == "downsample":
            names[f"{key}.0.weight"] = f"{where}.shortcut1.conv.weight"
            names |= _bn(f"{key}.1", f"{where}.shortcut1.bn")
    return names


def _bn(torch_name: str, netdsl_name: str) -> dict[str, str]:
    return {f"{torch_name}.{t}": f"{netdsl_name}.{n}" for t, n in BN.items()}


def to_netdsl(model: nn.Module) -> dict[str, np.ndarray]:
    """The peer's weights as float32 arrays under netdsl tensor names."""
    state = model.state_dict()
    return {
        n: state[t].detach().cpu().numpy().astype(np.float32)
        for t, n in netdsl_names(model).items()
    }


def from_netdsl(model: nn.Module, tensors: Mapping[str, np.ndarray]) -> None:
    """Load weights named as netdsl names them into the peer (every tensor must be given)."""
    state = {
        t: torch.from_numpy(np.asarray(tensors[n], np.float32))
        for t, n in netdsl_names(model).items()
    }
    model.load_state_dict(state, strict=False)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give batch norm non-trivial statistics and affine terms, so tests are not vacuous."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=generator))
                m.bias.copy_(0.1 * torch.randn(c, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model


def check_names(model: nn.Module, net: object) -> list[str]:
    """Problems with `netdsl_names(model)` against a netdsl ShapedNet: netdsl weights not
    covered, names netdsl does not have, shapes that differ. Empty when they agree."""
    want = {f"{node.name}.{w.name}": tuple(w.shape) for node in net.nodes for w in node.weights}  # type: ignore[attr-defined]
    state = model.state_dict()
    mapped = netdsl_names(model)
    problems = [f"netdsl weight {n} not covered" for n in sorted(set(want) - set(mapped.values()))]
    for t, n in mapped.items():
        if n not in want:
            problems.append(f"{t} -> {n}: netdsl has no such tensor")
        elif tuple(state[t].shape) != want[n]:
            problems.append(f"{t} -> {n}: shape {tuple(state[t].shape)} vs netdsl {want[n]}")
    return problems


PEERS = ("lenet5", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def main() -> int:
    """Check every peer's names, shapes and parameter count against its zoo net."""
    import netdsl

    failed = 0
    for name in PEERS:
        model, net = build(name), netdsl.load(name)
        problems = check_names(model, net)
        count = sum(p.numel() for p in model.parameters())
        if count != net.params:
            problems.append(f"{count:,} parameters, netdsl counts {net.params:,}")
        print(f"{name}: {'ok' if not problems else '; '.join(problems[:4])}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
