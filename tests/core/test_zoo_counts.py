"""The zoo against the world: parameter and multiply-add counts of every net in nets/.

Three kinds of oracle, one table each:
- published figures (torchvision's weight metadata, Keras, timm, the papers): parameters must
  match exactly; multiply-adds within the rounding of the printed figure (half its last digit),
  or 0.5 % where a row says why;
- counts worked out by hand from a paper's layer table (LeNet-5, the context module);
- where nothing is published, a second implementation of the same model in PyTorch, written
  here from the paper independently of the .net file, counted with torchinfo.

Counting convention (netdsl's, torchvision's and the papers'): multiply-adds of convolutions,
transposed convolutions and fc layers only; biases, batch norm, pooling and activations are free.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

import pytest

import netdsl
from netdsl.zoo import entries, zoo_dir

HAS_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "torchinfo"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch and torchinfo are not installed")


def giga(text: str) -> tuple[float, float]:
    """A figure printed in units of 1e9 (GFLOPS/GMACs), and its rounding as a relative tolerance."""
    decimals = len(text.partition(".")[2])
    return float(text) * 1e9, 0.5 * 10.0**-decimals / float(text)


TV = "torchvision {}_Weights.IMAGENET1K_V1 meta: num_params, _ops (GFLOPS in its docs; MACs)"

# (target, published params, published MACs or None, relative tolerance on MACs, source)
# fmt: off
PUBLISHED = [
    ("resnet18", 11_689_512, *giga("1.814"), TV.format("ResNet18")),
    ("resnet34", 21_797_672, *giga("3.664"), TV.format("ResNet34")),
    ("resnet50", 25_557_032, *giga("4.089"), TV.format("ResNet50")),
    ("resnet101", 44_549_160, *giga("7.801"), TV.format("ResNet101")),
    ("resnet152", 60_192_808, *giga("11.514"), TV.format("ResNet152")),
    ("resnet50_v1", 25_557_032, *giga("3.86"),
     "params as torchvision (same layers); MACs: Hu et al. 2018 (SENet) Table 2, ResNet-50 "
     "3.86 GFLOPs. He et al. 2016 print 3.8, which 3.858 does not round to"),
    ("resnet101_v1", 44_549_160, *giga("7.6"), "He et al. 2016, Table 1: 7.6 x 10^9 FLOPs (MACs)"),
    ("resnet152_v1", 60_192_808, *giga("11.3"), "He et al. 2016, Table 1: 11.3 x 10^9 FLOPs"),
    ("vgg11", 132_863_336, *giga("7.609"), TV.format("VGG11")),
    ("vgg13", 133_047_848, *giga("11.308"), TV.format("VGG13")),
    ("vgg16", 138_357_544, *giga("15.47"), TV.format("VGG16")),
    ("vgg19", 143_667_240, *giga("19.632"), TV.format("VGG19")),
    ("vgg11_bn", 132_868_840, *giga("7.609"), TV.format("VGG11_BN")),
    ("vgg13_bn", 133_053_736, *giga("11.308"), TV.format("VGG13_BN")),
    ("vgg16_bn", 138_365_992, *giga("15.47"), TV.format("VGG16_BN")),
    ("vgg19_bn", 143_678_248, *giga("19.632"), TV.format("VGG19_BN")),
    ("alexnet_tv", 61_100_840, *giga("0.714"), TV.format("AlexNet")),
    ("googlenet", 6_624_904, *giga("1.498"), TV.format("GoogLeNet")),
    ("densenet121", 7_978_856, *giga("2.834"), TV.format("DenseNet121")),
    ("xception", 22_855_952, None, 0.0,
     "keras.applications.Xception summary: trainable params 22,855,952 (total 22,910,480 adds "
     "the bn moving statistics); no MACs published, see the PyTorch table"),
    ("se_resnet50", 28_088_024, 3.87e9, 0.005,
     "params: timm seresnet50 / pytorchcv 28,088,024; MACs: Hu et al. 2018, ~3.87 GFLOPs. "
     "0.5 %, not the rounding: the paper also counts SE's pooling and gating products "
     "(~0.01 G) that netdsl, like torchvision, leaves out; netdsl gives 3.8605 G"),
    ("se_resnet50_v15", 28_088_024, None, 0.0, "timm seresnet50 (stride on the 3x3): 28,088,024"),
    ("lenet5", 61_706, 416_520, 0.0,
     "by hand from LeCun et al. 1998 Sec. II.B, full C3: params C1 6*(5*5+1) + C3 16*(6*25+1) "
     "+ C5 120*(16*25+1) + F6 84*(120+1) + out 10*(84+1); MACs 6*28*28*25 + 16*10*10*150 + "
     "120*400 + 84*120 + 10*84"),
    ("lenet5_c3", 61_706 - 16 * 6 * 25 + 60 * 25, 416_520 - 16 * 10 * 10 * 150 + 60 * 10 * 10 * 25,
     0.0, "lenet5 with Table I's C3: 60 of its 96 map pairs connected, 1,516 parameters (Sec. "
     "II.B); tests/core/test_layers.py also checks it against a PyTorch re-implementation"),
    ("deepface", 32 * 363 + 32 + 16 * 81 * 32 + 16 + 55**2 * 81 * 256 + 16 * 55**2
     + 25**2 * 49 * 256 + 16 * 25**2 + 21**2 * 25 * 256 + 16 * 21**2 + 7057 * 4096
     + 4097 * 4030, None, 0.0,
     "by hand from Taigman et al. 2014 Fig. 2 (C1, C3 over 32 maps, L4-L6 with a bias per "
     "output unit, F7, F8); tests/core/test_layers.py checks params and MACs against PyTorch"),
    ("context_module", 64 * 21**2 + 8 * 21, None, 0.0,
     "Yu & Koltun 2016, Sec. 3: the basic context module has 64 C^2 weights (C = 21), plus the "
     "8 C biases of its 8 layers"),
]
# fmt: on


@pytest.mark.parametrize(
    ("target", "params", "macs", "tol", "source"), PUBLISHED, ids=[row[0] for row in PUBLISHED]
)
def test_published_counts(
    target: str, params: int, macs: float | None, tol: float, source: str
) -> None:
    net = netdsl.load(target)
    assert net.params == params, source
    if macs is not None:
        assert net.macs == pytest.approx(macs, rel=tol, abs=0), source


# LeNet-5's layers whose structure the .net keeps exactly (LeCun et al. 1998, Sec. II.B).
LENET_LAYERS = [
    ("conv1", 156, "C1: 156 trainable parameters"),
    ("conv3", 48_120, "C5: 48,120 trainable connections"),
    ("fc1", 10_164, "F6: 10,164 trainable parameters"),
]


@pytest.mark.parametrize(("layer", "params", "source"), LENET_LAYERS)
def test_lenet5_layers_match_the_paper(layer: str, params: int, source: str) -> None:
    nodes = {n.name: n for n in netdsl.load("lenet5").nodes}
    assert nodes[layer].params == params, source


def test_context_module_receptive_fields() -> None:
    """Yu & Koltun 2016, Table 1: receptive field after each of the 8 layers."""
    net = netdsl.load("context_module")
    sizes = [n.rf_size for n in net.nodes if n.op == "conv"]
    assert sizes == [(s, s) for s in (3, 5, 9, 17, 33, 65, 67, 67)]


# ---- every zoo net -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [e.name for e in entries()])
def test_zoo_net_loads_cleanly(name: str) -> None:
    net = netdsl.load(name)
    assert net.params > 0 and net.macs > 0
    assert net.warnings == (), [w.render() for w in net.warnings]


@pytest.mark.parametrize("path", sorted(zoo_dir().glob("*.net")), ids=lambda p: p.name)
def test_zoo_file_opens_with_a_reference(path: Any) -> None:
    """Authors, "title" and year on the first line: what `netdsl zoo` shows as the reference."""
    first = path.read_text("utf-8").splitlines()[0]
    year = any(str(y) in first for y in range(1989, 2030))
    assert first.startswith("# ") and first.count('"') == 2 and year, first


def test_every_zoo_net_has_an_oracle() -> None:
    from tests.core.test_zoo_graphs import GRAPHS

    checked = {row[0] for row in PUBLISHED} | set(TORCH) | set(GRAPHS)
    assert sorted(e.name for e in entries() if e.name not in checked) == []


# ---- a second implementation in PyTorch ----------------------------------------------------
# Each builder returns (model, input shape). Written from the papers, not from the .net files.


def _vgg_stages(nn: Any, cfg: list[tuple[int, int]], pad: int) -> list[Any]:
    layers, c_in = [], 3
    for c, n in cfg:
        for _ in range(n):
            layers += [nn.Conv2d(c_in, c, 3, padding=pad), nn.ReLU()]
            c_in = c
        layers.append(nn.MaxPool2d(2, 2))
    return layers


def _small_resnet(nn: Any) -> Any:
    """He et al.'s basic blocks at MNIST size: 16, 32/2, 64/2 channels, projection shortcuts
    (1x1 conv, stride, batch norm) where the shape changes."""

    class Block(nn.Module):  # type: ignore[misc]
        def __init__(self, c_in: int, c: int, s: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c, 3, s, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
            )  # fmt: skip
            same = s == 1 and c_in == c
            self.short = (
                nn.Identity()
                if same
                else nn.Sequential(nn.Conv2d(c_in, c, 1, s, bias=False), nn.BatchNorm2d(c))
            )

        def forward(self, x: Any) -> Any:
            return (self.body(x) + self.short(x)).relu()

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def _context(nn: Any, c: int) -> list[Any]:
    layers = []
    for d in (1, 1, 2, 4, 8, 16, 1):
        layers += [nn.Conv2d(c, c, 3, padding=d, dilation=d), nn.ReLU()]
    return [*layers, nn.Conv2d(c, c, 1)]


def _frontend(nn: Any) -> list[Any]:
    return [
        *_vgg_stages(nn, [(64, 2), (128, 2), (256, 3)], pad=0),
        nn.Conv2d(256, 512, 3),
        nn.ReLU(),
        nn.Conv2d(512, 512, 3),
        nn.ReLU(),
        nn.Conv2d(512, 512, 3),
        nn.ReLU(),
        *[m for _ in range(3) for m in (nn.Conv2d(512, 512, 3, dilation=2), nn.ReLU())],
        nn.Conv2d(512, 4096, 7, dilation=4),
        nn.ReLU(),
        nn.Dropout(),
        nn.Conv2d(4096, 4096, 1),
        nn.ReLU(),
        nn.Dropout(),
        nn.Conv2d(4096, 21, 1),
    ]


def _classifier(nn: Any, n_in: int, classes: int = 1000) -> list[Any]:
    return [
        nn.Flatten(),
        nn.Linear(n_in, 4096),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(4096, classes),
    ]


def _xception(nn: Any) -> Any:
    def bn(c: int) -> Any:
        return nn.BatchNorm2d(c, eps=1e-3)

    def sep(c_in: int, c: int) -> list[Any]:
        return [
            nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c, 1, bias=False),
            bn(c),
        ]

    class Residual(nn.Module):  # type: ignore[misc]
        def __init__(self, body: list[Any], shortcut: list[Any]) -> None:
            super().__init__()
            self.body, self.shortcut = nn.Sequential(*body), nn.Sequential(*shortcut)

        def forward(self, x: Any) -> Any:
            return self.body(x) + self.shortcut(x)

    def down(c_in: int, c1: int, c2: int, first: bool = False) -> Any:
        body = [
            *([] if first else [nn.ReLU()]),
            *sep(c_in, c1),
            nn.ReLU(),
            *sep(c1, c2),
            nn.MaxPool2d(3, 2, padding=1),
        ]
        return Residual(body, [nn.Conv2d(c_in, c2, 1, stride=2, bias=False), bn(c2)])

    middle = [
        Residual([m for _ in range(3) for m in (nn.ReLU(), *sep(728, 728))], []) for _ in range(8)
    ]
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, bias=False),
        bn(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False),
        bn(64),
        nn.ReLU(),
        down(64, 128, 128, first=True),
        down(128, 256, 256),
        down(256, 728, 728),
        *middle,
        down(728, 728, 1024),
        *sep(1024, 1536),
        nn.ReLU(),
        *sep(1536, 2048),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2048, 1000),
    )


def _builders() -> dict[str, Callable[[], tuple[Any, tuple[int, ...]]]]:
    from torch import nn

    def lrn() -> Any:
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    vgg16 = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    # fmt: off
    return {
        "c3d": lambda: (__import__("bench.peers", fromlist=["C3D"]).C3D(), (3, 16, 112, 112)),
        "mnist_softmax": lambda: (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (1, 28, 28)),
        "mnist_mlp": lambda: (nn.Sequential(
            nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(),
            nn.Linear(100, 60), nn.ReLU(), nn.Linear(60, 30), nn.ReLU(), nn.Linear(30, 10)),
            (1, 28, 28)),
        "mnist_conv": lambda: (nn.Sequential(  # TF "same": stride 2 pads (1, 2) and (1, 1)
            nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(),
            nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(4, 8, 5, stride=2), nn.ReLU(),
            nn.Conv2d(8, 12, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(12 * 7 * 7, 200), nn.ReLU(), nn.Linear(200, 10)),
            (1, 28, 28)),
        "mnist_mlp_sigmoid": lambda: (nn.Sequential(
            nn.Flatten(), nn.Linear(784, 200), nn.Sigmoid(), nn.Linear(200, 100), nn.Sigmoid(),
            nn.Linear(100, 60), nn.Sigmoid(), nn.Linear(60, 30), nn.Sigmoid(),
            nn.Linear(30, 10)), (1, 28, 28)),
        "mnist_mlp_dropout": lambda: (nn.Sequential(
            nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(200, 100), nn.ReLU(), nn.Dropout(0.25), nn.Linear(100, 60), nn.ReLU(),
            nn.Dropout(0.25), nn.Linear(60, 30), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(30, 10)), (1, 28, 28)),
        "mnist_conv_big": lambda: (nn.Sequential(  # TF "same" again: 6x6 pads (2, 3)
            nn.ZeroPad2d((2, 3, 2, 3)), nn.Conv2d(1, 6, 6), nn.ReLU(),
            nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(6, 12, 5, stride=2), nn.ReLU(),
            nn.Conv2d(12, 24, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(24 * 7 * 7, 200), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(200, 10)), (1, 28, 28)),
        "mnist_vgg": lambda: (nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)),
            (1, 28, 28)),
        "mnist_resnet": lambda: (_small_resnet(nn), (1, 28, 28)),
        "alexnet": lambda: (nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            *_classifier(nn, 256 * 6 * 6)), (3, 227, 227)),
        "zfnet": lambda: (nn.Sequential(
            nn.Conv2d(3, 96, 7, stride=2, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True), lrn(),
            nn.Conv2d(96, 256, 5, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), lrn(),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            *_classifier(nn, 256 * 6 * 6)), (3, 224, 224)),
        "xception": lambda: (_xception(nn), (3, 299, 299)),
        "fcn32s": lambda: (nn.Sequential(
            *_vgg_stages(nn, vgg16, pad=1),
            nn.Conv2d(512, 4096, 7, padding=3), nn.ReLU(), nn.Dropout(),
            nn.Conv2d(4096, 4096, 1), nn.ReLU(), nn.Dropout(), nn.Conv2d(4096, 21, 1),
            nn.ConvTranspose2d(21, 21, 64, stride=32, padding=16, bias=False)), (3, 224, 224)),
        "context_module": lambda: (nn.Sequential(*_context(nn, 21)), (21, 64, 64)),
        "dilated_frontend": lambda: (nn.Sequential(*_frontend(nn)), (3, 900, 900)),
        "dilation8": lambda: (nn.Sequential(*_frontend(nn), *_context(nn, 21)), (3, 900, 900)),
    }
    # fmt: on


TORCH = [
    "mnist_softmax",
    "mnist_mlp",
    "mnist_conv",
    "mnist_mlp_sigmoid",
    "mnist_mlp_dropout",
    "mnist_conv_big",
    "mnist_vgg",
    "mnist_resnet",
    "alexnet",
    "zfnet",
    "xception",
    "fcn32s",
    "context_module",
    "dilated_frontend",
    "dilation8",
    "c3d",
]


def _torch_counts(model: Any, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """Parameters, multiply-adds and output shape of a PyTorch model, run on the meta device.

    torchinfo's total_mult_adds also counts one multiply-add per bias element and output
    position, and per batch-norm weight; those are taken out to match the convention above.
    For a transposed conv it multiplies the kernel by the *output* positions, stride^2 times
    too many; its count is replaced by kernel x input positions. torch's own FlopCounterMode
    (FLOPs / 2) must then agree.
    """
    import torch
    import torchinfo
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("meta").eval()
    x = torch.empty(1, *shape, device="meta")
    info = torchinfo.summary(model, input_data=x, device="meta", verbose=0)
    macs = info.total_mult_adds
    for layer in (layer for layer in info.summary_list if layer.is_leaf_layer):
        m, out = layer.module, layer.output_size
        nn = torch.nn  # every rank: 1-D signals, images, 3-D volumes (c3d)
        deconvs = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        weighted = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *deconvs, nn.Linear)
        if isinstance(m, weighted) and m.bias is not None:
            macs -= m.bias.numel() * math.prod(out[2:])
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            macs -= m.weight.numel() + m.bias.numel()
        if isinstance(m, deconvs):
            macs -= m.weight.numel() * math.prod(out[2:])
            macs += m.weight.numel() * math.prod(layer.input_size[2:])
    with FlopCounterMode(display=False) as counter:
        y = model(x)
    assert macs == counter.get_total_flops() // 2, "torchinfo and FlopCounterMode disagree"
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, macs, tuple(y.shape[1:])


@needs_torch
@pytest.mark.parametrize("name", TORCH)
def test_counts_match_pytorch(name: str) -> None:
    model, shape = _builders()[name]()
    params, macs, out = _torch_counts(model, shape)
    net = netdsl.load(name)
    assert net.input_shape == shape
    assert (net.params, net.macs, net.output_shape) == (params, macs, out)
