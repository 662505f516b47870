"""The native training engine: runs `step.py`'s training-step model with stock onnxruntime.

Sits under the training loop (`loop.py`), in place of onnxruntime-training. Any onnxruntime
package works (`onnxruntime`, `onnxruntime-gpu`, or onnxruntime-training's own InferenceSession),
on the CPU or on a CUDA device. Parameters, running statistics and optimizer state live in
OrtValues on the device the step runs on, in two sets: a step reads one set and writes the
other through IOBinding, then the two swap roles; two bindings prepared once (A -> B, B -> A)
make the swap free, so no weight crosses to the host per step. Only the batch, its labels, the
dropout masks and two scalars (learning rate, step number) go in, and the loss and the count of
right answers come out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data.sources import Dataset
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import loop
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.files import Checkpoint, Progress
from netdsl.backends.train.settings import Config
from netdsl.backends.train.step import TrainingStep, to_training_step
from netdsl.backends.train.update import Optimizer
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

DEVICES = ("cpu", "cuda")


class NativeEngine:
    """One training run's session and device-resident tensors."""

    def __init__(
        self,
        step: TrainingStep,
        state: Mapping[str, np.ndarray],
        *,
        device: str = "cpu",
        threads: int = 0,
        device_id: int = 0,
        count: int = 0,
    ) -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise NetError(f"unknown device '{device}' (choose {' or '.join(DEVICES)})")
        providers: list[Any] = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise NetError(
                    "training on cuda needs onnxruntime with CUDA (the onnxruntime-gpu "
                    f"package); this onnxruntime {ort.__version__} offers "
                    f"{', '.join(ort.get_available_providers())}"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), *providers]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            step.model.SerializeToString(), options, providers=providers
        )
        self.step, self.device, self.device_id, self.count = step, device, device_id, count
        self._ort = ort
        names = [*step.tensors(), *step.state]
        missing = [n for n in names if n not in state]
        if missing:
            raise NetError(f"the training state lacks {', '.join(missing[:4])}")
        self.fixed = {n: self._value(state[n]) for n in names if n not in step.updates}
        self.sets = [
            {n: self._value(state[n]) for n in step.updates},
            {n: self._value(np.empty_like(state[n])) for n in step.updates},
        ]
        self.loss = ort.OrtValue.ortvalue_from_numpy(np.zeros((), np.float32))
        self.correct = ort.OrtValue.ortvalue_from_numpy(np.zeros((), np.int64))
        self.bindings = [self._binding(k) for k in (0, 1)]
        self.current = 0  # the set holding the tensors' present values

    def _value(self, array: np.ndarray) -> Any:
        data = np.array(array, copy=True, order="C")  # never the caller's array: it is written
        return self._ort.OrtValue.ortvalue_from_numpy(data, self.device, self.device_id)

    def _binding(self, k: int) -> Any:
        """Read set k, write set 1 - k; the per-step inputs are bound in `run`."""
        binding = self.session.io_binding()
        for name, value in self.fixed.items():
            binding.bind_ortvalue_input(name, value)
        for name, value in self.sets[k].items():
            binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(self.step.updates[name], self.sets[1 - k][name])
        binding.bind_ortvalue_output("loss", self.loss)
        binding.bind_ortvalue_output("correct", self.correct)
        return binding

    def run(
        self,
        x: np.ndarray | Mapping[str, np.ndarray],
        y: np.ndarray,
        lr: float,
        masks: Sequence[np.ndarray] = (),
    ) -> tuple[float, int]:
        """One step on a batch (one array, or one per input of the step by name); returns
        its mean loss and its count of right answers."""
        binding = self.bindings[self.current]
        batch = x if isinstance(x, Mapping) else {self.step.inputs[0]: x}
        if set(batch) != set(self.step.inputs):
            raise NetError(
                f"the step takes {', '.join(self.step.inputs)}; given {', '.join(batch)}"
            )
        for name, array in batch.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array, np.float32))
        binding.bind_cpu_input("labels", np.ascontiguousarray(y, np.int64))
        for m, mask in zip(self.step.masks, masks, strict=True):
            binding.bind_cpu_input(m.input, np.ascontiguousarray(mask, np.float32))
        binding.bind_cpu_input("lr", np.array(lr, np.float32))
        binding.bind_cpu_input("step", np.array(self.count, np.int64))
        self.session.run_with_iobinding(binding)
        self.current, self.count = 1 - self.current, self.count + 1
        return float(self.loss.numpy()), int(self.correct.numpy())

    def tensors(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters, running statistics and optimizer state."""
        values = {**self.fixed, **self.sets[self.current]}
        return {name: np.array(value.numpy()) for name, value in values.items()}

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Overwrite tensors (by name) with `arrays`, in place on the device."""
        values = {**self.fixed, **self.sets[self.current]}
        for name, array in arrays.items():
            values[name].update_inplace(np.ascontiguousarray(array, np.float32))


# ---- the training loop's side: `loop.Run` with this engine in place of onnxruntime-training ----


class NativeRun(loop.Run):
    """`loop.Run` on `NativeEngine`: the same loop, schedules, checkpoints, divergence rule,
    evaluation and export; the step, the update and the running statistics happen in the step
    model, and the tensors come to the host only to be evaluated or saved."""

    def __init__(
        self,
        net: ShapedNet,
        data: Dataset,
        config: Config,
        out: Path,
        params: wt.Params,
        work: Path,
        say: loop.Report,
    ) -> None:
        self.net, self.data, self.config, self.out, self.say = net, data, config, out, say
        self.trainable = loop.trainable(net, config.freeze)
        names = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights]
        frozen = [n for n in names if n not in self.trainable]
        bns = {n.name for n in net.nodes if n.op == "bn"}
        stats = [n for n in frozen if n.rsplit(".", 1)[0] in bns and n.endswith((".mean", ".var"))]
        opt = Optimizer(
            config.optimizer, momentum=config.momentum, weight_decay=config.weight_decay
        )
        if config.optimizer == "adamw":  # optim.py's AdamW: default betas and eps
            opt = Optimizer("adamw", weight_decay=config.weight_decay)
        self.step_model = to_training_step(
            net,
            opt,
            params=params,
            frozen=frozen,
            frozen_stats=[n for n in stats if loop._matches(n, config.freeze)],
            loss_output=config.loss_output or None,
        )
        self.graph = self.step_model  # type: ignore[assignment]  # stats, masks, classes
        self.params = dict(params)
        self.engine: NativeEngine | None = None

    def loop(self, optimizer: sgd.Optimizer, state: Checkpoint) -> None:
        step = self.step_model
        arrays = step.initial_state(self.params)
        saved = optimizer.state()
        for name in step.state:  # optim.py's names: velocity/<p>, m/<p>, v/<p>
            owner, slot = name.rsplit(".", 1)
            if f"{slot}/{owner}" in saved:
                arrays[name] = saved[f"{slot}/{owner}"]
        self.engine = NativeEngine(
            step,
            arrays,
            device=getattr(self.config, "device", "cpu"),
            threads=self.config.threads,
            count=int(getattr(optimizer, "t", 0)),
        )
        super().loop(optimizer, state)

    def step(
        self,
        optimizer: sgd.Optimizer,
        batch: np.ndarray,
        epoch: int,
        step: int,
        lr: float,
        p: Progress,
    ) -> None:
        assert self.engine is not None
        c = self.config
        x, y = self.data.x_train[batch], self.data.y_train[batch]
        if c.shift:
            x = loop.shifted(x, c.shift, np.random.default_rng([c.seed, epoch, step, 2]))
        feeds: np.ndarray | dict[str, np.ndarray] = x
        if self.data.more:  # several inputs: the first is x, the others are named
            feeds = {self.step_model.inputs[0]: x}
            feeds |= {name: train[batch] for name, (train, _) in self.data.more.items()}
        before = self.engine.current
        loss, correct = self.engine.run(feeds, y, lr, self.masks(len(batch), epoch, step))
        try:
            self.watch(loss, epoch, step, p)
        except NetError:  # a diverged step is not applied: back to the tensors before it
            self.engine.current, self.engine.count = before, self.engine.count - 1
            raise
        p.loss_sum += loss * len(batch)
        p.correct += correct
        p.seen += len(batch)

    def evaluate(self) -> tuple[float, float]:
        self.pull()
        return super().evaluate()

    def save(self, optimizer: sgd.Optimizer, state: Checkpoint) -> None:
        self.pull(optimizer)
        super().save(optimizer, state)

    def pull(self, optimizer: sgd.Optimizer | None = None) -> None:
        """The engine's tensors into `params`, and its optimizer state into `optimizer`."""
        assert self.engine is not None
        arrays = self.engine.tensors()
        self.params.update({n: arrays[n] for n in self.step_model.tensors()})
        if optimizer is None:
            return
        state = {}
        for name in self.step_model.state:
            owner, slot = name.rsplit(".", 1)
            state[f"{slot}/{owner}"] = arrays[name]
        optimizer.load(state)
        if isinstance(optimizer, sgd.AdamW):
            optimizer.t = self.engine.count
