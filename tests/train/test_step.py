"""backends/train/step.py: the whole training step against PyTorch, net by net.

The oracle (`torch_oracle.run`) interprets netdsl's plain train-mode ONNX model with
torch.nn.functional in float64; torch.autograd differentiates F.cross_entropy of its logits.
The step model runs in onnxruntime (fp32) with SGD momentum from a zero velocity, so its
`<param>.velocity.next` outputs are exactly the gradients. Compared: the loss, the count of
right answers, every parameter's gradient and the input's (relative error max|a-b|/max|b| at
most 1e-5), the batch norms' running statistics (PyTorch's update, unbiased variance). The
table holds one small net per op and configuration, and every zoo net at a small input size
(`netdsl.load(input_shape=...)`; classes=10).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

import netdsl
from netdsl.backends.onnx import weights as wt
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.train.reverse import Grad
from netdsl.backends.train.step import to_training_step
from netdsl.backends.train.update import Optimizer, scalars, update
from netdsl.source import NetError
from tests.train import torch_oracle

ort = pytest.importorskip("onnxruntime")

NETS = {
    "conv_stride_pads": "input 3x9x9\nconv3x3/2(4, p=1) -> relu -> conv(4, k=(3, 2), p=(0, 1, 2, 1)) "
    "-> tanh -> conv5x5/3(5, p=same) -> fc(3)",
    "conv_dilated_groups": "input 4x10x10\nconv3x3(6, d=2, p=2) -> leakyrelu(alpha=0.2) -> "
    "conv3x3/2(6, groups=2, p=same) -> dwconv3x3(m=2) -> sigmoid -> sepconv3x3/2(4) -> gap -> fc(3)",
    "deconv": "input 3x5x5\ndeconv3x3/2(4, p=1, output_padding=1) -> relu -> deconv(2, k=2, groups=2) "
    "-> deconv3x3(2, d=2, p=(0, 1, 2, 1)) -> flatten -> fc(3)",
    "pools_ceil": "input 2x9x9\nconv3x3(4) -> maxpool3x3/2(p=1, ceil=true) -> conv3x3(4, p=1) -> "
    "avgpool3x3/2(p=1, ceil=true) -> avgpool2 -> fc(3) -> softmax",
    "maxpool_overlap": "input 2x8x8\nconv3x3(3, p=1) -> maxpool3x3/1(p=1) -> maxpool2 -> gmp -> fc(3)",
    "bn_conv_fc": "input 2x6x6\nconv3x3(4) -> bn -> relu -> flatten -> fc(6) -> bn(eps=0.001, "
    "momentum=0.2) -> tanh -> fc(3) -> softmax",
    "lrn_softmax_mid": "input 5x6x6\nconv3x3(7, p=1) -> lrn(size=3, alpha=0.5, beta=0.75, k=1) -> "
    "relu -> lrn -> softmax -> gap -> fc(3)",
    "branches": "input 2x6x6\nconv3x3(4) -> {conv1x1(4) | conv3x3(4) | identity}+ -> relu -> "
    "scale[gap -> fc(2) -> relu -> fc(4) -> sigmoid] -> {conv1x1(2) | maxpool3x3/1(p=1)} "
    "-> res[conv3x3(6) -> bn] -> fc(3) -> softmax",
    "dense_dropout": "input 3x6x6\nconv3x3(4) -> dense[bn -> relu -> conv3x3(2)]*2 -> flatten -> "
    "dropout(p=0.3) -> fc(8) -> relu -> dropout -> fc(3)",
    # signals (C x L): WaveNet's layers (causal pad -> conv(k=2, d), gated units, residual and
    # skip sums), and every convolution and pooling with strides, groups, asymmetric pads
    "signal_wavenet_layers": "input 3x32\npad(pads=(1, 0)) -> conv(4, k=2, p=valid) -> "
    "res[pad(pads=(2, 0)) -> conv(8, k=2, d=2, p=valid) -> gated -> conv1(4)] -> "
    "{conv1(5) | pad(pads=(4, 0)) -> conv(10, k=2, d=4, p=valid) -> gated -> conv1(5)}+ -> "
    "relu -> conv1(5) -> relu -> gap -> fc(3)",
    "signal_convs_pools_bn": "input 2x40\nconv5/2(4, p=2) -> bn -> relu -> "
    "conv3(6, groups=2, d=2, p=same) -> dwconv3(m=2) -> tanh -> maxpool3/2(p=1, ceil=true) -> "
    "conv4(4, p=same) -> avgpool3/2(p=1, ceil=true) -> deconv3/2(4, p=1, output_padding=1) -> "
    "relu -> maxpool3/1(p=1) -> avgpool2 -> gmp -> fc(3)",
    # lrn off images: emitted on a reshape to N x C x P x 1 (onnxruntime's LRN is 4-D)
    "signal_lrn": "input 3x12\nconv3(5, p=1) -> lrn(size=3, alpha=0.5, beta=0.75, k=1) "
    "-> relu -> gap -> fc(3)",
    "volume_lrn": "input 2x3x4x4\nconv3(5, p=1) -> lrn(size=3, alpha=0.5, beta=0.75, k=1) "
    "-> tanh -> gap -> fc(3)",
    # volumes (C x D x H x W): C3D's 3x3x3 convolutions and 1x2x2 / ceil-mode pools, and more
    "volume_convs_pools_bn": "input 2x5x8x8\nconv3(4, p=1) -> bn -> relu -> maxpool1x2x2 -> "
    "conv3/2(6, groups=2, p=same) -> dwconv3(m=2) -> sigmoid -> deconv2/2(4) -> relu -> "
    "avgpool3/2(p=1, ceil=true) -> maxpool2(ceil=true) -> bn -> gap -> fc(3) -> softmax",
}
# zoo nets: the input size each is tried at (small, but past every valid-padding stage; None:
# its own; a tuple: the whole input shape); those in SLOW only with NETDSL_SLOW_TESTS=1 (PyTorch's float64 reference takes 10 to
# 100 s each on 2 cores; their blocks are in NETS above, and each passed when this was written)
ZOO = {
    "lenet5": None,
    "lenet5_c3": None,
    "mnist_softmax": None,
    "mnist_mlp": None,
    "mnist_conv": None,
    "mnist_conv_big": None,
    "mnist_mlp_sigmoid": None,
    "mnist_mlp_dropout": None,
    "mnist_vgg": None,
    "mnist_resnet": None,
    "alexnet": 67,
    "alexnet_tv": 63,
    "zfnet": 63,
    "c3d": (3, 8, 16, 16),  # 8 frames of 16x16: every pool, pool5's ceil mode included
    "vgg11": 32,
    "vgg11_bn": 32,
    "resnet18": 32,
    "resnet50": 32,
    "resnet50_v1": 32,
    "se_resnet50": 32,
    "se_resnet50_v15": 32,
    "googlenet": 32,
    "bn_inception": 32,
    "densenet121": 32,
    "xception": 71,
    "deepface": 72,
}
OVERRIDES = {"deepface": {"identities": 10}}  # the others: classes=10
SLOW = set(list(ZOO)[list(ZOO).index("vgg11") :])
SKIPPED = {
    # deeper copies of a net above (same blocks): the time budget
    "resnet34": "depth",
    "resnet101": "depth",
    "resnet152": "depth",
    "resnet101_v1": "depth",
    "resnet152_v1": "depth",
    "vgg13": "depth",
    "vgg16": "depth",
    "vgg19": "depth",
    "vgg13_bn": "depth",
    "vgg16_bn": "depth",
    "vgg19_bn": "depth",
    # dense prediction (a map of class scores per pixel): the step's loss is a classifier's
    "context_module": "not a classifier",
    "dilated_frontend": "not a classifier",
    "dilation8": "not a classifier",
    "fcn32s": "not a classifier",
    "unet": "not a classifier",
    "fpn_resnet50": "not a classifier",
    # objectness per anchor and box offsets: no class-score vector to put the loss on
    "rpn_vgg16": "not a classifier",
    # a softmax over 256 levels per sample (10x64 at 10 classes and 64 samples): no class-score
    # vector; its layers are NETS' signal_wavenet_layers
    "wavenet": "not a classifier",
    # the fused output averages two softmaxes (the paper trains each stream on its own): the
    # step refuses a loss on probabilities; the Siamese net's output is one sigmoid score
    "two_stream": "softmax fusion",
    "siamese": "not a classifier",
}
BATCH = 4


def _zoo(name: str) -> netdsl.ShapedNet:
    size, overrides = ZOO[name], OVERRIDES.get(name, {"classes": 10})
    if size is None:
        return netdsl.load(name, overrides=overrides)
    if isinstance(size, tuple):
        return netdsl.load(name, overrides=overrides, input_shape=size)
    channels = netdsl.load(name).input_shape[0]
    return netdsl.load(name, overrides=overrides, input_shape=(channels, size, size))


def _params(net: netdsl.ShapedNet) -> dict[str, np.ndarray]:
    params = wt.initialise(net, "auto", seed=1)
    rng = np.random.default_rng(3)
    for name, value in params.items():  # batch norms with non-trivial terms and statistics
        if name.endswith((".scale", ".var")) and name.rsplit(".", 1)[0] in _bn_layers(net):
            params[name] = (0.5 + rng.random(value.shape)).astype(np.float32)
        elif name.endswith((".bias", ".mean")) and name.rsplit(".", 1)[0] in _bn_layers(net):
            params[name] = (0.1 * rng.standard_normal(value.shape)).astype(np.float32)
    return params


def _bn_layers(net: netdsl.ShapedNet) -> set[str]:
    return {n.name for n in net.nodes if n.op == "bn"}


def _error(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """max|a - b| / max|b|; a gradient that is zero but for rounding (a bias before a batch
    norm) is measured against `scale`, the largest gradient of the net."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-3 * scale))


