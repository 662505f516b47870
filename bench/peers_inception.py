"""BN-Inception (Ioffe & Szegedy 2015, appendix Figure 5) in plain PyTorch: a second
implementation, written from the paper's table and not from nets/bn_inception.net, for the
zoo's count tests.

Beside the pipeline, not in it. From the table: the separable 7x7/2 stem (depth multiplier 8),
1x1 64 and 3x3 192, ten modules whose depths are the sums of their branches (608 for 4c and 4d,
1056 for 4e, where the table prints 576 and 1024), max or average pooling per module, the
stride-2 modules 3c and 4e, a 7x7 average pool and the classifier. Every convolution is
bias-free and followed by batch norm and ReLU (Section 3.2). Paddings and pool rounding are
those the .net file chooses (Caffe's); they change no count, only where windows fall.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# name: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj);
# a #1x1 of 0 and a pool proj of 0 mark the stride-2 modules (max pool passed through)
TABLE = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (0, 128, 160, 64, 96, "max", 0),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (0, 128, 192, 192, 256, "max", 0),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}


def conv_bn_relu(c_in: int, c: int, k: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c, k, stride, k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU()
    )


class Module(nn.Module):
    def __init__(self, c_in: int, row: tuple[int, int, int, int, int, str, int]) -> None:
        super().__init__()
        c1, r3, c3, rd, cd, pool, proj = row
        stride = 1 if c1 else 2
        self.towers = nn.ModuleList()
        if c1:
            self.towers.append(conv_bn_relu(c_in, c1))
        self.towers.append(nn.Sequential(conv_bn_relu(c_in, r3), conv_bn_relu(r3, c3, 3, stride)))
        self.towers.append(
            nn.Sequential(
                conv_bn_relu(c_in, rd), conv_bn_relu(rd, cd, 3), conv_bn_relu(cd, cd, 3, stride)
            )
        )
        if stride == 2:
            self.towers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            window = (
                nn.AvgPool2d(3, 1, 1, count_include_pad=False)
                if pool == "avg"
                else nn.MaxPool2d(3, 1, 1)
            )
            self.towers.append(nn.Sequential(window, conv_bn_relu(c_in, proj)))
        self.out = (c1 + c3 + cd + proj) if stride == 1 else (c3 + cd + c_in)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([tower(x) for tower in self.towers], dim=1)


class BNInception(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 24, 7, 2, 3, groups=3, bias=False),  # depthwise, multiplier 8
            nn.Conv2d(24, 64, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            conv_bn_relu(64, 64),
            conv_bn_relu(64, 192, 3),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        modules, c = [], 192
        for row in TABLE.values():
            modules.append(Module(c, row))
            c = modules[-1].out
        self.modules_ = nn.Sequential(*modules)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.modules_(self.stem(x))
        logits: Tensor = self.fc(x.mean(dim=(2, 3)))  # the 7x7 average pool on 7x7
        return logits.softmax(dim=1)


def bn_inception() -> tuple[nn.Module, tuple[tuple[int, ...]]]:
    """The zoo's bn_inception and its input shape."""
    return BNInception(), ((3, 224, 224),)
