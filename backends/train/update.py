"""The optimizer inside the training-step graph: SGD and AdamW as ONNX nodes.

Sits at the end of `step.py`'s graph: given a parameter, its gradient and its optimizer state
(graph inputs), these functions add the nodes that compute the updated parameter and state
(graph outputs), in PyTorch's formulation so that a step here and one of `torch.optim` agree
(a test compares them): SGD with momentum (dampening 0; the velocity starts at zero, which is
PyTorch's first-step copy of the gradient), Nesterov and L2 weight decay added to the gradient;
AdamW with decoupled weight decay and bias correction, whose scalars (powers of the betas at the
step number, a graph input) are computed in float64 as PyTorch computes them in Python floats.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto

from netdsl.backends.train.reverse import Grad
from netdsl.source import NetError

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True, slots=True)
class Optimizer:
    """An optimizer and its constant hyper-parameters (the learning rate is a graph input)."""

    kind: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise NetError(f"unknown optimizer '{self.kind}' (choose {' or '.join(OPTIMIZERS)})")
        if self.nesterov and (self.kind != "sgd" or self.momentum <= 0):
            raise NetError("Nesterov momentum needs SGD with a momentum above 0")
        if self.momentum < 0 or self.weight_decay < 0 or self.eps <= 0:
            raise NetError("momentum and weight decay must be >= 0, eps > 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise NetError(f"AdamW's betas must lie in [0, 1), got {self.betas}")

    def slots(self) -> tuple[str, ...]:
        """The state each trainable tensor carries, as name suffixes."""
        if self.kind == "adamw":
            return ("m", "v")
        return ("velocity",) if self.momentum else ()


def scalars(g: Grad, opt: Optimizer, lr: str, step: str) -> dict[str, str]:
    """The per-step scalars every tensor's update shares, built once per graph: the learning
    rate (a float scalar input); for AdamW lr / (1 - b1^t), sqrt(1 - b2^t) and 1 - lr * wd at
    t = step + 1 (`step`, an int64 input, counts the steps done), in float64 then float32."""
    out = {"lr": lr}
    if opt.kind != "adamw":
        return out
    f64, f32 = TensorProto.DOUBLE, TensorProto.FLOAT
    one = g.const(1.0, "float64")
    t = g.add("Add", [g.add("Cast", [step], to=f64), one])
    lr64 = g.add("Cast", [lr], to=f64)

    def correction(beta: float) -> str:
        return g.add("Sub", [one, g.add("Pow", [g.const(beta, "float64"), t])])

    out["step_size"] = g.add("Cast", [g.add("Div", [lr64, correction(opt.betas[0])])], to=f32)
    out["root"] = g.add("Cast", [g.add("Sqrt", [correction(opt.betas[1])])], to=f32)
    wd = g.add("Mul", [lr64, g.const(opt.weight_decay, "float64")])
    out["decay"] = g.add("Cast", [g.add("Sub", [one, wd])], to=f32)
    return out


def update(
    g: Grad, opt: Optimizer, p: str, grad: str, state: list[str], k: dict[str, str]
) -> tuple[str, list[str]]:
    """The nodes of one tensor's update, given the shared scalars `k` (`scalars`); returns the
    new parameter and new state (their tensors)."""
    if opt.kind == "sgd":
        return _sgd(g, opt, p, grad, state, k["lr"])
    return _adamw(g, opt, p, grad, state, k)


def _sgd(
    g: Grad, opt: Optimizer, p: str, grad: str, state: list[str], lr: str
) -> tuple[str, list[str]]:
    if opt.weight_decay:
        grad = g.add("Add", [grad, g.add("Mul", [p, g.const(opt.weight_decay)])])
    new_state = []
    if opt.momentum:
        mu = g.const(opt.momentum)
        velocity = g.add("Add", [g.add("Mul", [state[0], mu]), grad])
        new_state.append(velocity)
        grad = g.add("Add", [grad, g.add("Mul", [velocity, mu])]) if opt.nesterov else velocity
    return g.add("Sub", [p, g.add("Mul", [grad, lr])]), new_state


def _adamw(
    g: Grad, opt: Optimizer, p: str, grad: str, state: list[str], k: dict[str, str]
) -> tuple[str, list[str]]:
    b1, b2 = opt.betas
    m = g.add("Add", [g.add("Mul", [state[0], g.const(b1)]), g.add("Mul", [grad, g.const(1 - b1)])])
    square = g.add("Mul", [grad, grad])
    v = g.add(
        "Add", [g.add("Mul", [state[1], g.const(b2)]), g.add("Mul", [square, g.const(1 - b2)])]
    )
    if opt.weight_decay:
        p = g.add("Mul", [p, k["decay"]])
    denom = g.add("Add", [g.add("Div", [g.add("Sqrt", [v]), k["root"]]), g.const(opt.eps)])
    step = g.add("Mul", [g.add("Div", [m, denom]), k["step_size"]])
    return g.add("Sub", [p, step]), [m, v]