def _compare(net: netdsl.ShapedNet, smoothing: float = 0.1) -> None:
    """The step's outputs against PyTorch in float64. The bound on each tensor's relative
    error is 1e-5, or four times the worst error of PyTorch's own fp32 autograd where the net is
    so deep that fp32 itself cannot do better (batch norms over few values)."""
    params = _params(net)
    step = to_training_step(
        net,
        Optimizer("sgd", momentum=0.9),
        params=params,
        label_smoothing=smoothing,
        input_grad=True,
    )
    rng = np.random.default_rng(4)
    x = rng.random((BATCH, *net.input_shape), dtype=np.float32)
    y = rng.integers(0, step.classes, BATCH)
    masks = {
        m.layer: ((rng.random((BATCH, *m.shape)) >= m.p) / (1 - m.p)).astype(np.float32)
        for m in step.masks
    }
    feeds = step.initial_state(params) | {
        "input": x,
        "labels": y,
        "lr": np.array(0.1, np.float32),
        "step": np.array(0),
    }
    feeds |= {f"{layer}.mask": mask for layer, mask in masks.items()}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(step.model.SerializeToString(), options, ["CPUExecutionProvider"])
    names = [o.name for o in step.model.graph.output]
    got = dict(zip(names, sess.run(None, feeds), strict=True))
    got = {**got, **{n: got[f"{n}.velocity.next"] for n in step.trainable}}
    got["input"] = got["input.grad"]
    model = to_onnx(net, mode="train", weights=params)
    want = _oracle(model, step, params, x, y, masks, smoothing, torch.float64)
    fp32 = _oracle(model, step, params, x, y, masks, smoothing, torch.float32)
    scale = max(float(np.abs(v).max()) for k, v in want.items() if k not in ("loss", "correct"))
    torch_worst = max(_error(fp32[k], v, scale) for k, v in want.items() if k != "correct")
    bound = max(1e-5, 4 * torch_worst)
    assert int(got["correct"]) == int(want["correct"])
    errors = {k: _error(got[k], v, scale) for k, v in want.items() if k != "correct"}
    worst = max(errors, key=lambda k: errors[k])
    assert errors[worst] <= bound, f"{worst}: relative error {errors[worst]:.2e} > {bound:.2e}"


