"""backends/train/grad.py: every gradient rule against PyTorch autograd, op by op.

Each case is one ONNX node with random inputs; its backward graph (`reverse.backward` over
`GRADIENTS`, seeded with a random output gradient) runs in onnxruntime in fp32 and is compared
with torch.autograd in float64 on the same inputs and output gradient: the relative error
max|a - b| / max|b| must stay within 1e-5. The oracles are written with torch.nn.functional
(asymmetric pads as an explicit F.pad), never with netdsl's code. The table covers every
configuration the language can emit: strides, per-side and "same" pads, dilation, groups
(depthwise), ceil-mode end pads, count_include_pad=0, overlapping max windows, broadcasting;
the convolutions, poolings and batch norm on signals (N x C x L, rows named 1d_) and volumes
(N x C x D x H x W, rows named 3d_) too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from netdsl.backends.train.grad import GRADIENTS
from netdsl.backends.train.reverse import Grad, backward, constants, shapes_of
from tests.train.torch_oracle import ADAPTIVE_MAX, AVGPOOL, CONV, DECONV, MAXPOOL, onnx_pad

ort = pytest.importorskip("onnxruntime")
T = torch.Tensor


def _zeros(x: T, pads: Any) -> list[int]:
    return [0] * 2 * (x.dim() - 2) if pads is None else list(pads)


def _conv(stride: Any = 1, pads: Any = None, dil: Any = 1, groups: int = 1) -> Any:
    def f(x: T, w: T, b: T | None = None) -> T:
        conv = CONV[x.dim()]
        return conv(onnx_pad(x, _zeros(x, pads)), w, b, stride=stride, dilation=dil, groups=groups)

    return f


def _deconv(stride: Any, pads: Any, op: Any = 0, dil: Any = 1, groups: int = 1) -> Any:
    def f(x: T, w: T, b: T | None = None) -> T:
        deconv = DECONV[x.dim()]
        y = deconv(x, w, b, stride=stride, output_padding=op, dilation=dil, groups=groups)
        rank = x.dim() - 2  # ONNX's pads crop the full transposed convolution
        crop = [slice(pads[a], y.shape[2 + a] - pads[a + rank]) for a in range(rank)]
        return y[(slice(None), slice(None), *crop)]

    return f


def _maxpool(k: Any, s: Any, pads: Any) -> Any:
    return lambda x: MAXPOOL[x.dim()](onnx_pad(x, list(pads), -np.inf), k, s)


def _avgpool(k: Any, s: Any, pads: Any) -> Any:
    def f(x: T) -> T:  # padding counted in neither sum nor count (the window sizes cancel)
        pool = AVGPOOL[x.dim()]
        total = pool(onnx_pad(x, list(pads)), k, s)
        count = pool(onnx_pad(torch.ones_like(x), list(pads)), k, s)
        return total / count

    return f


def _gap(x: T) -> T:
    return x.mean(tuple(range(2, x.dim())), keepdim=True)


def _gmp(x: T) -> T:
    return ADAPTIVE_MAX[x.dim()](x, 1)


def _lrn(size: int, alpha: float, beta: float, k: float) -> Any:
    def f(x: T) -> T:  # ONNX's window: channels c - (size-1)//2 .. c + size//2
        sq = F.pad(x * x, (0, 0, 0, 0, (size - 1) // 2, size // 2))
        window = sum(sq[:, i : i + x.shape[1]] for i in range(size))
        return x / (k + alpha / size * window) ** beta

    return f


def _bn(training: bool) -> Any:
    def f(x: T, scale: T, bias: T, mean: T, var: T) -> T:
        if training:
            return F.batch_norm(x, None, None, scale, bias, training=True, eps=1e-3)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-3) * scale.view(
            shape
        ) + bias.view(shape)

    return f


R = np.random.default_rng(0)


def _r(*shape: int) -> np.ndarray:
    return R.standard_normal(shape).astype(np.float32)


def _pos(*shape: int) -> np.ndarray:
    return (0.5 + R.random(shape)).astype(np.float32)


# (ONNX op, inputs, attributes, PyTorch function of the same inputs)
CASES: dict[str, tuple[str, list[np.ndarray], dict[str, Any], Callable[..., T]]] = {
    "conv3x3_p1": (
        "Conv",
        [_r(2, 3, 7, 7), _r(4, 3, 3, 3), _r(4)],
        {"pads": [1] * 4},
        _conv(1, [1] * 4),
    ),
    "conv_s2_even": (
        "Conv",
        [_r(2, 3, 8, 8), _r(4, 3, 3, 3), _r(4)],
        {"strides": [2, 2], "pads": [1] * 4},
        _conv(2, [1] * 4),
    ),
    "conv_s2_odd": ("Conv", [_r(2, 3, 9, 9), _r(4, 3, 3, 3)], {"strides": [2, 2]}, _conv(2)),
    "conv_s3_k5_sides": (
        "Conv",
        [_r(2, 2, 11, 10), _r(3, 2, 5, 5), _r(3)],
        {"strides": [3, 3], "pads": [0, 1, 2, 1]},
        _conv(3, [0, 1, 2, 1]),
    ),
    "conv_same_k4": (
        "Conv",
        [_r(2, 3, 6, 6), _r(4, 3, 4, 4), _r(4)],
        {"pads": [1, 1, 2, 2]},
        _conv(1, [1, 1, 2, 2]),
    ),
    "conv_dilated": (
        "Conv",
        [_r(2, 3, 9, 9), _r(4, 3, 3, 3), _r(4)],
        {"dilations": [2, 2], "pads": [2] * 4},
        _conv(1, [2] * 4, 2),
    ),
    "conv_dilated_s2": (
        "Conv",
        [_r(2, 2, 10, 10), _r(3, 2, 3, 3), _r(3)],
        {"dilations": [2, 2], "strides": [2, 2], "pads": [1] * 4},
        _conv(2, [1] * 4, 2),
    ),
    "conv_groups2": (
        "Conv",
        [_r(2, 4, 6, 6), _r(6, 2, 3, 3), _r(6)],
        {"group": 2, "pads": [1] * 4},
        _conv(1, [1] * 4, 1, 2),
    ),
    "conv_depthwise": (
        "Conv",
        [_r(2, 3, 7, 7), _r(3, 1, 3, 3), _r(3)],
        {"group": 3, "pads": [1] * 4},
        _conv(1, [1] * 4, 1, 3),
    ),
    "conv_depthwise_x2_s2": (
        "Conv",
        [_r(2, 3, 8, 8), _r(6, 1, 3, 3)],
        {"group": 3, "strides": [2, 2], "pads": [1] * 4},
        _conv(2, [1] * 4, 1, 3),
    ),
    "conv1x1_s2": ("Conv", [_r(2, 4, 7, 7), _r(5, 4, 1, 1)], {"strides": [2, 2]}, _conv(2)),
    "deconv_s2": (
        "ConvTranspose",
        [_r(2, 3, 4, 4), _r(3, 2, 3, 3), _r(2)],
        {"strides": [2, 2], "pads": [1] * 4, "output_padding": [1, 1]},
        _deconv(2, [1] * 4, 1),
    ),
    "deconv_groups_dil": (
        "ConvTranspose",
        [_r(2, 4, 5, 5), _r(4, 3, 3, 3)],
        {"group": 2, "dilations": [2, 2]},
        _deconv(1, [0] * 4, 0, 2, 2),
    ),
    "deconv_sides": (
        "ConvTranspose",
        [_r(2, 2, 4, 5), _r(2, 3, 4, 4), _r(3)],
        {"strides": [2, 2], "pads": [0, 1, 2, 1]},
        _deconv(2, [0, 1, 2, 1]),
    ),
    "maxpool2x2": (
        "MaxPool",
        [_r(2, 3, 8, 8)],
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        _maxpool(2, 2, [0] * 4),
    ),
    "maxpool3x3_s2_p1": (
        "MaxPool",
        [_r(2, 3, 9, 9)],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4},
        _maxpool(3, 2, [1] * 4),
    ),
    "maxpool3x3_s1": (
        "MaxPool",
        [_r(2, 2, 6, 6)],
        {"kernel_shape": [3, 3], "pads": [1] * 4},
        _maxpool(3, 1, [1] * 4),
    ),
    "maxpool_ceil_ends": (
        "MaxPool",
        [_r(2, 2, 8, 8)],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]},
        _maxpool(3, 2, [0, 0, 1, 1]),
    ),
    "avgpool2x2": (
        "AveragePool",
        [_r(2, 3, 8, 8)],
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        _avgpool(2, 2, [0] * 4),
    ),
    "avgpool2x2_leftover": (
        "AveragePool",
        [_r(2, 3, 9, 7)],
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        _avgpool(2, 2, [0] * 4),
    ),
    "avgpool3x3_s2_p1": (
        "AveragePool",
        [_r(2, 3, 9, 9)],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4, "count_include_pad": 0},
        _avgpool(3, 2, [1] * 4),
    ),
    "avgpool_ceil_ends": (
        "AveragePool",
        [_r(2, 2, 8, 8)],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1], "count_include_pad": 0},
        _avgpool(3, 2, [0, 0, 1, 1]),
    ),
    "gap": ("GlobalAveragePool", [_r(2, 3, 5, 5)], {}, _gap),
    "gmp": ("GlobalMaxPool", [_r(2, 3, 5, 5)], {}, _gmp),
    "gmp_ties": (
        "GlobalMaxPool",
        [np.maximum(_r(2, 3, 4, 4), 0) * (R.random((2, 3, 1, 1)) > 0.5)],
        {},
        lambda x: F.adaptive_max_pool2d(x, 1),
    ),
    "gemm_fc": ("Gemm", [_r(5, 7), _r(4, 7), _r(4)], {"transB": 1}, lambda a, w, b: a @ w.T + b),
    "flatten": ("Flatten", [_r(2, 3, 2, 2)], {"axis": 1}, lambda x: x.flatten(1)),
    "bn_train": (
        "BatchNormalization",
        [_r(4, 3, 5, 5), _pos(3), _r(3), _r(3), _pos(3)],
        {"training_mode": 1, "epsilon": 1e-3},
        _bn(True),
    ),
    "bn_train_fc": (
        "BatchNormalization",
        [_r(6, 5), _pos(5), _r(5), _r(5), _pos(5)],
        {"training_mode": 1, "epsilon": 1e-3},
        _bn(True),
    ),
    "bn_inference": (
        "BatchNormalization",
        [_r(4, 3, 5, 5), _pos(3), _r(3), _r(3), _pos(3)],
        {"epsilon": 1e-3},
        _bn(False),
    ),
    "relu": ("Relu", [_r(3, 4, 5)], {}, F.relu),
    "leakyrelu": ("LeakyRelu", [_r(3, 4, 5)], {"alpha": 0.1}, lambda x: F.leaky_relu(x, 0.1)),
    "sigmoid": ("Sigmoid", [_r(3, 4, 5)], {}, torch.sigmoid),
    "tanh": ("Tanh", [_r(3, 4, 5)], {}, torch.tanh),
    "softmax": ("Softmax", [_r(4, 6)], {"axis": 1}, lambda x: F.softmax(x, 1)),
    "lrn5": (
        "LRN",
        [_r(2, 7, 3, 3)],
        {"size": 5, "alpha": 0.1, "beta": 0.75, "bias": 2.0},
        _lrn(5, 0.1, 0.75, 2.0),
    ),
    "lrn3": (
        "LRN",
        [_r(2, 6, 3, 3)],
        {"size": 3, "alpha": 0.3, "beta": 0.5, "bias": 1.0},
        _lrn(3, 0.3, 0.5, 1.0),
    ),
    "add_bias_bcast": ("Add", [_r(2, 3, 4, 4), _r(3, 1, 1)], {}, torch.add),
    "sum3": ("Sum", [_r(2, 3, 4), _r(2, 3, 4), _r(2, 3, 4)], {}, lambda a, b, c: a + b + c),
    "sub_bcast": ("Sub", [_r(2, 3, 4, 4), _r(1, 3, 1, 1)], {}, torch.sub),
    "sub_equal": ("Sub", [_r(2, 3, 4, 4), _r(2, 3, 4, 4)], {}, torch.sub),
    "mean2": ("Mean", [_r(2, 3, 4, 4), _r(2, 3, 4, 4)], {}, lambda a, b: (a + b) / 2),
    "mean3": ("Mean", [_r(2, 5), _r(2, 5), _r(2, 5)], {}, lambda a, b, c: (a + b + c) / 3),
    "mean_bcast": ("Mean", [_r(2, 3, 4, 4), _r(3, 1, 1)], {}, lambda a, b: (a + b) / 2),
    "abs": ("Abs", [_r(3, 4, 5)], {}, torch.abs),
    "abs_zeros": ("Abs", [_r(3, 4) * (R.random((3, 4)) > 0.5)], {}, torch.abs),
    "mul_se_gate": ("Mul", [_r(2, 3, 4, 4), _r(2, 3, 1, 1)], {}, torch.mul),
    "div": ("Div", [_r(2, 3, 4), _pos(2, 3, 4)], {}, torch.div),
    "sqrt": ("Sqrt", [_pos(2, 3)], {}, torch.sqrt),
    "concat": (
        "Concat",
        [_r(2, 3, 4, 4), _r(2, 2, 4, 4)],
        {"axis": 1},
        lambda a, b: torch.cat([a, b], 1),
    ),
    "reducemean": (
        "ReduceMean",
        [_r(3, 2, 4, 4)],
        {"axes": [0, 2, 3], "keepdims": 1},
        lambda x: x.mean((0, 2, 3), keepdim=True),
    ),
    "identity": ("Identity", [_r(2, 3)], {}, lambda x: x * 1),
}
# signals (N x C x L) and volumes (N x C x D x H x W): the same rules at one and three axes
CASES |= {
    "1d_conv_k3_p1": (
        "Conv",
        [_r(2, 3, 11), _r(4, 3, 3), _r(4)],
        {"pads": [1, 1]},
        _conv(1, [1, 1]),
    ),
    "1d_conv_causal_pad_d4": (  # WaveNet's: a Pad layer of d zeros first, then a valid conv
        "Conv",
        [_r(2, 4, 20), _r(6, 4, 2), _r(6)],
        {"dilations": [4]},
        _conv(1, [0, 0], 4),
    ),
    "1d_conv_causal_own_pads_d4": (
        "Conv",
        [_r(2, 4, 16), _r(6, 4, 2), _r(6)],
        {"dilations": [4], "pads": [4, 0]},
        _conv(1, [4, 0], 4),
    ),
    "1d_conv_s2_groups2_sides": (
        "Conv",
        [_r(2, 4, 13), _r(6, 2, 3), _r(6)],
        {"strides": [2], "group": 2, "pads": [1, 2]},
        _conv(2, [1, 2], 1, 2),
    ),
    "1d_conv_depthwise_d2": (
        "Conv",
        [_r(2, 3, 12), _r(6, 1, 3)],
        {"group": 3, "dilations": [2], "pads": [2, 2]},
        _conv(1, [2, 2], 2, 3),
    ),
    "1d_conv_s3_d2_leftover": (
        "Conv",
        [_r(2, 2, 17), _r(3, 2, 3), _r(3)],
        {"strides": [3], "dilations": [2], "pads": [0, 1]},
        _conv(3, [0, 1], 2),
    ),
    "3d_conv3x3x3_p1": (  # C3D's
        "Conv",
        [_r(2, 3, 4, 6, 6), _r(4, 3, 3, 3, 3), _r(4)],
        {"pads": [1] * 6},
        _conv(1, [1] * 6),
    ),
    "3d_conv_s122_sides": (
        "Conv",
        [_r(2, 2, 5, 7, 6), _r(3, 2, 3, 3, 2), _r(3)],
        {"strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 1]},
        _conv((1, 2, 2), [0, 1, 1, 1, 0, 1]),
    ),
    "3d_conv_dilated_groups2": (
        "Conv",
        [_r(2, 4, 5, 7, 7), _r(4, 2, 3, 3, 3), _r(4)],
        {"group": 2, "dilations": [1, 2, 2], "pads": [1, 2, 2, 1, 2, 2]},
        _conv(1, [1, 2, 2, 1, 2, 2], (1, 2, 2), 2),
    ),
    "3d_conv_depthwise_s2": (
        "Conv",
        [_r(2, 3, 4, 6, 6), _r(3, 1, 3, 3, 3), _r(3)],
        {"group": 3, "strides": [2, 2, 2], "pads": [1] * 6},
        _conv(2, [1] * 6, 1, 3),
    ),
    "1d_deconv_s2": (
        "ConvTranspose",
        [_r(2, 3, 5), _r(3, 2, 3), _r(2)],
        {"strides": [2], "pads": [1, 1], "output_padding": [1]},
        _deconv(2, [1, 1], 1),
    ),
    "1d_deconv_groups_dil_sides": (
        "ConvTranspose",
        [_r(2, 4, 6), _r(4, 3, 3)],
        {"group": 2, "dilations": [2], "pads": [0, 1]},
        _deconv(1, [0, 1], 0, 2, 2),
    ),
    "3d_deconv_s122": (
        "ConvTranspose",
        [_r(2, 3, 3, 4, 4), _r(3, 2, 3, 3, 3), _r(2)],
        {"strides": [1, 2, 2], "pads": [1] * 6, "output_padding": [0, 1, 1]},
        _deconv((1, 2, 2), [1] * 6, (0, 1, 1)),
    ),
    "3d_deconv_s2_sides_groups": (
        "ConvTranspose",
        [_r(2, 4, 3, 3, 4), _r(4, 1, 2, 2, 2), _r(2)],
        {"strides": [2, 2, 2], "pads": [0, 1, 0, 1, 0, 1], "group": 2},
        _deconv(2, [0, 1, 0, 1, 0, 1], 0, 1, 2),
    ),
    "1d_maxpool2": (
        "MaxPool",
        [_r(2, 3, 10)],
        {"kernel_shape": [2], "strides": [2]},
        _maxpool(2, 2, [0, 0]),
    ),
    "1d_maxpool3_s2_p1": (
        "MaxPool",
        [_r(2, 3, 11)],
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1]},
        _maxpool(3, 2, [1, 1]),
    ),
    "1d_maxpool3_s1_overlap": (
        "MaxPool",
        [_r(2, 2, 9)],
        {"kernel_shape": [3], "pads": [1, 1]},
        _maxpool(3, 1, [1, 1]),
    ),
    "1d_maxpool_ceil_end": (
        "MaxPool",
        [_r(2, 2, 10)],
        {"kernel_shape": [3], "strides": [2], "pads": [0, 1]},
        _maxpool(3, 2, [0, 1]),
    ),
    "3d_maxpool1x2x2": (  # C3D's pool1
        "MaxPool",
        [_r(2, 3, 4, 6, 6)],
        {"kernel_shape": [1, 2, 2], "strides": [1, 2, 2]},
        _maxpool((1, 2, 2), (1, 2, 2), [0] * 6),
    ),
    "3d_maxpool2_ceil_ends": (  # C3D's pool5
        "MaxPool",
        [_r(2, 2, 3, 5, 5)],
        {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "pads": [0, 0, 0, 1, 1, 1]},
        _maxpool(2, 2, [0, 0, 0, 1, 1, 1]),
    ),
    "3d_maxpool3_s1_p1": (
        "MaxPool",
        [_r(2, 2, 4, 4, 4)],
        {"kernel_shape": [3, 3, 3], "pads": [1] * 6},
        _maxpool(3, 1, [1] * 6),
    ),
    "1d_avgpool2_leftover": (
        "AveragePool",
        [_r(2, 3, 9)],
        {"kernel_shape": [2], "strides": [2]},
        _avgpool(2, 2, [0, 0]),
    ),
    "1d_avgpool3_s2_p1": (
        "AveragePool",
        [_r(2, 3, 11)],
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "count_include_pad": 0},
        _avgpool(3, 2, [1, 1]),
    ),
    "1d_avgpool_ceil_end": (
        "AveragePool",
        [_r(2, 2, 10)],
        {"kernel_shape": [3], "strides": [2], "pads": [0, 1], "count_include_pad": 0},
        _avgpool(3, 2, [0, 1]),
    ),
    "3d_avgpool2": (
        "AveragePool",
        [_r(2, 3, 4, 6, 6)],
        {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]},
        _avgpool(2, 2, [0] * 6),
    ),
    "3d_avgpool3_s2_p1": (
        "AveragePool",
        [_r(2, 2, 5, 7, 7)],
        {"kernel_shape": [3, 3, 3], "strides": [2, 2, 2], "pads": [1] * 6, "count_include_pad": 0},
        _avgpool(3, 2, [1] * 6),
    ),
    "3d_avgpool_ceil_ends": (
        "AveragePool",
        [_r(2, 2, 4, 6, 5)],
        {
            "kernel_shape": [1, 3, 3],
            "strides": [1, 2, 2],
            "pads": [0, 0, 0, 0, 1, 0],
            "count_include_pad": 0,
        },
        _avgpool((1, 3, 3), (1, 2, 2), [0, 0, 0, 0, 1, 0]),
    ),
    "1d_gap": ("GlobalAveragePool", [_r(2, 3, 7)], {}, _gap),
    "1d_gmp": ("GlobalMaxPool", [_r(2, 3, 7)], {}, _gmp),
    "3d_gap": ("GlobalAveragePool", [_r(2, 3, 3, 4, 4)], {}, _gap),
    "3d_gmp": ("GlobalMaxPool", [_r(2, 3, 3, 4, 4)], {}, _gmp),
    "1d_bn_train": (
        "BatchNormalization",
        [_r(4, 3, 7), _pos(3), _r(3), _r(3), _pos(3)],
        {"training_mode": 1, "epsilon": 1e-3},
        _bn(True),
    ),
    "3d_bn_train": (
        "BatchNormalization",
        [_r(3, 2, 3, 4, 4), _pos(2), _r(2), _r(2), _pos(2)],
        {"training_mode": 1, "epsilon": 1e-3},
        _bn(True),
    ),
    "3d_bn_inference": (
        "BatchNormalization",
        [_r(3, 2, 3, 4, 4), _pos(2), _r(2), _r(2), _pos(2)],
        {"epsilon": 1e-3},
        _bn(False),
    ),
}
INT_INPUTS = {  # constant second inputs
    "Unsqueeze": np.array([2, 3], dtype=np.int64),
    "Reshape": np.array([0, -1], dtype=np.int64),
}
CASES["unsqueeze"] = ("Unsqueeze", [_r(2, 3)], {}, lambda x: x[:, :, None, None])
CASES["reshape"] = ("Reshape", [_r(2, 3, 2)], {}, lambda x: x.reshape(2, -1))


def _model(
    op: str, arrays: list[np.ndarray], attrs: dict[str, Any]
) -> tuple[onnx.ModelProto, list[str]]:
    """One node of `op` and its backward graph: inputs x0.., dy; outputs the input gradients."""
    names = [f"x{i}" for i in range(len(arrays))]
    nodes = []
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
        for n, a in zip(names, arrays, strict=True)
    ]
    node_inputs = list(names)
    if op in INT_INPUTS:
        nodes.append(
            helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(INT_INPUTS[op]))
        )
        node_inputs.append("k")
    outputs = ["y"] + (["mean_out", "var_out"] if attrs.get("training_mode") else [])
    nodes.append(helper.make_node(op, node_inputs, outputs, name="op", **attrs))
    forward = helper.make_graph(
        nodes, "f", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )
    model = helper.make_model(forward, opset_imports=[helper.make_opsetid("", 17)])
    shapes = shapes_of(model)
    g = Grad(shapes, constants(nodes))
    wrt = names[:3] if attrs.get("training_mode") else names  # running statistics: no gradient
    grads = backward(g, nodes, {"y": "dy"}, wrt, GRADIENTS)
    dy = helper.make_tensor_value_info("dy", TensorProto.FLOAT, shapes["y"])
    outs = [
        helper.make_tensor_value_info(f"d{n}", TensorProto.FLOAT, a.shape)
        for n, a in zip(wrt, arrays, strict=False)
    ]
    renames = [helper.make_node("Identity", [grads[n]], [f"d{n}"]) for n in wrt]
    graph = helper.make_graph(
        [*nodes, *g.nodes, *renames], "b", [*inputs, dy], outs, g.initializers
    )
    full = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    full.ir_version = 8
    return full, wrt


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_autograd(case: str) -> None:
    op, arrays, attrs, fn = CASES[case]
    model, wrt = _model(op, arrays, attrs)
    onnx.checker.check_model(model, full_check=True)
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    dy = R.standard_normal(tuple(y.shape)).astype(np.float32)
    want = torch.autograd.grad(y, tensors[: len(wrt)], torch.tensor(dy, dtype=torch.float64))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"x{i}": a for i, a in enumerate(arrays)} | {"dy": dy}
    got = sess.run(None, feeds)
    for name, a, b in zip(wrt, got, want, strict=True):
        b = b.numpy()
        assert a.shape == b.shape, name
        error = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
        assert error <= 1e-5, f"{case} d{name}: relative error {error:.2e}"


def test_dropout_passes_kept_values_scaled() -> None:
    x, dy = _r(4, 50), _r(4, 50)
    # training-mode Dropout: ratio and training_mode as constants (the form netdsl emits)
    nodes = [
        helper.make_node(
            "Constant", [], ["ratio"], value=numpy_helper.from_array(np.array(0.3, np.float32))
        ),
        helper.make_node("Constant", [], ["train"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("Dropout", ["x0", "ratio", "train"], ["y"], name="op"),
    ]
    inputs = [helper.make_tensor_value_info("x0", TensorProto.FLOAT, x.shape)]
    forward = helper.make_graph(
        nodes, "f", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)]
    )
    fmodel = helper.make_model(forward, opset_imports=[helper.make_opsetid("", 17)])
    g = Grad(shapes_of(fmodel), constants(nodes))
    grads = backward(g, nodes, {"y": "dy"}, ["x0"], GRADIENTS)
    assert nodes[-1].output[1] == "y.mask"  # the rule asked for the mask
    kinds = {"y": TensorProto.FLOAT, "y.mask": TensorProto.BOOL, grads["x0"]: TensorProto.FLOAT}
    outs = [helper.make_tensor_value_info(n, t, x.shape) for n, t in kinds.items()]
    graph = helper.make_graph(
        [*nodes, *g.nodes],
        "b",
        [*inputs, helper.make_tensor_value_info("dy", TensorProto.FLOAT, x.shape)],
        outs,
        g.initializers,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    y, mask, dx = ort.InferenceSession(m.SerializeToString()).run(None, {"x0": x, "dy": dy})
    keep = torch.tensor(mask, dtype=torch.float64)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (want,) = torch.autograd.grad(xt * keep / 0.7, xt, torch.tensor(dy, dtype=torch.float64))
    assert 0.5 < mask.mean() < 0.9
    np.testing.assert_allclose(dx, want.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, x * mask / np.float32(0.7), rtol=1e-6)


@pytest.mark.parametrize("case", sorted(k for k, v in CASES.items() if v[0].startswith("Conv")))
def test_both_weight_gradient_lowerings(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both lowerings of the weight gradient (the default picks one by size), as exact."""
    from netdsl.backends.train import conv_grad

    for lowering in ("conv", "im2col"):
        monkeypatch.setattr(conv_grad, "LOWERING", lowering)
        test_rule_matches_autograd(case)
