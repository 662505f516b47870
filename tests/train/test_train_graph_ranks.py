"""backends/train/graph.py (onnxruntime-training's form) on signals and volumes.

The two oracles of test_train_graph.py, applied to nets of one and three spatial axes: the
training form's logits against the emitter's own model, and onnxruntime-training's gradients
against central finite differences of the loss. Batch norm is the op the form rewrites; the
convolutions and pools around it are onnxruntime-training's own.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from tests.train import test_train_graph as tg

pytest.importorskip("onnxruntime.training")

NETS = {
    "signal_bn": "input 2x12\nconv3(4, p=1) -> bn -> relu -> maxpool2 -> conv3/2(3, p=same) -> "
    "bn(momentum=0.2) -> gap -> fc(3) -> softmax",
    "volume_bn": "input 1x3x6x6\nconv3(3, p=1) -> bn -> relu -> maxpool1x2x2 -> avgpool2 -> "
    "flatten -> fc(3)",
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_forward_and_gradients(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tg.NETS, name, NETS[name])
    tg.test_forward_matches_the_emitter(name)
    tg.test_gradients_match_finite_differences(name)


@pytest.mark.parametrize("name", sorted(NETS))
def test_batch_statistics_cover_every_axis_but_the_channels(name: str) -> None:
    net, params, x, _ = tg._setup(NETS[name])
    graph = tg.training_graph(net, params)
    sess = onnxruntime.InferenceSession(
        graph.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    stats = graph.stats[0]
    mean, var = sess.run([stats.mean, stats.var], {"input": x})
    conv = tg.to_onnx(net, mode="train", seed=1)  # the first conv's output, by the emitter
    for tensor in conv.graph.initializer:
        tensor.CopyFrom(tg.onnx.numpy_helper.from_array(params[tensor.name], tensor.name))
    del conv.graph.output[:]
    conv.graph.output.extend([tg.onnx.helper.make_tensor_value_info("conv1", 1, None)])
    y = tg._run(conv, {"input": x}, "conv1")
    axes = (0, *range(2, y.ndim))
    np.testing.assert_allclose(mean, y.mean(axis=axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, y.var(axis=axes), rtol=1e-4, atol=1e-6)
    assert stats.per_image == int(np.prod(y.shape[2:]))


def test_lrn_off_images_is_refused_by_name() -> None:
    """onnxruntime's LRN kernel takes 4-D tensors only: the inference form reshapes a signal to
    N x C x L x 1 around it (and runs), the ort-training form's own lrn does not, so it refuses."""
    net = tg.netdsl.parse("input 4x10\nconv3(4) -> lrn -> gap -> fc(3)")
    with pytest.raises(tg.NetError, match="cannot train lrn1 \\(lrn\\) on 4x10"):
        tg.training_graph(net, tg.wt.initialise(net, "auto", 0))
    model = tg.to_onnx(net, mode="inference")
    x = np.ones((1, 4, 10), np.float32)
    assert tg._run(model, {model.graph.input[0].name: x}, "output").shape == (1, 3)