def _oracle(
    model: onnx.ModelProto,
    step: object,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    masks: dict[str, np.ndarray],
    smoothing: float,
    dtype: torch.dtype,
) -> dict[str, np.ndarray]:
    """Loss, right answers, gradients and next running statistics by PyTorch in `dtype`."""

    def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
        return torch.tensor(a, dtype=dtype, requires_grad=grad)

    trainable = step.trainable  # type: ignore[attr-defined]
    weights = {n: t(params[n], n in trainable) for n in (*trainable, *step.frozen)}  # type: ignore[attr-defined]
    running = {n: t(params[n]) for s in step.stats for n in (f"{s.layer}.mean", f"{s.layer}.var")}  # type: ignore[attr-defined]
    xt = t(x, True)
    logits = torch_oracle.run(model, xt, weights, running, {k: t(v) for k, v in masks.items()})
    loss = F.cross_entropy(logits, torch.tensor(y), label_smoothing=smoothing)
    grads = torch.autograd.grad(loss, [weights[n] for n in trainable] + [xt])
    out = {n: g.double().numpy() for n, g in zip([*trainable, "input"], grads, strict=True)}
    out |= {f"{n}.next": v.double().numpy() for n, v in running.items()}
    out["loss"] = np.array(loss.item())
    out["correct"] = np.array(int((logits.argmax(1).numpy() == y).sum()))
    return out


