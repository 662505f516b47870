"""Optimizers and learning-rate schedules for `netdsl train`, in numpy, in place.

onnxruntime-training 1.19.2 computes the gradients; its own SGD has neither momentum nor weight
decay, so the update happens here, on numpy views of the parameters and gradients that
onnxruntime keeps (`backends/train.py` hands them over: no copy in or out). The formulas are
PyTorch's, so that a run here and one with `torch.optim` agree step for step (tests compare
them): SGD with momentum, dampening 0 and L2 weight decay added to the gradient; AdamW with
decoupled weight decay and bias correction. Their state is a dict of arrays, saved in the
checkpoint and restored on resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from netdsl.source import NetError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}

Slot = tuple[str, np.ndarray, np.ndarray]  # name, parameter (written in place), its gradient


class SGD:
    """p -= lr * v with v = momentum * v + (g + weight_decay * p); v starts as the first g."""

    def __init__(
        self, momentum: float = 0.9, weight_decay: float = 0.0, nesterov: bool = False
    ) -> None:
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, slots: Iterable[Slot], lr: float) -> None:
        mu, wd = np.float32(self.momentum), np.float32(self.weight_decay)
        for name, p, g in slots:
            if wd:
                g = g + wd * p
            if mu:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = g.copy()
                else:
                    v *= mu
                    v += g
                g = g + mu * v if self.nesterov else v
            p -= np.float32(lr) * g

    def state(self) -> dict[str, np.ndarray]:
        return {f"velocity/{k}": v for k, v in self.velocity.items()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = {
            k.split("/", 1)[1]: v.copy() for k, v in state.items() if k.startswith("velocity/")
        }


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW."""

    def __init__(
        self,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, slots: Iterable[Slot], lr: float) -> None:
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        step_size, root = np.float32(lr / bc1), np.float32(math.sqrt(bc2))
        for name, p, g in slots:
            if self.weight_decay:
                p *= np.float32(1 - lr * self.weight_decay)
            m = self.m.setdefault(name, np.zeros_like(p))
            v = self.v.setdefault(name, np.zeros_like(p))
            m *= np.float32(b1)
            m += np.float32(1 - b1) * g
            v *= np.float32(b2)
            v += np.float32(1 - b2) * (g * g)
            denom = np.sqrt(v) / root + np.float32(self.eps)
            p -= step_size * (m / denom)

    def state(self) -> dict[str, np.ndarray]:
        arrays = {f"m/{k}": v for k, v in self.m.items()}
        arrays.update({f"v/{k}": v for k, v in self.v.items()})
        arrays["t"] = np.array(self.t, dtype=np.int64)
        return arrays

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.m = {k[2:]: a.copy() for k, a in state.items() if k.startswith("m/")}
        self.v = {k[2:]: a.copy() for k, a in state.items() if k.startswith("v/")}
        self.t = int(state.get("t", 0))


Optimizer = SGD | AdamW


def make(name: str, *, momentum: float, weight_decay: float) -> Optimizer:
    if not (math.isfinite(momentum) and 0 <= momentum < 1):
        raise NetError(f"the momentum must be from 0 up to (not including) 1, got {momentum!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise NetError(f"the weight decay must be a finite number from 0, got {weight_decay!r}")
    if name == "sgd":
        return SGD(momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(weight_decay=weight_decay)
    raise NetError(f"unknown optimizer '{name}' (choose {' or '.join(OPTIMIZERS)})")


@dataclass(frozen=True, slots=True)
class Schedule:
    """The learning rate at a step: constant, step (x gamma every `step_size` epochs) or cosine
    (from lr to 0 over the run, step by step)."""

    kind: str
    lr: float
    epochs: int
    steps_per_epoch: int
    step_size: int = 10
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise NetError(f"unknown schedule '{self.kind}' (choose {', '.join(SCHEDULES)})")
        finite = all(math.isfinite(v) for v in (self.lr, self.gamma))
        if not finite or self.step_size < 1 or self.gamma <= 0 or self.lr <= 0:
            raise NetError(
                "the learning rate, step size and gamma must be positive and finite, got "
                f"{self.lr!r}, {self.step_size!r}, {self.gamma!r}"
            )

    def at(self, epoch: int, step: int) -> float:
        if self.kind == "step":
            return self.lr * self.gamma ** (epoch // self.step_size)
        if self.kind == "cosine":
            done = (epoch * self.steps_per_epoch + step) / (self.epochs * self.steps_per_epoch)
            return self.lr * 0.5 * (1 + math.cos(math.pi * done))
        return self.lr
