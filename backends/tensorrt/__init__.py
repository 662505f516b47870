"""TensorRT: the static check against its ONNX parser's operator table, and engine building."""