@pytest.mark.parametrize("case", sorted(NETS))
def test_step_matches_pytorch(case: str) -> None:
    _compare(netdsl.parse(NETS[case]), smoothing=0.1 if "bn" in case else 0.0)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_step_matches_pytorch(name: str) -> None:
    if name in SLOW and not os.environ.get("NETDSL_SLOW_TESTS"):
        pytest.skip("slow: set NETDSL_SLOW_TESTS=1")
    _compare(_zoo(name))


def test_zoo_is_covered() -> None:
    every = {
        m.group(1)
        for p in Path("nets").glob("*.net")
        for m in re.finditer(r"^net (\w+)", p.read_text(), re.M)
    }
    assert every == set(ZOO) | set(SKIPPED)


def test_model_is_valid_onnx_and_trains_as_it_stands() -> None:
    """Standard ONNX only (checker with full_check, strict shape inference, no other domain);
    with `defaults`, the weights and a zero optimizer state are in the file, so feeding only
    the batch, labels, lr and step gives what feeding every tensor gives."""
    net = netdsl.parse(NETS["bn_conv_fc"])
    params = _params(net)
    step = to_training_step(net, "adamw", params=params, input_grad=True, defaults=True)
    onnx.checker.check_model(step.model, full_check=True)
    onnx.shape_inference.infer_shapes(step.model, check_type=True, strict_mode=True)
    domains = {n.domain for n in step.model.graph.node}
    assert domains <= {""} and step.model.opset_import[0].version >= 17
    sess = ort.InferenceSession(step.model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(6)
    batch = {
        "input": rng.random((3, *net.input_shape), dtype=np.float32),
        "labels": np.array([0, 2, 1]),
        "lr": np.array(0.01, np.float32),
        "step": np.array(3),
    }
    alone = sess.run(None, batch)
    fed = sess.run(None, batch | step.initial_state(params))
    for a, b in zip(alone, fed, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("input 1x4x4\nconv3x3(2)", {}, "vector of at least 2 class scores"),
        ("input 4\nfc(3)", {"label_smoothing": 1.0}, "label smoothing"),
        ("input 4\nfc(3)", {"optimizer": "lamb"}, "unknown optimizer"),
        ("input 4\nfc(3)", {"frozen": ["fc1.weight", "fc1.bias"]}, "nothing of"),
    ],
)
def test_refusals(text: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(NetError, match=message):
        to_training_step(netdsl.parse(text), **options)  # type: ignore[arg-type]


OPTIMIZERS = {
    "sgd": (Optimizer("sgd", momentum=0.0), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.0)),
    "sgd_momentum_wd": (
        Optimizer("sgd", momentum=0.9, weight_decay=5e-4),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    ),
    "sgd_nesterov": (
        Optimizer("sgd", momentum=0.8, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-3),
    ),
    "adamw": (
        Optimizer("adamw", weight_decay=0.01),
        lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.01),
    ),
    "adamw_betas": (
        Optimizer("adamw", betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0),
        lambda p: torch.optim.AdamW(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_update_matches_torch_optim(case: str) -> None:
    """Six steps of the in-graph update against torch.optim on identical gradients, with a
    learning rate that changes every step (as a schedule does)."""
    opt, make = OPTIMIZERS[case]
    g = Grad({}, {})
    slots = [f"p.{s}" for s in opt.slots()]
    new, state = update(g, opt, "p", "grad", slots, scalars(g, opt, "lr", "step"))
    names = [
        g.rename(new, "p.next"),
        *(g.rename(t, f"{n}.next") for t, n in zip(state, slots, strict=True)),
    ]
    shape = [3, 5]
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f32, shape) for n in ("p", "grad", *slots)]
    inputs += [
        helper.make_tensor_value_info("lr", f32, []),
        helper.make_tensor_value_info("step", TensorProto.INT64, []),
    ]
    outputs = [helper.make_tensor_value_info(n, f32, shape) for n in names]
    graph = helper.make_graph(g.finish(), "update", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    p = rng.standard_normal(shape).astype(np.float32)
    state_values = [np.zeros(shape, np.float32) for _ in slots]
    weight = torch.tensor(p.copy(), requires_grad=True)
    reference = make([weight])
    for k in range(6):
        lr = 0.1 * 0.7**k
        grad = rng.standard_normal(shape).astype(np.float32)
        feeds = {"p": p, "grad": grad, "lr": np.array(lr, np.float32), "step": np.array(k)}
        feeds |= dict(zip(slots, state_values, strict=True))
        p, *state_values = sess.run(None, feeds)
        for group in reference.param_groups:
            group["lr"] = lr
        weight.grad = torch.tensor(grad)
        reference.step()
        np.testing.assert_allclose(p, weight.detach().numpy(), rtol=2e-6, atol=2e-7)


def test_written_step_file_is_checked_onnx(tmp_path: Path) -> None:
    from netdsl.backends.train.step import write_training_step

    net = netdsl.load("lenet5")
    path = tmp_path / "step.onnx"
    step = write_training_step(net, path, Optimizer("sgd", nesterov=True), seed=3)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == [o.name for o in step.model.graph.output]
    stored = {t.name for t in model.graph.initializer}
    assert set(step.trainable) | set(step.state) <= stored


def test_compile_training_step_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main

    path = tmp_path / "step.onnx"
    assert main(["compile", "lenet5", "--training-step", "-o", str(path), "--seed", "2"]) == 0
    assert "training step" in capsys.readouterr().out
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {"loss", "correct", "conv1.weight.next"} <= {o.name for o in model.graph.output}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "input 2x16\nadaptiveavgpool(4) -> gap -> fc(3)\n",
            ":2:1: error: a training step cannot train adaptiveavgpool1",
        ),
        ("input 2x16\nconv3(4) -> local(2, k=3) -> gap -> fc(3)\n", "has 1 spatial axes"),
        ("input 1x4x8x8\nconv3(2) -> upsample(2) -> gap -> fc(3)\n", "has 3 spatial axes"),
        ("input 1x4x8x8\nadaptiveavgpool(2) -> flatten -> fc(3)\n", "checked on 2-D images"),
        ("input 1x4x8x8\nadaptivemaxpool(2) -> flatten -> fc(3)\n", "(adaptivemaxpool)"),
    ],
)
def test_signals_and_volumes_are_refused_by_name(text: str, where: str) -> None:
    """Locally connected layers, adaptive pools and upsampling: their gradients are
    checked on images only, so a signal or volume through them is refused, naming the layer
    (the convolutions, poolings and batch norm train at every rank: NETS above)."""
    with pytest.raises(netdsl.NetError) as caught:
        to_training_step(netdsl.parse(text), "sgd")
    assert where in caught.value.render()
