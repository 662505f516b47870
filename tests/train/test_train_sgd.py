"""backends/sgd.py against torch.optim, the oracle: identical gradients in, identical weights out.

Each case runs several steps of netdsl's numpy optimizer and of torch's on the same parameters
and the same sequence of random gradients (with the learning rate changing between steps, as a
schedule does), then compares every parameter and the optimizer state that a checkpoint keeps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.backends.train import optim as sgd
from netdsl.source import NetError

torch = pytest.importorskip("torch")

SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (10, 36)}
LRS = [0.1, 0.1, 0.05, 0.2, 0.01, 0.3]


def _run(ours: sgd.Optimizer, theirs_class: type, theirs_kwargs: dict[str, object]) -> None:
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    tensors = {n: torch.tensor(p.copy(), requires_grad=True) for n, p in params.items()}
    theirs = theirs_class(list(tensors.values()), lr=LRS[0], **theirs_kwargs)
    for lr in LRS:
        grads = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
        ours.step([(n, params[n], grads[n].copy()) for n in SHAPES], lr)
        for group in theirs.param_groups:
            group["lr"] = lr
        for n, t in tensors.items():
            t.grad = torch.tensor(grads[n])
        theirs.step()
    for n, t in tensors.items():
        np.testing.assert_allclose(params[n], t.detach().numpy(), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(
    ("momentum", "weight_decay", "nesterov"),
    [
        (0.0, 0.0, False),
        (0.9, 0.0, False),
        (0.9, 5e-4, False),
        (0.5, 0.1, False),
        (0.9, 1e-3, True),
    ],
)
def test_sgd_matches_torch(momentum: float, weight_decay: float, nesterov: bool) -> None:
    ours = sgd.SGD(momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    _run(
        ours,
        torch.optim.SGD,
        {"momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov},
    )


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.3])
def test_adamw_matches_torch(weight_decay: float) -> None:
    ours = sgd.AdamW(weight_decay=weight_decay)
    _run(ours, torch.optim.AdamW, {"weight_decay": weight_decay})


@pytest.mark.parametrize(
    "make", [lambda: sgd.SGD(momentum=0.9, weight_decay=1e-3), lambda: sgd.AdamW(weight_decay=0.01)]
)
def test_state_round_trip_continues_identically(make: object) -> None:
    """Saving the state mid-way and loading it into a fresh optimizer changes nothing."""
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(6)]
    a, b = make(), make()  # type: ignore[operator]
    pa, pb = np.ones(5, np.float32), np.ones(5, np.float32)
    for g in grads[:3]:
        a.step([("w", pa, g)], 0.1)
        b.step([("w", pb, g)], 0.1)
    c = make()  # type: ignore[operator]
    c.load({k: v.copy() for k, v in b.state().items()})
    for g in grads[3:]:
        a.step([("w", pa, g)], 0.1)
        c.step([("w", pb, g)], 0.1)
    np.testing.assert_array_equal(pa, pb)


def test_update_is_in_place() -> None:
    """The trainer hands over onnxruntime's own buffers: the update must write into them."""
    p = np.ones(3, np.float32)
    alias = p
    sgd.SGD(momentum=0.9).step([("w", p, np.ones(3, np.float32))], 0.5)
    assert alias is p and np.allclose(alias, 0.5)


@pytest.mark.parametrize(
    ("kind", "epoch", "step", "expected"),
    [
        ("constant", 7, 3, 0.1),
        ("step", 9, 0, 0.1),
        ("step", 10, 0, 0.01),
        ("step", 25, 4, 0.001),
        ("cosine", 0, 0, 0.1),
        ("cosine", 10, 0, 0.05),
        ("cosine", 19, 9, 0.1 * 0.5 * (1 + math.cos(math.pi * 199 / 200))),
    ],
)
def test_schedule(kind: str, epoch: int, step: int, expected: float) -> None:
    schedule = sgd.Schedule(kind, 0.1, epochs=20, steps_per_epoch=10, step_size=10, gamma=0.1)
    assert schedule.at(epoch, step) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"kind": "linear"}, "unknown schedule 'linear'"),
        ({"kind": "step", "step_size": 0}, "must be positive"),
        ({"kind": "constant", "lr": 0.0}, "must be positive"),
    ],
)
def test_schedule_errors(args: dict[str, object], fragment: str) -> None:
    values = {"kind": "constant", "lr": 0.1, "epochs": 2, "steps_per_epoch": 3, **args}
    with pytest.raises(NetError, match=fragment):
        sgd.Schedule(**values)  # type: ignore[arg-type]


def test_unknown_optimizer() -> None:
    with pytest.raises(NetError, match="unknown optimizer 'lamb'"):
        sgd.make("lamb", momentum=0.9, weight_decay=0.0)
