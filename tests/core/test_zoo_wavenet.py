"""nets/wavenet.net's receptive field and causality against the paper's arithmetic and two
independent observations.

The arithmetic (van den Oord et al. 2016, Section 2.1 and Figure 3): a causal convolution of
width 2 sees 2 samples, and each width-2 layer of dilation d widens the field by d, so after
the stack 1, 2, ..., 512 an output sees 2 + 1,023 = 1,025 samples; the 1x1 convolutions of the
residual, skip and output paths add nothing. Causal: output t sees samples t - 1,024 ... t and
none after t, and every tensor keeps the input's length.

Observed twice: by the gradient of one output of the PyTorch twin (bench/peers_wavenet.py,
written from the paper) with respect to every input sample, and by lighting one input sample
at a time in the ONNX model netdsl emits, made to show reachability as in
test_receptive_field.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.summary import table

DILATIONS = [2**i for i in range(10)]
FIELD = 2 + sum(DILATIONS)  # the causal convolution's 2 samples, then + d per layer


def test_the_summary_reports_the_papers_receptive_field() -> None:
    net = netdsl.load("wavenet")
    assert FIELD == 1025
    assert net.nodes[net.output].rf_size == (FIELD,)
    assert f"receptive field: {FIELD} pixels" in table(net)
    # length kept everywhere but inside the causal pads (left padding only)
    lengths = {n.shape[1] for n in net.nodes if n.op != "pad"}
    assert lengths == {16_000}
    pads = [n.shape[1] - 16_000 for n in net.nodes if n.op == "pad"]
    assert pads == [1, *DILATIONS]


@pytest.mark.parametrize("t", [5, 1024, 1500, 2099])
def test_netdsl_field_is_causal(t: int) -> None:
    net = netdsl.load("wavenet", input_shape=(256, 2100))
    assert net.nodes[net.output].rf.reach[0].at(t) == (t - FIELD + 1, t)


def test_pytorch_twin_sees_the_same_samples() -> None:
    torch = pytest.importorskip("torch")
    from bench.peers_wavenet import WaveNet

    torch.manual_seed(0)  # narrow widths (4 channels everywhere) keep it fast; no field changes
    model, length = WaveNet(residual=4, skip=4, levels=4).double().eval(), 2100
    x = torch.randn(1, 4, length, dtype=torch.float64, requires_grad=True)
    y = model(x)
    assert tuple(y.shape) == (1, 4, length)
    for t in (5, 1500, 2099):
        (grad,) = torch.autograd.grad(y[0, 1, t], x, retain_graph=True)
        seen = np.flatnonzero(grad.abs().sum(dim=1)[0].numpy())
        assert (seen[0], seen[-1], seen.size) == (max(t - FIELD + 1, 0), t, min(t + 1, FIELD))


def test_emitted_model_sees_the_same_samples() -> None:
    """One input sample lit at a time (one per batch row) in netdsl's ONNX model with positive
    weights and pointwise ops made identities: the samples that reach output t are its field.
    Narrow widths (r = s = 1, 2 classes, 1 input channel) keep it small; they change no field."""
    ort = pytest.importorskip("onnxruntime")
    from tests.core.test_receptive_field import reachability_model

    length = FIELD + 75
    net = netdsl.load("wavenet", input_shape=(1, length), overrides={"r": 1, "s": 1, "classes": 2})
    model = reachability_model(net, [])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    lit = np.zeros((length, 1, length), np.float32)
    lit[np.arange(length), 0, np.arange(length)] = 1.0
    (out,) = session.run(["output"], {"audio": lit})
    reached = np.abs(out).max(axis=1) > 0  # [lit sample, output position]
    for t in range(length):
        rows = np.flatnonzero(reached[:, t])
        assert (rows[0], rows[-1], rows.size) == (max(t - FIELD + 1, 0), t, min(t + 1, FIELD)), t
