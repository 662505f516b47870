"""Shaped net -> ONNX model: one emitter per op (`emit`) and the weights it writes (`weights`)."""

from netdsl.backends.onnx.emit import EMITTERS, to_onnx

__all__ = ["EMITTERS", "to_onnx"]
