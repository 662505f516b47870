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


class ResNet18Cifar(ResNet):
    """bench/nets/resnet18_cifar.net: ResNet-18 with a 3x3 stride-1 stem and no max pool, for
    3x32x32 inputs (the usual CIFAR-10 recipe). Same tensor names as ResNet-18."""

    def __init__(self, classes: int = 10, softmax: bool = True) -> None:
        super().__init__(18, classes, softmax)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.maxpool = nn.Identity()  # type: ignore[assignment]


# torchvision's VGG configurations: (channels, convs) per stage, each stage ending in a max pool.
VGG_CONFIGS = {
    11: ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)),
    13: ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2)),
    16: ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
    19: ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
}
VGG16_CONFIG = VGG_CONFIGS[16]


class VGG(nn.Module):
    """VGG-11/13/16/19, with or without batch norm, as torchvision's `vggNN`/`vggNN_bn`:
    `features` (conv, [bn,] relu per conv; a max pool per stage), `avgpool` (adaptive, to
    `pool` x `pool`: torchvision's 7, the identity at 224x224) and `classifier`. A smaller
    `pool` keeps the structure and key names for smaller inputs (the classifier's first fc then
    takes 512*pool*pool inputs)."""

    def __init__(
        self,
        depth: int = 16,
        bn: bool = False,
        classes: int = 1000,
        softmax: bool = True,
        pool: int = 7,
    ) -> None:
        super().__init__()
        self.config, self.bn = VGG_CONFIGS[depth], bn
        layers: list[nn.Module] = []
        cin = 3
        for c, n in self.config:
            for _ in range(n):
                layers.append(nn.Conv2d(cin, c, 3, 1, 1))
                layers += [nn.BatchNorm2d(c)] if bn else []
                layers.append(nn.ReLU(inplace=True))
                cin = c
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(512 * pool * pool, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, classes),
        )
        self.softmax = softmax

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier(self.avgpool(self.features(x)).flatten(1))
        return x.softmax(1) if self.softmax else x


class VGG16(VGG):
    """VGG-16 (configuration D, no batch norm) as torchvision's `vgg16`."""

    def __init__(self, classes: int = 1000, softmax: bool = True) -> None:
        super().__init__(16, False, classes, softmax)


class AlexNet(nn.Module):
    """torchvision's `alexnet` (the one-stream "one weird trick" variant; nets/alexnet.net's
    `alexnet_tv`): `features`, `avgpool` (adaptive, to `pool` x `pool`: torchvision's 6, the
    identity at 224x224), `classifier` with the dropouts before the fcs."""

    def __init__(self, classes: int = 1000, softmax: bool = True, pool: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * pool * pool, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, classes),
        )
        self.softmax = softmax

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier(self.avgpool(self.features(x)).flatten(1))
        return x.softmax(1) if self.softmax else x


