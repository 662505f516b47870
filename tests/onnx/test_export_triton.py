"""Triton model repositories: config.pbtxt parsed with Triton's own ModelConfig protobuf
(tritonclient's model_config_pb2, loaded from its file so that tritonclient's gRPC extras are
not needed), the model beside it loaded and run by onnxruntime at the batch sizes the config
promises, the TensorRT-plan variant's config, and writes that are atomic and never clobber."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

import netdsl
from netdsl.backends.export.triton import Serving, config_text, write_repository
from netdsl.backends.onnx.compile import CompileOptions, compile_net
from netdsl.backends.runtime import ort


def triton_model_config() -> ModuleType:
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "tritonclient is not installed (pip install tritonclient; the test extra has it)"
        )
    path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    loader = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def parse(text: str) -> object:
    from google.protobuf import text_format

    pb = triton_model_config()
    return text_format.Parse(text, pb.ModelConfig())


def model(name: str = "lenet5", **options: object) -> onnx.ModelProto:
    return compile_net(netdsl.load(name), CompileOptions(mode="inference", **options))  # type: ignore[arg-type]


# (serving, max_batch_size, preferred sizes, instances, kind)
SERVING = [
    (Serving(), 8, [2, 4, 8], 1, "KIND_GPU"),
    (Serving(max_batch=64, instances=3, kind="cpu"), 64, [16, 32, 64], 3, "KIND_CPU"),
    (Serving(max_batch=16, preferred=(4, 16, 4)), 16, [4, 16], 1, "KIND_GPU"),
    (Serving(max_batch=1), 1, [1], 1, "KIND_GPU"),
]


@pytest.mark.parametrize(("serving", "batch", "preferred", "count", "kind"), SERVING)
def test_onnx_repository_config_is_what_triton_reads(
    tmp_path: Path, serving: Serving, batch: int, preferred: list[int], count: int, kind: str
) -> None:
    pb = triton_model_config()
    folder = write_repository(model(), tmp_path / "repo", serving=serving)
    assert folder == tmp_path / "repo" / "lenet5"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
    ]
    config = parse((folder / "config.pbtxt").read_text())
    assert (config.name, config.platform, config.max_batch_size) == (
        "lenet5",
        "onnxruntime_onnx",
        batch,
    )
    assert [(t.name, list(t.dims), t.data_type) for t in config.input] == [
        ("input", [1, 32, 32], pb.TYPE_FP32)
    ]
    assert [(t.name, list(t.dims), t.data_type) for t in config.output] == [
        ("output", [10], pb.TYPE_FP32)
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == preferred
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [
        (count, kind)
    ]
    # the model Triton will load takes the batches the config promises
    sess = ort.session(str(folder / "1" / "model.onnx"))
    for n in {1, batch}:
        x = np.random.default_rng(n).random((n, 1, 32, 32), dtype=np.float32)
        assert ort.run(sess, x).shape == (n, 10)


def test_plan_config_is_what_triton_reads_for_tensorrt() -> None:
    pb = triton_model_config()
    config = parse(config_text(model("resnet18"), "r18", "plan", Serving(max_batch=32)))
    assert (config.name, config.platform, config.max_batch_size) == ("r18", "tensorrt_plan", 32)
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [3, 224, 224])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("output", [1000])]
    assert config.input[0].data_type == pb.TYPE_FP32
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU


def test_fp16_model_keeps_fp32_edges() -> None:
    pb = triton_model_config()
    config = parse(config_text(model(precision="fp16"), "m", "onnx", Serving()))
    assert config.input[0].data_type == config.output[0].data_type == pb.TYPE_FP32


def test_fixed_batch_model_is_served_without_batching() -> None:
    fixed = model(batch=4)
    config = parse(config_text(fixed, "m", "onnx", Serving(max_batch=0)))
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [4, 1, 32, 32]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(netdsl.NetError, match="fixed batch of 4"):
        config_text(fixed, "m", "onnx", Serving(max_batch=8))


def test_a_training_form_model_is_not_served() -> None:
    train = compile_net(netdsl.load("resnet18"), CompileOptions(mode="train"))
    with pytest.raises(netdsl.NetError, match="is in training form"):
        config_text(train, "m", "onnx", Serving())


@pytest.mark.parametrize(
    ("fmt", "serving", "name", "message"),
    [
        ("plan", Serving(kind="cpu"), "m", "a TensorRT plan runs on GPU instances only"),
        ("onnx", Serving(max_batch=8, preferred=(16,)), "m", "must lie in 1..8"),
        ("onnx", Serving(instances=0), "m", "at least one instance"),
        ("onnx", Serving(kind="tpu"), "m", "unknown instance kind 'tpu'"),
        ("tflite", Serving(), "m", "unknown model format 'tflite'"),
        ("onnx", Serving(), "../escape", "cannot name a Triton model"),
        ("onnx", Serving(), ".hidden", "cannot name a Triton model"),
    ],
)
def test_refusals(tmp_path: Path, fmt: str, serving: Serving, name: str, message: str) -> None:
    with pytest.raises(netdsl.NetError, match=message.replace(".", r"\.")):
        write_repository(model(), tmp_path / "repo", name=name, fmt=fmt, serving=serving)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    assert not (tmp_path / "escape").exists()


def test_an_existing_model_is_never_clobbered_silently(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = write_repository(model(), repo, serving=Serving(max_batch=4))
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    with pytest.raises(netdsl.NetError, match="already exists"):
        write_repository(model(seed=1), repo, serving=Serving(max_batch=16))
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    write_repository(model(seed=1), repo, serving=Serving(max_batch=16), replace=True)
    assert parse((first / "config.pbtxt").read_text()).max_batch_size == 16  # type: ignore[attr-defined]
    assert (first / "1" / "model.onnx").read_bytes() != before[first / "1" / "model.onnx"]
    assert [p.name for p in repo.iterdir()] == ["lenet5"]  # nothing temporary left behind


def test_plan_needs_tensorrt_and_writes_nothing_without_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the plan is built by the next test")
    with pytest.raises(netdsl.NetError, match="TensorRT is not installed"):
        write_repository(model(), tmp_path / "repo", fmt="plan")
    assert not (tmp_path / "repo").exists()


def test_plan_repository_with_tensorrt(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed (it needs an NVIDIA GPU machine)")
    folder = write_repository(model(), tmp_path / "repo", fmt="plan", serving=Serving(max_batch=8))
    assert (folder / "1" / "model.plan").stat().st_size > 0
    assert parse((folder / "config.pbtxt").read_text()).platform == "tensorrt_plan"  # type: ignore[attr-defined]


def test_command_line_exports_and_never_clobbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from netdsl.cli import main

    repo = tmp_path / "repo"
    argv = ["export", "triton", "lenet5", "-o", str(repo), "--max-batch", "16"]
    assert main([*argv, "--instances", "2", "--kind", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {repo / 'lenet5'}/")
    config = parse((repo / "lenet5" / "config.pbtxt").read_text())
    assert (config.max_batch_size, config.instance_group[0].count) == (16, 2)  # type: ignore[attr-defined]
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force", "--preferred", "8,16"]) == 0
    config = parse((repo / "lenet5" / "config.pbtxt").read_text())
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]  # type: ignore[attr-defined]
    onnx_file = tmp_path / "m.onnx"
    onnx.save(model(), onnx_file)
    assert main(["export", "triton", str(onnx_file), "-o", str(repo), "--name", "m"]) == 0
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5", "m"]
