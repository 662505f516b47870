"""Inference-form ONNX model + images -> the arrays the lectures look at.

The explain room's arithmetic, between a trained model (an `.onnx` file, or a net compiled for
inference with its weights) and `pictures.py`. Every function takes the model as a ModelProto
with one float input N x C x H x W and runs it in onnxruntime on the CPU:

- `filters`: the weights of the first Conv node, out x in x kh x kw.
- `saliency`: |d score_c / d x|, the maximum over colour channels (Simonyan et al. 2013, sec. 3),
  with score_c the class's logit: the input of a trailing Softmax where there is one (the
  softmax's own gradient vanishes where the net is confident). The backward graph is the one the
  native training engine uses (`train/reverse.backward` with `train/grad.GRADIENTS`), seeded with a
  one-hot row per image, so it is exact and runs in one pass.
- `occlusion`: a square patch of `fill` slid over the image with a stride; each pixel gets the
  mean drop of the class probability over the patch positions that cover it (Zeiler & Fergus
  2014, fig. 7).
- `top_images`: per channel of an intermediate tensor, the k images whose mean (or max)
  activation is largest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from netdsl.backends.runtime import ort
from netdsl.backends.runtime.compare import with_logits
from netdsl.backends.train.grad import GRADIENTS
from netdsl.backends.train.reverse import Grad, backward, constants, shapes_of
from netdsl.source import NetError

BATCH = 256  # images per onnxruntime call


def input_of(model: onnx.ModelProto) -> tuple[str, tuple[int, ...]]:
    """The model's input name and its image shape C x H x W (fixed sizes besides the batch)."""
    inputs = [
        i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    if len(inputs) != 1:
        raise NetError(f"explain needs a model with one input, this one has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:])
    if len(shape) != 3 or 0 in shape:
        raise NetError(
            "explain needs a model whose input is an image, N x C x H x W with fixed C, H, W"
        )
    return inputs[0].name, shape


def _check_mode(model: onnx.ModelProto) -> None:
    mode = {p.key: p.value for p in model.metadata_props}.get("mode", "")
    if mode.startswith("train"):
        raise NetError(
            "the model is in training form (batch norms use batch statistics, dropout is on); "
            "explain a model in inference form",
            None,
            ["compile it with mode='inference'"],
        )


def check_images(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    _, shape = input_of(model)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        got = "x".join(map(str, x.shape))
        raise NetError(f"the images are {got}; the model takes N x {'x'.join(map(str, shape))}")
    return np.ascontiguousarray(x, np.float32)


# ---- filters ---------------------------------------------------------------------------------


def filters(model: onnx.ModelProto) -> np.ndarray:
    """The first convolution's weights, out x in x kh x kw (float32)."""
    weights = {t.name: t for t in model.graph.initializer}
    first = next((n for n in model.graph.node if n.op_type in ("Conv", "ConvInteger")), None)
    if first is None:
        raise NetError("the model has no convolution: there are no filters to show")
    w = weights.get(first.input[1])
    if w is None:  # int8: the weight passes a DequantizeLinear of an initializer
        made = {o: n for n in model.graph.node for o in n.output}
        node = made.get(first.input[1])
        if node is not None and node.op_type == "DequantizeLinear":
            q, scale = (numpy_helper.to_array(weights[i]) for i in node.input[:2])
            zero = numpy_helper.to_array(weights[node.input[2]]) if len(node.input) > 2 else 0
            shape = (-1, *([1] * (q.ndim - 1)))
            array = (q.astype(np.float32) - np.reshape(zero, shape)) * np.reshape(scale, shape)
            result: np.ndarray = array.astype(np.float32)
            return result
        raise NetError(f"the first convolution's weights ({first.input[1]}) are not constants")
    return numpy_helper.to_array(w).astype(np.float32)


# ---- saliency --------------------------------------------------------------------------------


def gradient_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A model with inputs (image, seed N x K) and one output, the gradient of
    sum(seed * logits) with respect to the image; and K, the number of classes."""
    _check_mode(model)
    name, _ = input_of(model)
    exposed, logits = with_logits(model)
    if logits is None:  # no trailing softmax: the output is the score
        logits = model.graph.output[0].name
        exposed = model
    shapes = shapes_of(exposed)
    out_shape = shapes.get(logits, ())
    if len(out_shape) != 2 or not isinstance(out_shape[1], int):
        raise NetError("saliency needs a classifier: an output of N x classes scores")
    classes = out_shape[1]
    nodes = list(exposed.graph.node)
    g = Grad(shapes, constants(nodes))
    seed = helper.make_tensor_value_info("seed", onnx.TensorProto.FLOAT, ["N", classes])
    try:
        grads = backward(g, nodes, {logits: "seed"}, [name], GRADIENTS)
    except KeyError as error:
        raise NetError(f"saliency cannot differentiate the op {error} of this model") from None
    g.rename(grads[name], "input.grad")
    graph = helper.make_graph(
        [*nodes, *g.finish()],
        "saliency",
        [*exposed.graph.input, seed],
        [helper.make_tensor_value_info("input.grad", onnx.TensorProto.FLOAT, None)],
        [*exposed.graph.initializer, *g.initializers],
    )
    made = helper.make_model(graph, opset_imports=list(exposed.opset_import))
    made.ir_version = exposed.ir_version
    return made, classes


def saliency(
    model: onnx.ModelProto, x: np.ndarray, classes: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, |d logit_c / d x| maximised over channels (N x H x W), and the classes c:
    those given, or each image's predicted class."""
    x = check_images(model, x)
    name, _ = input_of(model)
    grad_model, k = gradient_model(model)
    chosen = predicted(model, x) if classes is None else np.asarray(classes, np.int64)
    if len(chosen) != len(x) or (len(chosen) and not 0 <= chosen.min() <= chosen.max() < k):
        raise NetError(f"saliency needs one class from 0 to {k - 1} per image")
    sess = ort.session(grad_model)
    maps = []
    for start in range(0, len(x), BATCH):
        part = x[start : start + BATCH]
        seed = np.eye(k, dtype=np.float32)[chosen[start : start + BATCH]]
        (grad,) = sess.run(["input.grad"], {name: part, "seed": seed})
        maps.append(np.abs(grad).max(axis=1))
    return np.concatenate(maps).astype(np.float32), chosen


def predicted(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return np.asarray(scores(model, x).argmax(axis=1), np.int64)


def scores(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's output for `x` (class probabilities for a net ending in softmax)."""
    name, _ = input_of(model)
    sess = ort.session(model)
    out = [sess.run(None, {name: x[s : s + BATCH]})[0] for s in range(0, len(x), BATCH)]
    return np.concatenate(out).astype(np.float32)


# ---- occlusion -------------------------------------------------------------------------------


def occlusion(
    model: onnx.ModelProto,
    x: np.ndarray,
    classes: Sequence[int] | None = None,
    patch: int = 6,
    stride: int = 2,
    fill: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the drop of the class's score when a patch x patch square of `fill` covers
    each pixel (the mean over the patch positions covering it; N x H x W), and the classes."""
    _check_mode(model)
    x = check_images(model, x)
    name, (_, height, width) = input_of(model)
    if not 1 <= patch <= min(height, width) or stride < 1:
        raise NetError(f"the patch must be 1 to {min(height, width)} pixels, stride at least 1")
    chosen = predicted(model, x) if classes is None else np.asarray(classes, np.int64)
    base = scores(model, x)
    if len(chosen) != len(x) or (
        len(chosen) and not 0 <= chosen.min() <= chosen.max() < base.shape[1]
    ):
        raise NetError(f"occlusion needs one class from 0 to {base.shape[1] - 1} per image")
    ys = list(range(0, height - patch + 1, stride))
    xs = list(range(0, width - patch + 1, stride))
    if ys[-1] != height - patch:  # the last row and column of positions reach the border
        ys.append(height - patch)
    if xs[-1] != width - patch:
        xs.append(width - patch)
    sess = ort.session(model)
    maps = np.zeros((len(x), height, width), np.float64)
    for i, image in enumerate(x):
        covered = np.repeat(image[None], len(ys) * len(xs), axis=0)
        for j, (top, left) in enumerate((t, le) for t in ys for le in xs):
            covered[j, :, top : top + patch, left : left + patch] = fill
        out = np.concatenate(
            [
                sess.run(None, {name: covered[s : s + BATCH]})[0]
                for s in range(0, len(covered), BATCH)
            ]
        )
        drop = base[i, chosen[i]] - out[:, chosen[i]]
        total = np.zeros((height, width))
        count = np.zeros((height, width))
        for j, (top, left) in enumerate((t, le) for t in ys for le in xs):
            total[top : top + patch, left : left + patch] += drop[j]
            count[top : top + patch, left : left + patch] += 1
        maps[i] = total / np.maximum(count, 1)
    return maps.astype(np.float32), chosen


# ---- the images that excite a channel --------------------------------------------------------


def layers(model: onnx.ModelProto) -> list[str]:
    """The tensors explain can read activations from: every node output of 4-D shape."""
    shapes = shapes_of(model)
    return [o for n in model.graph.node for o in n.output if len(shapes.get(o, ())) == 4]


def default_layer(model: onnx.ModelProto) -> str:
    """The last convolution's output."""
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        raise NetError("the model has no convolution; name a layer")
    return str(convs[-1])


def activations(model: onnx.ModelProto, layer: str, x: np.ndarray) -> np.ndarray:
    """The tensor `layer` for the images `x` (N x C x H x W), exposed as an extra output."""
    _check_mode(model)
    x = check_images(model, x)
    known = layers(model)
    if layer not in known:
        shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
        raise NetError(f"the model has no image-shaped tensor '{layer}' (it has: {shown})")
    name, _ = input_of(model)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.ValueInfoProto(name=layer))
    sess = ort.session(exposed)
    return np.concatenate(
        [sess.run([layer], {name: x[s : s + BATCH]})[0] for s in range(0, len(x), BATCH)]
    ).astype(np.float32)


def top_images(
    model: onnx.ModelProto, layer: str, x: np.ndarray, k: int = 9, reduce: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of `layer`, the indices of the k images of `x` with the largest mean (or
    max) activation, best first (C x k), and those activations (C x k)."""
    if reduce not in ("mean", "max"):
        raise NetError(f"reduce must be mean or max, got '{reduce}'")
    if not 1 <= k <= len(x):
        raise NetError(f"k must be from 1 to the number of images ({len(x)}), got {k}")
    a = activations(model, layer, x)
    per_image = a.mean(axis=(2, 3)) if reduce == "mean" else a.max(axis=(2, 3))  # N x C
    order = np.argsort(-per_image, axis=0, kind="stable")[:k].T  # C x k
    return order, np.take_along_axis(per_image.T, order, axis=1)