class BasicConv2d(nn.Module):
    """GoogLeNet's conv -> bn(eps 0.001) -> relu, named `conv` and `bn` as torchvision does."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, pp: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, r3, 1), BasicConv2d(r3, c3, 3, p=1))
        # torchvision's "5x5" branch is a 3x3 (a slip kept for its ported weights)
        self.branch3 = nn.Sequential(BasicConv2d(cin, r5, 1), BasicConv2d(r5, c5, 3, p=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pp, 1))

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier: in torchvision's pretrained file, used only in training."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1, self.fc2 = nn.Linear(2048, 1024), nn.Linear(1024, classes)


INCEPTIONS = {  # torchvision's names and the paper's Table 1 columns, input channels first
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """torchvision's `googlenet`, module for module, with the auxiliary classifiers of its
    pretrained file (`aux_logits`; unused in eval) and its `transform_input`, which its
    pretrained weights turn on: it maps ImageNet-normalised inputs to (x - 0.5) / 0.5."""

    def __init__(
        self,
        classes: int = 1000,
        softmax: bool = True,
        aux_logits: bool = True,
        transform_input: bool = False,
    ) -> None:
        super().__init__()
        self.transform_input, self.softmax = transform_input, softmax
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, p=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        for name, args in INCEPTIONS.items():
            self.add_module(f"inception{name}", Inception(*args))
            if name in ("3b", "4e"):
                self.add_module(f"maxpool{3 if name == '3b' else 4}", _googlenet_pool(name))
        if aux_logits:
            self.aux1, self.aux2 = InceptionAux(512, classes), InceptionAux(528, classes)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.transform_input:
            mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
            x = x * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        for name in INCEPTIONS:
            x = getattr(self, f"inception{name}")(x)
            if name in ("3b", "4e"):
                x = getattr(self, f"maxpool{3 if name == '3b' else 4}")(x)
        x = self.fc(self.dropout(x.mean((2, 3))))
        return x.softmax(1) if self.softmax else x


def _googlenet_pool(after: str) -> nn.MaxPool2d:
    return (
        nn.MaxPool2d(3, 2, ceil_mode=True) if after == "3b" else nn.MaxPool2d(2, 2, ceil_mode=True)
    )


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        return torch.cat([x, self.conv2(self.relu2(self.norm2(out)))], 1)


class DenseNet(nn.Module):
    """torchvision's `densenet121`: `features` holding conv0, norm0, relu0, pool0, then
    denseblockN (of denselayerM) and transitionN (norm, relu, conv, pool), norm5; then
    relu, global average pool and `classifier`."""

    def __init__(self, classes: int = 1000, softmax: bool = True) -> None:
        super().__init__()
        layers: dict[str, nn.Module] = {
            "conv0": nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            "norm0": nn.BatchNorm2d(64),
            "relu0": nn.ReLU(inplace=True),
            "pool0": nn.MaxPool2d(3, 2, 1),
        }
        c = 64
        for i, n in enumerate((6, 12, 24, 16), 1):
            block = nn.Sequential()
            for j in range(1, n + 1):
                block.add_module(f"denselayer{j}", DenseLayer(c + (j - 1) * 32))
            layers[f"denseblock{i}"], c = block, c + n * 32
            if i < 4:
                transition = nn.Sequential()
                transition.add_module("norm", nn.BatchNorm2d(c))
                transition.add_module("relu", nn.ReLU(inplace=True))
                transition.add_module("conv", nn.Conv2d(c, c // 2, 1, bias=False))
                transition.add_module("pool", nn.AvgPool2d(2, 2))
                layers[f"transition{i}"], c = transition, c // 2
        layers["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential()
        for name, module in layers.items():
            self.features.add_module(name, module)
        self.classifier = nn.Linear(c, classes)
        self.softmax = softmax

    def forward(self, x: Tensor) -> Tensor:
        x = self.classifier(torch.relu(self.features(x)).mean((2, 3)))
        return x.softmax(1) if self.softmax else x


class C3D(nn.Module):
    """C3D (Tran et al. 2015) on 3x16x112x112 clips as the PyTorch ports of the released Caffe
    model write it: pool5 padded (0, 1, 1) where Caffe rounds up, so fc6 takes 512x1x4x4."""

    def __init__(self, classes: int = 487) -> None:
        super().__init__()
        widths = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
        widths += [(512, 512), (512, 512)]
        convs = [nn.Conv3d(a, b, 3, padding=1) for a, b in widths]
        pools = {0: (1, 2, 2), 1: 2, 3: 2, 5: 2}
        layers: list[nn.Module] = []
        for i, conv in enumerate(convs):
            layers += [conv, nn.ReLU()]
            if i in pools:
                layers.append(nn.MaxPool3d(pools[i]))
        layers.append(nn.MaxPool3d(2, padding=(0, 1, 1)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8192, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, classes),
            nn.Softmax(1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def build(
    name: str, classes: int | None = None, softmax: bool = True, pool: int | None = None
) -> nn.Module:
    """A peer by zoo name (eval mode): lenet5, resnet18 ... resnet152, vgg11 ... vgg19 and
    their _bn, alexnet_tv, googlenet, densenet121. `pool` sets the adaptive pool of AlexNet and
    VGG (for inputs smaller than 224)."""
    if name == "lenet5":
        model: nn.Module = LeNet5(classes or 10, softmax)
    elif name == "alexnet_tv":
        model = AlexNet(classes or 1000, softmax, pool or 6)
    elif name.startswith("vgg") and int(name[3:5] or 0) in VGG_CONFIGS:
        depth, bn = int(name[3:5]), name.endswith("_bn")
        model = VGG(depth, bn, classes or 1000, softmax, pool or 7)
    elif name == "googlenet":
        model = GoogLeNet(classes or 1000, softmax)
    elif name == "densenet121":
        model = DenseNet(classes or 1000, softmax)
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
    if isinstance(model, VGG):
        convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        k = 0
        for stage, (_, n) in enumerate(model.config, 1):
            for j in range(1, n + 1):
                i, k = convs[k], k + 1
                where = f"stage{stage}.block{j}"  # nets/vgg.net's `stage` and `stage_bn`
                names |= {f"features.{i}.{w}": f"{where}.conv1.{w}" for w in ("weight", "bias")}
                names |= _bn(f"features.{i + 1}", f"{where}.bn1") if model.bn else {}
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
            if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
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


VGGS = tuple(f"vgg{d}{bn}" for d in VGG_CONFIGS for bn in ("", "_bn"))
PEERS = ("lenet5", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", *VGGS)
# torchvision's models that zoo nets are twins of (netdsl.backends.onnx.names maps their keys)
TWINS = ("alexnet_tv", "googlenet", "densenet121", *PEERS[1:])


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
