"""The training step on nets that are graphs: several inputs, shared weights, several outputs.

Two oracles. First, as tests/train/test_step.py does for nets of one input (its machinery:
`torch_oracle.run` interprets netdsl's train-mode ONNX model with torch.nn.functional, in
float64), N steps of the native engine (`NativeEngine`, SGD with momentum, fp32) must reach the
parameters and running statistics that torch.optim.SGD reaches from the same start on the same
batches: a shared tensor is one leaf there, so autograd sums the gradients of its uses, and a
shared batch norm updates its running statistics once per use, as a PyTorch module called
twice does. Second, a siamese net against a hand-written `torch.nn` twin (one tower module
applied to both inputs), which shares nothing with netdsl's ONNX. The loss is on the chosen
output; layers only other outputs depend on are not in the step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.backends.onnx.emit import to_onnx
from netdsl.backends.train.native import NativeEngine
from netdsl.backends.train.step import to_training_step
from netdsl.backends.train.update import Optimizer
from netdsl.source import NetError
from tests.train import torch_oracle
from tests.train.test_step import _error, _params

ort = pytest.importorskip("onnxruntime")

SIAMESE = """
net siamese:
    input a: 1x8x8, b: 1x8x8
    tower = [conv3x3(4) -> bn -> relu -> maxpool2x2 -> conv3x3(5, p=valid) -> relu]
    ya = a -> tower
    yb = b -> tower
    output d: [ya, yb] -> concat -> gap -> fc(3)
"""
# (net, loss output or None)
NETS: dict[str, tuple[str, str | None]] = {
    "two_inputs_concat": (
        """
net two_concat:
    input a: 2x6x6, b: 3x6x6
    ya = a -> conv3x3(4) -> relu
    yb = b -> conv3x3(4) -> bn -> relu
    output y: [ya, yb] -> concat -> conv1x1(4) -> gap -> fc(3)
""",
        None,
    ),
    "two_inputs_add": (
        """
net two_add:
    input a: 1x6x6, b: 1x6x6
    output y: [a -> conv3x3(4), b -> conv3x3(4, p=1) -> tanh] -> add -> relu -> flatten -> fc(3) -> softmax
""",
        None,
    ),
    "siamese": (SIAMESE, None),
    "siamese_gate": (
        """
net siamese_gate:
    input a: 2x6x6, b: 2x6x6
    t = [conv3x3(4) -> bn(momentum=0.3) -> sigmoid]
    ya = a -> t
    output y: [ya, b -> t -> gap] -> mul -> dropout(p=0.25) -> flatten -> fc(3)
""",
        None,
    ),
    "tower_twice_in_depth": (
        """
net deep_share:
    input x: 3x6x6
    t = [conv3x3(3) -> bn -> relu]
    y = x -> t
    z = y -> t
    output o: [y, z] -> add -> gap -> fc(4)
""",
        None,
    ),
    "two_outputs_first": (
        """
net heads:
    input x: 2x6x6
    f = x -> conv3x3(4) -> bn -> relu
    output cls: f -> gap -> fc(3) -> softmax
    output seg: f -> conv1x1(2) -> bn
""",
        "cls",
    ),
    "two_outputs_second": (
        """
net heads2:
    input a: 1x6x6, b: 1x6x6
    t = [conv3x3(4) -> relu]
    ya = a -> t
    yb = b -> t
    output left: ya -> gap -> fc(2)
    output both: [ya, yb] -> concat -> gap -> fc(3) -> softmax
