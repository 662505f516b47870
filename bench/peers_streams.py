"""Plain-PyTorch twins of the zoo nets with several inputs: written from the papers, not from the
`.net` files, for tests/core/test_zoo_graphs.py (counts and shapes) and the ONNX tests (values).

Each builder returns (model, (input shape, ...)) with the shapes in the order of the net's
`input` line; the model's forward takes one tensor per input. Where a paper leaves a size open,
the twin makes the choice its `.net` file states (and says so), so that the counts compare what
the paper fixes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CNNM2048(nn.Module):
    """One stream of Simonyan & Zisserman 2014 (Fig. 1, Sec. 6): CNN-M-2048. ReLU after every
    hidden weight layer; LRN as AlexNet's after conv1 and (`norm2`) conv2; 3x3 max pooling of
    stride 2, rounding up as Caffe does. Left open by the paper and chosen as nets/two_stream.net
    says: conv1 padded by 1, conv2-5 by 1."""

    def __init__(self, channels: int, classes: int = 101, norm2: bool = True) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        def lrn() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

        self.features = nn.Sequential(
            nn.Conv2d(channels, 96, 7, stride=2, padding=1), nn.ReLU(), lrn(), pool(),
            nn.Conv2d(96, 256, 5, stride=2, padding=1), nn.ReLU(),
            *([lrn()] if norm2 else []), pool(),
            nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(),
            nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(), pool(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, classes), nn.Softmax(1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


class TwoStream(nn.Module):
    """The spatial stream on one RGB frame, the temporal stream (no norm after conv2) on L = 10
    stacked flow fields (2L channels); their softmax scores averaged (late fusion)."""

    def __init__(self, classes: int = 101, flow_fields: int = 10) -> None:
        super().__init__()
        self.spatial = CNNM2048(3, classes)
        self.temporal = CNNM2048(2 * flow_fields, classes, norm2=False)

    def forward(self, rgb: Tensor, flow: Tensor) -> Tensor:
        return (self.spatial(rgb) + self.temporal(flow)) / 2  # type: ignore[no-any-return]


class Siamese(nn.Module):
    """Koch, Zemel & Salakhutdinov 2015 (Sec. 3.1, Fig. 4): one tower for both 105x105 images
    (64@10x10, 128@7x7, 128@4x4, 256@4x4, valid, ReLU; 2x2 max pools after the first three; 4096
    sigmoid units), then p = sigmoid(sum_j alpha_j |h1_j - h2_j|), with no bias in that sum."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(1, 64, 10), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 7), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 4), nn.ReLU(),
            nn.Flatten(), nn.Linear(256 * 6 * 6, 4096), nn.Sigmoid(),
        )  # fmt: skip
        self.alpha = nn.Linear(4096, 1, bias=False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha(torch.abs(self.tower(a) - self.tower(b))))


def two_stream() -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
    return TwoStream(), ((3, 224, 224), (20, 224, 224))


def siamese() -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
    return Siamese(), ((1, 105, 105), (1, 105, 105))
