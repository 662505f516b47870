"""The normalisation a trained model carries: (input - mean) / std as its first nodes, and the
metadata that says how images become its input.

A pass on ONNX models, used by the training loop (`backends/train/loop.py` writes it into every
model it exports) and by compilation (`backends/onnx/emit.py`: a net compiled with the weights
of a netdsl-trained model gets the same first nodes, so the trained weights see the inputs they
were trained on). Requires a graph whose input feeds nodes (not an output); guarantees that the
normalisation nodes come first, so the graph stays topologically sorted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl.source import NetError

KEY = "netdsl.preprocessing"  # the model's metadata entry (JSON)
MEAN, STD = "preprocess.mean", "preprocess.std"  # the initializers with_normalisation writes


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.arrays(x.shape[1], x.ndim)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def arrays(self, channels: int, rank: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std as 1xCx1x1 (rank 4; 1xCx1 and 1xCx1x1x1 for signals and volumes)."""
        shape = (1, channels, *[1] * (rank - 2))
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        return mean, np.asarray(self.std, np.float32).reshape(shape)

    @property
    def identity(self) -> bool:
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)


def with_normalisation(model: Any, norm: Normalisation, input_name: str = "input") -> Any:
    """`model` with (input - mean) / std as its first two nodes, so every runtime applies it."""
    from onnx import helper, numpy_helper

    if norm.identity:
        return model
    graph = model.graph
    c = len(norm.mean)
    inputs = [i for i in graph.input if i.name == input_name]
    rank = len(inputs[0].type.tensor_type.shape.dim) if inputs else 4
    mean, std = norm.arrays(c, rank)
    inner = f"{input_name}_normalised"
    for node in graph.node:
        node.input[:] = [inner if name == input_name else name for name in node.input]
    for output in graph.output:
        if output.name == input_name:
            raise NetError("a model whose output is its input cannot carry a normalisation")
    graph.initializer.extend(
        [
            numpy_helper.from_array(mean, MEAN),
            numpy_helper.from_array(std, STD),
        ]
    )
    nodes = [
        helper.make_node("Sub", [input_name, MEAN], ["preprocess.centred"]),
        helper.make_node("Div", ["preprocess.centred", STD], [inner]),
    ]
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *rest])  # at the start: the graph stays topologically sorted
    return model


def metadata(image: Sequence[int], norm: Normalisation, classes: Sequence[str]) -> dict[str, str]:
    """The model's metadata entry: how an image becomes the model's input, and its classes."""
    record = {
        "input": list(image),
        "layout": {2: "NCL", 3: "NCHW", 4: "NCDHW"}.get(len(image), "NCHW") + " float32",
        "scale": "pixels / 255 (8-bit), / 65535 (16-bit): [0, 1]",
        "resize": "bilinear, pixel centres aligned, antialiased when shrinking "
        "(netdsl.backends.data.images.resize)",
        "channels": "grey: ITU-R 601-2 luma; colour from grey: the plane repeated",
        "normalisation": "inside the model (its first nodes)" if not norm.identity else "none",
        "mean": list(norm.mean),
        "std": list(norm.std),
        "classes": list(classes),
    }
    return {KEY: json.dumps(record)}


def read_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The preprocessing a model records (its metadata_props), or {} if it records none."""
    text = props.get(KEY)
    if not text:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def carried(tensors: Mapping[str, Any], channels: int) -> Normalisation | None:
    """The normalisation a trained model's tensors hold (`preprocess.mean`, `preprocess.std`,
    each 1xCx1x1), or None where it holds none."""
    if MEAN not in tensors or STD not in tensors:
        return None
    mean, std = (np.asarray(tensors[k], np.float64).reshape(-1) for k in (MEAN, STD))
    if mean.size != channels or std.size != channels or not (std > 0).all():
        raise NetError(f"the weights' normalisation does not fit {channels} input channels")
    return Normalisation(tuple(map(float, mean)), tuple(map(float, std)))


def expected(channels: int) -> dict[str, tuple[int, ...]]:
    """The shapes of the normalisation tensors, for a weights reader told what to read."""
    return {MEAN: (1, channels, 1, 1), STD: (1, channels, 1, 1)}
