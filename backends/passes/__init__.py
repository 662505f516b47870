"""Transforms of weights and ONNX graphs: batch-norm folding, fp16, int8 (QDQ)."""
