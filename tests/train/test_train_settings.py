"""A run's settings are checked when the `Config` is made; artefacts are written atomically.

The settings table holds (setting, value, message fragment): every numeric setting must be a
finite number in its range, every named one a known name, and the message names the setting,
never a command-line flag. The atomic-write rows check that a failed write leaves the old file
and no temporary one, and that two writers never share a temporary name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from netdsl.backends.data import atomic
from netdsl.backends.train.loop import Config
from netdsl.source import NetError

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("lr", NAN, "the learning rate (lr) must be a finite number above 0, got nan"),
        ("lr", INF, "learning rate (lr) must be a finite number above 0, got inf"),
        ("lr", 0.0, "learning rate (lr) must be a finite number above 0, got 0.0"),
        ("lr", -0.1, "above 0, got -0.1"),
        ("momentum", NAN, "the momentum (momentum) must be a finite number from 0 up to"),
        ("momentum", 1.0, "momentum (momentum) must be a finite number from 0 up to (not"),
        ("momentum", -0.5, "got -0.5"),
        ("weight_decay", INF, "the weight decay (weight_decay) must be a finite number at least 0"),
        ("weight_decay", -1e-4, "got -0.0001"),
        ("gamma", NAN, "gamma (gamma) must be a finite number above 0 and at most 1, got nan"),
        ("gamma", 1e30, "got 1e+30"),
        ("gamma", 0.0, "got 0.0"),
        ("epochs", 0, "the number of epochs (epochs) must be an integer from 1 to"),
        ("epochs", 2**40, "from 1 to 2,147,483,647, got 1099511627776"),
        ("epochs", 2.5, "got 2.5"),
        ("batch", True, "the batch size (batch) must be an integer from 1"),
        ("batch", 0, "got 0"),
        ("step_size", -1, "step size (step_size) must be an integer from 1"),
        ("eval_batch", 0, "evaluation batch size (eval_batch)"),
        ("shift", -2, "augmentation shift (-1: automatic) (shift) must be an integer from -1"),
        ("threads", -1, "number of threads (threads)"),
        ("checkpoint_every", -5, "checkpoint interval (checkpoint_every)"),
        ("seed", -1, "the seed (seed) must be an integer from 0"),
        ("optimizer", "adam", "optimizer must be one of sgd, adamw, got 'adam'"),
        ("schedule", "linear", "schedule must be one of constant, step, cosine"),
        ("init", "zeros", "init must be one of auto, he, glorot, normal"),
        ("fit", "crop", "fit must be one of auto, strict, resize, pad"),
    ],
)
def test_settings_are_checked(setting: str, value: object, fragment: str) -> None:
    with pytest.raises(NetError, match="invalid training setting") as error:
        Config(**{setting: value})  # type: ignore[arg-type]
    assert fragment in str(error.value) and "--" not in str(error.value)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"lr": 1e-6, "momentum": 0.0, "gamma": 1.0, "weight_decay": 0.0},
        {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01, "schedule": "step"},
        {"epochs": 1, "batch": 1, "shift": 0, "threads": 0, "checkpoint_every": 0, "seed": 2**40},
    ],
)
def test_settings_in_range_are_accepted(values: dict[str, object]) -> None:
    config = Config(**values)  # type: ignore[arg-type]
    assert all(getattr(config, k) == v for k, v in values.items())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.onnx"
    atomic.write(target, b"old")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(NetError, match=r"cannot write .*model\.onnx.: No space left on device"):
        atomic.write(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_writers_use_temporaries_of_their_own(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.npz"
    with atomic.replacing(target) as first, atomic.replacing(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the writer that finished last wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("file/x.onnx", "is a file, not a folder"),
        ("folder", "it is a folder"),
        ("missing/x.onnx", "No such file or directory"),
    ],
)
def test_unwritable_targets(tmp_path: Path, where: str, fragment: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(NetError, match=fragment):
        atomic.write(tmp_path / where, b"x")


def test_clean_removes_what_killed_writers_left(tmp_path: Path) -> None:
    (tmp_path / ".model.onnx.abc123.tmp").write_bytes(b"half")
    (tmp_path / "model.onnx").write_bytes(b"whole")
    (tmp_path / "notes.tmp").write_bytes(b"not ours: no leading dot")
    removed = atomic.clean(tmp_path)
    assert [p.name for p in removed] == [".model.onnx.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "notes.tmp"]
