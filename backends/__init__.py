"""netdsl's backends, installed as `netdsl.backends`: one room per concern.

    data      datasets and images: numpy arrays with their sizes checked before allocation
    passes    transforms of weights and ONNX graphs: bn folding, fp16, int8
    onnx      shaped net -> ONNX model: one emitter per op, weights
    runtime   onnxruntime sessions, timing, comparison of artefacts
    tensorrt  the static TensorRT check and engine building
    train     training graphs, the training loop, optimizers, checkpoints
    export    serving: Triton Inference Server model repositories (ONNX or TensorRT plan)

Each room imports netdsl's core and the rooms listed before it, never one after it
(tests/test_architecture.py checks this). Heavy libraries (onnxruntime, tensorrt) are imported
inside functions, so `netdsl check` stays light. See docs/architecture.md.
"""
