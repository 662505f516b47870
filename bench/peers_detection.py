"""Plain-PyTorch twins of the zoo's dense-prediction and detection graphs: U-Net, a feature
pyramid on ResNet-50, and Faster R-CNN's region proposal network on VGG-16.

Sits beside the pipeline, not in it: tests/core/test_zoo_graphs.py counts these against the
`.net` files (parameters, multiply-adds, every output's shape). Each is written from its paper
(and, where the paper leaves a choice open, from the code its authors or torchvision released),
not from the `.net` file. torchvision is not needed. Each builder returns the module and the
shape of each input; the module takes one tensor per input and returns its outputs in the order
of the net's `output` lines.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench.peers import ResNet


def _two_convs(cin: int, c: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, c, 3, padding=padding),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=padding),
        nn.ReLU(),
    )


def _centre_crop(x: Tensor, size: torch.Size) -> Tensor:
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


class UNet(nn.Module):
    """Ronneberger et al. 2015, Fig. 1: unpadded 3x3 convolutions, 2x2 max pools, 2x2
    up-convolutions halving the channels, the contracting map centre-cropped and concatenated
    (copied map first), dropout at the bottom, a 1x1 convolution and a pixel-wise softmax."""

    def __init__(self, classes: int = 2, widths: tuple[int, ...] = (64, 128, 256, 512, 1024)):
        super().__init__()
        ins = (1, *widths[:-1])
        self.down = nn.ModuleList(_two_convs(a, b, 0) for a, b in zip(ins, widths, strict=True))
        self.dropout = nn.Dropout(0.5)
        ups = widths[::-1]  # 1024, 512, ...: each step halves
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in ups[:-1])
        self.up = nn.ModuleList(_two_convs(c, c // 2, 0) for c in ups[:-1])
        self.score = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for upconv, block in zip(self.upconv, self.up, strict=True):
            x = upconv(x)
            x = block(torch.cat([_centre_crop(skips.pop(), x.shape[-2:]), x], 1))
        return self.score(x).softmax(1)


class FPN(nn.Module):
    """Lin et al. 2017 as torchvision's FeaturePyramidNetwork + LastLevelMaxPool builds it on a
    ResNet-50 trunk (`bench.peers.ResNet`, torchvision's layers, batch norm left trainable):
    1x1 lateral convolutions to 256 channels on C2..C5, the coarser merged map upsampled
    (nearest) to each lateral's size and added, a 3x3 convolution per level, and P6 a 1x1 max
    pool of stride 2 on P5. Returns P2, P3, P4, P5, P6."""

    def __init__(self, d: int = 256) -> None:
        super().__init__()
        self.trunk = ResNet(50)
        del self.trunk.fc  # the classifier is not part of the backbone
        widths = (256, 512, 1024, 2048)
        self.lateral = nn.ModuleList(nn.Conv2d(c, d, 1) for c in widths)
        self.output = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in widths)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        t = self.trunk
        x = t.maxpool(torch.relu(t.bn1(t.conv1(x))))
        cs = []
        for layer in (t.layer1, t.layer2, t.layer3, t.layer4):
            x = layer(x)
            cs.append(x)
        merged = [self.lateral[3](cs[3])]
        for i in (2, 1, 0):
            lateral = self.lateral[i](cs[i])
            top = F.interpolate(merged[0], size=lateral.shape[-2:], mode="nearest")
            merged.insert(0, lateral + top)
        ps = [conv(m) for conv, m in zip(self.output, merged, strict=True)]
        return (*ps, F.max_pool2d(ps[-1], 1, 2))


class RPN(nn.Module):
    """Ren et al. 2015, Sec. 3.1, on VGG-16's 13 convolutions (Caffe's pooling rounds up; no
    pool5): a 3x3 convolution to 512 with ReLU, then sibling 1x1 convolutions for 2k objectness
    scores (background for the k anchors, then object, as the authors' Caffe model orders them;
    softmax over the pair) and 4k box offsets. Returns (scores, offsets)."""

    def __init__(self, k: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for stage, (c, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
            for _ in range(n):
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()]
                cin = c
            if stage < 4:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.k = k
        self.conv = nn.Conv2d(512, 512, 3, padding=1)
        self.cls = nn.Conv2d(512, 2 * k, 1)
        self.reg = nn.Conv2d(512, 4 * k, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.conv(self.features(x)))
        scores = self.cls(h)
        pairs = scores.reshape(scores.shape[0], 2, self.k, -1)
        return pairs.softmax(1), self.reg(h)


def unet() -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
    return UNet(), ((1, 572, 572),)


def fpn_resnet50() -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
    return FPN(), ((3, 800, 800),)


def rpn_vgg16() -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
    return RPN(), ((3, 600, 1000),)