""",
        "both",
    ),
}
BATCH, STEPS, LR, MOMENTUM = 4, 3, 0.1, 0.9


def _batches(net: netdsl.ShapedNet, classes: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(7)
    shapes = {net.nodes[i].name: net.nodes[i].shape for i in net.inputs}
    return [
        (
            {n: rng.random((BATCH, *s), dtype=np.float32) for n, s in shapes.items()},
            rng.integers(0, classes, BATCH),
        )
        for _ in range(STEPS)
    ]


def _masks(step: object, k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([8, k])
    return {
        m.layer: ((rng.random((BATCH, *m.shape)) >= m.p) / (1 - m.p)).astype(np.float32)
        for m in step.masks  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("case", sorted(NETS))
def test_native_steps_match_pytorch_sgd(case: str) -> None:
    """STEPS steps of the native engine against torch.optim.SGD on the oracle's float64 graph:
    every parameter and running statistic, and each parameter's change, within 1e-5."""
    text, output = NETS[case]
    net = netdsl.parse(text)
    params = _params(net)
    step = to_training_step(
        net, Optimizer("sgd", momentum=MOMENTUM), params=params, loss_output=output
    )
    names = [net.nodes[i].name for i in net.inputs]
    assert step.inputs == (tuple(names) if len(names) > 1 else ("input",))
    engine = NativeEngine(step, step.initial_state(params), threads=1)
    model = to_onnx(net, mode="train", weights=params)
    # every tensor: the oracle runs the layers of outputs the loss is not on too
    stats = {f"{n.name}.{k}" for n in net.nodes if n.op == "bn" for k in ("mean", "var")}
    weights = {
        n: torch.tensor(v, dtype=torch.float64, requires_grad=n in step.trainable)
        for n, v in params.items()
        if n not in stats
    }
    running = {n: torch.tensor(params[n], dtype=torch.float64) for n in stats & set(params)}
    sgd = torch.optim.SGD([weights[n] for n in step.trainable], lr=LR, momentum=MOMENTUM)
    for k, (x, y) in enumerate(_batches(net, step.classes)):
        masks = _masks(step, k)
        feeds = x if len(x) > 1 else {"input": next(iter(x.values()))}
        loss, correct = engine.run(feeds, y, LR, [masks[m.layer] for m in step.masks])
        xt = {n: torch.tensor(v, dtype=torch.float64) for n, v in x.items()}
        mt = {n: torch.tensor(v, dtype=torch.float64) for n, v in masks.items()}
        logits = torch_oracle.run(model, xt, weights, running, mt, step.output)
        want = F.cross_entropy(logits, torch.tensor(y))
        sgd.zero_grad()
        want.backward()
        sgd.step()
        assert abs(loss - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
        assert correct == int((logits.argmax(1).numpy() == y).sum())
    got = engine.tensors()
    for name in step.tensors():
        value = (weights | running)[name].detach().numpy()
        assert _error(got[name], value, 1.0) <= 1e-5, name
        if name in step.trainable:  # the change itself, not only the sum with the start
            moved = value - params[name]
            assert _error(got[name] - params[name], moved, float(np.abs(moved).max())) <= 1e-4, name


class Tower(torch.nn.Module):
    """SIAMESE's tower, by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)  # a batch norm follows
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        return F.relu(self.conv2(x))


def test_siamese_against_a_handwritten_torch_twin() -> None:
    """One tower module applied to both inputs, SGD with momentum: after STEPS steps the one
    copy of each shared tensor (there is no second) equals the twin's, running statistics too."""
    net = netdsl.parse(SIAMESE)
    params = _params(net)
    step = to_training_step(net, Optimizer("sgd", momentum=MOMENTUM), params=params)
    assert not any("@" in n for n in (*step.trainable, *step.tensors()))  # one tensor each
    tower, fc = Tower().double(), torch.nn.Linear(10, 3).double()
    torch_names = {
        "tower.conv1.weight": tower.conv1.weight,
        "tower.bn1.scale": tower.bn1.weight,
        "tower.bn1.bias": tower.bn1.bias,
        "tower.bn1.mean": tower.bn1.running_mean,
        "tower.bn1.var": tower.bn1.running_var,
        "tower.conv2.weight": tower.conv2.weight,
        "tower.conv2.bias": tower.conv2.bias,
        "d.fc1.weight": fc.weight,
        "d.fc1.bias": fc.bias,
    }
    assert set(torch_names) == set(step.tensors())
    with torch.no_grad():
        for name, tensor in torch_names.items():
            tensor.copy_(torch.from_numpy(params[name]))
    engine = NativeEngine(step, step.initial_state(params), threads=1)
    sgd = torch.optim.SGD([*tower.parameters(), *fc.parameters()], lr=LR, momentum=MOMENTUM)
    for x, y in _batches(net, 3):
        engine.run(x, y, LR)
        a, b = (tower(torch.from_numpy(x[k]).double()) for k in ("a", "b"))
        loss = F.cross_entropy(fc(torch.cat([a, b], 1).mean((2, 3))), torch.from_numpy(y))
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    got = engine.tensors()
    for name, tensor in torch_names.items():
        assert _error(got[name], tensor.detach().numpy(), 1.0) <= 1e-5, name


def test_input_gradients_of_each_input() -> None:
    """`input_grad` gives `<input>.grad` for each input, as torch.autograd does."""
    net = netdsl.parse(SIAMESE)
    params = _params(net)
    step = to_training_step(net, "sgd", params=params, input_grad=True)
    (x, y), *_ = _batches(net, 3)
    sess = ort.InferenceSession(step.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = step.initial_state(params) | x | {"labels": y, "lr": np.float32(0.1), "step": 0}
    feeds["lr"], feeds["step"] = np.array(0.1, np.float32), np.array(0)
    got = dict(zip([o.name for o in step.model.graph.output], sess.run(None, feeds), strict=True))
    model = to_onnx(net, mode="train", weights=params)
    xt = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in x.items()}
    weights = {n: torch.tensor(params[n], dtype=torch.float64) for n in step.tensors()}
    running = {n: weights.pop(n) for n in dict.fromkeys(t for s in step.stats for t in s.running)}
    logits = torch_oracle.run(model, xt, weights, running, {}, "d")
    grads = torch.autograd.grad(F.cross_entropy(logits, torch.tensor(y)), [xt["a"], xt["b"]])
    for name, want in zip("ab", grads, strict=True):
        assert _error(got[f"{name}.grad"], want.numpy(), 1.0) <= 1e-5


def test_outputs_not_chosen_are_left_out() -> None:
    """The loss on `cls`: the layers of `seg` alone are neither trained nor inputs."""
    net = netdsl.parse(NETS["two_outputs_first"][0])
    step = to_training_step(net, "sgd", loss_output="cls")
    assert step.output == "cls" and not any(n.startswith("seg.") for n in step.tensors())
    assert {s.layer for s in step.stats} == {"f.bn1"}


@pytest.mark.parametrize(
    ("case", "output", "fragment"),
    [
        ("two_outputs_first", None, "has 2 outputs (cls, seg); training needs the one"),
        ("two_outputs_first", "nope", "has no output 'nope' to train on (its outputs: cls, seg)"),
        ("two_outputs_first", "seg", "the loss of heads is on its output 'seg', which must be"),
        ("averaged_probabilities", None, "y.add1 combines the probabilities of y.softmax1, y"),
    ],
)
def test_refusals(case: str, output: str | None, fragment: str) -> None:
    text = REFUSED.get(case) or NETS[case][0]
    with pytest.raises(NetError) as caught:
        to_training_step(netdsl.parse(text), "sgd", loss_output=output)
    assert fragment in caught.value.render()


REFUSED = {  # late fusion of softmax scores: probabilities, not the logits the loss takes
    "averaged_probabilities": """
net late:
    input a: 4, b: 4
    output y: [a -> fc(3) -> softmax, b -> fc(3) -> softmax] -> add
""",
}


TWO_HEADS = """\
net two:
    input a: 1x8x8, b: 1x8x8
    ya = a -> conv3x3(4) -> relu
    yb = b -> conv3x3(4) -> relu
    output y: [ya, yb] -> concat -> gap -> fc(5)
    output z: ya -> gap -> fc(2)
"""


def test_compile_training_step_with_a_chosen_loss_output(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compile --training-step --loss-output z`: the written step trains z's layers only;
    without the flag a net of two outputs is refused naming them, and the flag alone too."""
    import onnx

    from netdsl.cli import main

    net, out = tmp_path / "two.net", tmp_path / "step.onnx"  # type: ignore[operator]
    net.write_text(TWO_HEADS)
    assert main(["compile", str(net), "--training-step", "-o", str(out)]) == 1
    assert "2 outputs (y, z)" in capsys.readouterr().err
    assert main(["compile", str(net), "--loss-output", "z", "-o", str(out)]) == 1
    assert "add --training-step" in capsys.readouterr().err
    assert main(["compile", str(net), "--training-step", "--loss-output", "z", "-o", str(out)]) == 0
    model = onnx.load(out)
    updated = {o.name for o in model.graph.output if o.name.endswith(".next")}
    trained = {"ya.conv1.weight", "ya.conv1.bias", "z.fc1.weight", "z.fc1.bias"}
    assert updated == {f"{t}{v}.next" for t in trained for v in ("", ".velocity")}
