"""Running artefacts: onnxruntime sessions, inputs, timing, and the comparison of two artefacts."""
